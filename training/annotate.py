"""Propose facial landmarks for a head from its surface, as a starting point for annotation.

The annotator runs ``python -m training.annotate HEAD``, looks at the overlays
(``python -m training.overlays HEAD``), corrects the numbers and commits
``annotations/HEAD.json``. Proposals are never used for training directly.
"""

from __future__ import annotations

import json
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.features.geometry import head_mask, to_ras


def _index_to_world(affine, ijk):
    return nib.affines.apply_affine(affine, np.asarray(ijk, float))


def propose_landmarks(img: nib.spatialimages.SpatialImage) -> dict:
    data, A = to_ras(img, 1.0)
    mask = head_mask(data)
    nx, ny, nz = mask.shape
    xs, ys, zs = np.nonzero(mask)
    mid_i = int(round((xs.min() + xs.max()) / 2))
    top_k = zs.max()
    # anterior surface depth per (x, z): largest y index inside the head
    has = mask.any(axis=1)
    front = np.where(has, ny - 1 - np.argmax(mask[:, ::-1, :], axis=1), -1)
    # pronasale: most anterior point near the midline, 40-170 mm below the vertex
    band = front[mid_i - 15: mid_i + 16, max(top_k - 170, 0): top_k - 40]
    bi, bk = np.unravel_index(np.argmax(band), band.shape)
    ti, tk = mid_i - 15 + bi, max(top_k - 170, 0) + bk
    tj = front[ti, tk]
    profile = ndi.median_filter(front[ti - 2: ti + 3].max(0).astype(float), size=3)
    # nasion: deepest profile point 15-50 mm above the tip; subnasale: 8-25 mm below
    up = np.arange(tk + 15, min(tk + 50, nz))
    nk = up[np.argmin(profile[up])]
    down = np.arange(max(tk - 18, 0), tk - 6)
    sk = down[np.argmin(profile[down])]
    nasion = _index_to_world(A, [ti, profile[nk], nk])
    tip = _index_to_world(A, [ti, tj, tk])
    subnasale = _index_to_world(A, [ti, profile[sk], sk])
    # eyes: 32 mm either side, behind the nasion skin; refine on the dark vitreous (T1) blob
    eyes = []
    for side in (-1, 1):
        guess = nasion + np.array([side * 32.0, -20.0, -8.0])
        eyes.append(_refine_eye(data, A, guess))
    # ears: most lateral protrusion of each side's surface, behind the face
    ears = [_propose_ear(mask, A, side, tip, nasion) for side in (-1, 1)]
    return {"eyes": [e.tolist() for e in eyes], "nasion": nasion.tolist(), "pronasale": tip.tolist(),
            "subnasale": subnasale.tolist(), "ears": [e.tolist() for e in ears]}


def _refine_eye(data, A, guess):
    inv = np.linalg.inv(A)
    c = np.rint(nib.affines.apply_affine(inv, guess)).astype(int)
    r = np.arange(-15, 16)
    dist = np.sqrt(r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2)
    inner, shell = dist <= 9, (dist >= 11) & (dist <= 15)
    best, best_c = -np.inf, c
    for dx in range(-8, 9, 2):
        for dy in range(-8, 9, 2):
            for dz in range(-8, 9, 2):
                cc = c + (dx, dy, dz)
                sl = tuple(slice(cc[a] - 15, cc[a] + 16) for a in range(3))
                patch = data[sl]
                if patch.shape != dist.shape:
                    continue
                score = abs(patch[shell].mean() - patch[inner].mean())
                if score > best:
                    best, best_c = score, cc
    return nib.affines.apply_affine(A, best_c)


def _propose_ear(mask, A, side, tip, nasion):
    nx, ny, nz = mask.shape
    if side < 0:  # left: smallest x index inside the head
        ext = np.where(mask.any(0), np.argmax(mask, axis=0), nx)
        lateral = -ext.astype(float)
    else:
        ext = np.where(mask.any(0), nx - 1 - np.argmax(mask[::-1], axis=0), -1)
        lateral = ext.astype(float)
    valid = mask.any(0)
    smooth = ndi.median_filter(np.where(valid, lateral, lateral[valid].min()), size=41)
    protrusion = np.where(valid, lateral - smooth, 0)
    inv = np.linalg.inv(A)
    t = nib.affines.apply_affine(inv, tip)
    j = np.arange(ny)[:, None]
    k = np.arange(nz)[None, :]
    window = (j < t[1] - 60) & (j > t[1] - 150) & (k > t[2] - 40) & (k < t[2] + 50)
    cand = (protrusion > 3) & window
    if not cand.any():
        cand = window & (protrusion >= np.percentile(protrusion[window], 99))
    lab, n = ndi.label(cand)
    sizes = ndi.sum_labels(cand, lab, np.arange(1, n + 1))
    keep = lab == 1 + int(np.argmax(sizes))
    jj, kk = np.nonzero(keep)
    jc, kc = jj.mean(), kk.mean()
    xi = np.mean(ext[jj, kk])
    xi = xi + (8 if side < 0 else -8)  # the auricle's centre lies a little inside its rim
    return nib.affines.apply_affine(A, [xi, jc, kc])


if __name__ == "__main__":
    from tools.heads import fetch_head

    for head in sys.argv[1:]:
        print(head, json.dumps({k: np.round(v, 1).tolist() for k, v in propose_landmarks(nib.load(fetch_head(head))).items()}))
