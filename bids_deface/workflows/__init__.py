"""nipype workflows: all images of a dataset (``base.init_bids_deface_wf``), one node per image."""
