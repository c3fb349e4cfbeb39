"""Transfer syntaxes of defaced pixel data: back in the input's own when that is lossless.

Decoding is pydicom's, with the pylibjpeg plugins (libjpeg: JPEG Baseline, Extended
and Lossless, JPEG-LS; openjpeg: JPEG 2000; rle) and pyjpegls installed (README,
"DICOM"). Defaced pixels are encoded again in the input's transfer syntax when it is
lossless and an encoder is installed (RLE Lossless, JPEG-LS Lossless, JPEG 2000
Lossless), so a compressed archive stays compressed and every voxel outside the face keeps
its value. Otherwise they are stored as Explicit VR Little Endian, and the log says why:
a lossy input (JPEG Baseline/Extended, JPEG-LS near-lossless, JPEG 2000) would lose more
at every re-encoding, and no JPEG Lossless (Process 14) encoder exists for pydicom.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

REENCODED = (RLELossless, JPEGLSLossless, JPEG2000Lossless)
LOSSLESS = frozenset({*REENCODED, JPEGLossless, JPEGLosslessSV1, HTJ2KLossless, HTJ2KLosslessRPCL})


def _encoder_available(ts: UID) -> bool:
    try:
        return bool(get_encoder(ts).is_available)
    except (NotImplementedError, ValueError):
        return False


def store_like(ds: Dataset, original: UID) -> str:
    """Encode ``ds``'s native (just defaced) Pixel Data in ``original`` when possible.

    Returns a note for the log: empty when the input's syntax was kept.
    """
    if not original.is_compressed and not original.is_deflated:
        if original != ExplicitVRLittleEndian and not original.is_little_endian:
            return f"stored Explicit VR Little Endian ({original.name} is retired)"
        return ""
    if original in REENCODED and _encoder_available(original):
        ds.compress(original, generate_instance_uid=False)
        return ""
    if original in REENCODED:
        return f"stored Explicit VR Little Endian (no {original.name} encoder installed)"
    if original.is_deflated:
        return f"stored Explicit VR Little Endian ({original.name} not re-encoded)"
    if original in LOSSLESS:
        return f"stored Explicit VR Little Endian (no {original.name} encoder for pydicom)"
    return f"stored Explicit VR Little Endian (lossy {original.name} not re-encoded: it would lose more)"
