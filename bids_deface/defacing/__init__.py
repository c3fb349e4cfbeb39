"""The journey of the images of one session, step by step, in memory (no nipype here).

- :mod:`.steps`: every step records its outcome (ok, refused, failed) in the image's step log;
- :mod:`.settings`: what a run asks for (features, seed, margins, policies, QC, layout);
- :mod:`.image`: one image, from its file to its written outputs;
- :mod:`.session`: the images of one session: a reference detection shared by every contrast.

nipype interfaces (``bids_deface/interfaces/``) wrap these functions in a few lines each.
"""
