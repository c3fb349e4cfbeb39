"""The BIDS side of bids-deface, one job per module.

- :mod:`.select`: which face-bearing images to deface (pybids queries);
- :mod:`.validate`: bids-validator-deno on the input;
- :mod:`.naming`: BIDS file names and where each output goes;
- :mod:`.provenance`: GeneratedBy, provenance sidecars and per-image records;
- :mod:`.description`: the output's dataset-level files;
- :mod:`.atomic`: writes that never leave half a file;
- :mod:`.rawcopy`: the raw layout's copy of everything but the defaced images.
"""
