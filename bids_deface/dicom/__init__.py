"""DICOM: PS3.15 Annex E header de-identification and pixel defacing of head series.

``bids-deface dicom IN_DIR OUT_DIR`` (see :mod:`bids_deface.dicom.cli`).
"""
