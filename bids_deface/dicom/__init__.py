"""DICOM: PS3.15 Annex E header de-identification and pixel defacing of head series.

``bids-deface dicom IN_DIR OUT_DIR`` (:mod:`bids_deface.cli.dicom`) runs
:func:`bids_deface.dicom.pipeline.run`: ``folders`` (where it may write), ``integrity``
(truncated files), ``stacks`` / ``series`` / ``resample`` (slices <-> volumes, real
geometry), ``defacing`` (the BIDS App's core behind ``Defacer``), ``codecs`` (transfer
syntaxes written back), ``profile`` / ``deid`` / ``freetext`` / ``uids`` (headers),
``writing`` (files).
"""
