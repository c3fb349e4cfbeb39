"""nipype workflows: one per image (``deface.init_deface_wf``), all images (``base.init_bids_deface_wf``)."""
