"""Brain-preservation check: a brain mask independent of the face detector, and the count of
voxels that defacing changed inside it.

The mask is the MNI152NLin2009cSym brain mask shipped with bids-deface (read through the
``templateflow`` client from ``bids_deface/data/templateflow``) carried onto the image by an
affine registration written here: the 4 mm template head is matched to the image by Mattes
mutual information (Parzen-window histograms, differentiable in torch), rigid then affine,
coarse then fine. Mutual information makes no assumption on contrast, so T1w and T2w (and
other) images register to either template; the template of the image's own contrast is used
when there is one.

Registration error is a few millimetres; defacing works centimetres away from the brain, so
any changed voxel inside the mask is worth a curator's look.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage as ndi

from ..features.geometry import as_3d, otsu_threshold, robust_range

TEMPLATE = "MNI152NLin2009cSym"
SHIPPED_TEMPLATEFLOW = Path(str(files("bids_deface") / "data" / "templateflow"))
METHOD = (f"{TEMPLATE} brain mask (bids-deface's 2 mm copy), affine registration of the 4 mm "
          "template head by Mattes mutual information")
CONTRASTS = ("T1w", "T2w")
BINS = 32
SAMPLES = 12000  # template points per cost evaluation
CRANIUM_MM = 120.0  # anchor: centre of the head's top CRANIUM_MM, the same part in any field of view


@dataclass
class BrainMask:
    """A brain mask on an image's own grid, and how it was made."""

    mask: np.ndarray  # bool, the image's 3D grid
    affine: np.ndarray  # the image's affine
    template_to_image: np.ndarray  # 4x4, template world (mm) -> image world (mm)
    template: str  # e.g. "MNI152NLin2009cSym T1w"
    mutual_information: float  # at the solution, in nats
    method: str = METHOD


def template_files(contrast: str = "T1w") -> tuple[Path, Path]:
    """(head image, brain mask) of the shipped template, read through templateflow.

    TEMPLATEFLOW_HOME defaults to the folder shipped inside bids-deface; a different home must
    hold ``tpl-MNI152NLin2009cSym`` copied from there.
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"no {TEMPLATE} template for contrast {contrast!r}; have {', '.join(CONTRASTS)}")
    os.environ.setdefault("TEMPLATEFLOW_HOME", str(SHIPPED_TEMPLATEFLOW))
    import templateflow.api as tf

    head = tf.get(TEMPLATE, resolution=4, suffix=contrast, desc=None)
    mask = tf.get(TEMPLATE, resolution=2, desc="brain", suffix="mask")
    for what, found in ((f"res-4 {contrast}", head), ("res-2 brain mask", mask)):
        if not found or isinstance(found, list) or not Path(found).is_file() or Path(found).stat().st_size == 0:
            raise FileNotFoundError(
                f"{TEMPLATE} {what} not found in TEMPLATEFLOW_HOME={os.environ['TEMPLATEFLOW_HOME']}; "
                f"bids-deface ships it in {SHIPPED_TEMPLATEFLOW}: point TEMPLATEFLOW_HOME there")
    return Path(head), Path(mask)


def _normalise(data: np.ndarray) -> np.ndarray:
    lo, hi = robust_range(data)
    return np.clip((data - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def _world(affine: np.ndarray, shape) -> np.ndarray:
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    return (affine[:3, :3] @ ijk + affine[:3, 3:4]).astype(np.float32)


def head_anchor(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World point (mm) at the centre of the head's top ``CRANIUM_MM``: matches across fields of view."""
    lo, hi = robust_range(data)
    thr = lo + 0.5 * (otsu_threshold(np.clip(data.ravel()[::3], lo, hi)) - lo)
    head = data > thr
    if not head.any():
        raise ValueError("no head found (nothing above the air threshold)")
    xyz = _world(affine, data.shape)[:, head.ravel()]
    top = xyz[2].max()
    return xyz[:, xyz[2] > top - CRANIUM_MM].mean(axis=1)


def _downsample(data: np.ndarray, affine: np.ndarray, target_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Block means of about ``target_mm`` (anti-aliased and cheap), with the matching affine."""
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    k = np.maximum(1, np.round(target_mm / zooms)).astype(int)
    shape = np.array(data.shape) // k
    d = data[: shape[0] * k[0], : shape[1] * k[1], : shape[2] * k[2]]
    d = d.reshape(shape[0], k[0], shape[1], k[1], shape[2], k[2]).mean(axis=(1, 3, 5))
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * k
    out[:3, 3] = affine[:3, 3] + affine[:3, :3] @ ((k - 1) / 2)
    return d.astype(np.float32), out


def _parzen(values: torch.Tensor) -> torch.Tensor:
    """Gaussian Parzen weights of values in [0, 1] over BINS bins, rows summing to 1."""
    centres = torch.linspace(0, 1, BINS, dtype=values.dtype)
    w = torch.exp(-0.5 * ((values[:, None] - centres[None]) * (BINS - 1)) ** 2)
    return w / w.sum(1, keepdim=True).clamp_min(1e-12)


def _mutual_information(wt: torch.Tensor, s: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    ws = _parzen(s) * inside[:, None]
    joint = wt.T @ ws
    joint = joint / joint.sum().clamp_min(1e-12)
    pt, ps = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    return (joint * (torch.log(joint + 1e-10) - torch.log(pt @ ps + 1e-10))).sum()


def _affine_matrix(p: torch.Tensor) -> torch.Tensor:
    """12 parameters -> 4x4: translation (x10 mm), rotation (rad), log-scale, shear."""
    t, r, s, h = p[:3] * 10.0, p[3:6], torch.exp(p[6:9]), p[9:12]
    cx, cy, cz = torch.cos(r)
    sx, sy, sz = torch.sin(r)
    one, zero = torch.ones(()), torch.zeros(())
    rx = torch.stack([torch.stack([one, zero, zero]), torch.stack([zero, cx, -sx]), torch.stack([zero, sx, cx])])
    ry = torch.stack([torch.stack([cy, zero, sy]), torch.stack([zero, one, zero]), torch.stack([-sy, zero, cy])])
    rz = torch.stack([torch.stack([cz, -sz, zero]), torch.stack([sz, cz, zero]), torch.stack([zero, zero, one])])
    shear = torch.stack([torch.stack([one, h[0], h[1]]), torch.stack([zero, one, h[2]]), torch.stack([zero, zero, one])])
    m = rz @ ry @ rx @ torch.diag(s) @ shear
    top = torch.cat([m, t[:, None]], 1)
    return torch.cat([top, torch.tensor([[0.0, 0.0, 0.0, 1.0]])], 0)


def register_template(image: np.ndarray, image_affine: np.ndarray, template: np.ndarray,
                      template_affine: np.ndarray) -> tuple[np.ndarray, float]:
    """Affine ``template world -> image world`` (4x4, mm) maximising mutual information.

    Inputs: the image's intensities and affine (any orientation, any contrast), the template
    head's intensities and affine. Returns the matrix and the mutual information reached.
    """
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(torch_threads, int(os.environ.get("OMP_NUM_THREADS", torch_threads)))))
    try:
        return _register(image, image_affine, template, template_affine)
    finally:
        torch.set_num_threads(torch_threads)


def _register(image, image_affine, template, template_affine):
    c_img = head_anchor(image, image_affine)
    c_tpl = head_anchor(template, template_affine)
    img4, aff4 = _downsample(image, image_affine, 4.0)
    img4 = _normalise(img4)
    tpl = _normalise(template)
    # template points: the head and a band of air around it (edges carry the signal)
    lo, hi = robust_range(template)
    head = template > lo + 0.5 * (otsu_threshold(np.clip(template.ravel(), lo, hi)) - lo)
    keep = ndi.binary_dilation(head, iterations=2)
    pts = _world(template_affine, template.shape)[:, keep.ravel()] - c_tpl[:, None]
    values = tpl[keep]
    # a fixed random subset of the points (as Mattes et al.): the histograms stay smooth
    pick = np.random.default_rng(0).permutation(pts.shape[1])[:SAMPLES]
    pts, values = pts[:, pick], values[pick]
    pts_t = torch.from_numpy(np.vstack([pts, np.ones((1, pts.shape[1]), np.float32)]))
    wt = _parzen(torch.from_numpy(values))
    world_to_vox = torch.from_numpy(np.linalg.inv(aff4).astype(np.float32))
    shape = torch.tensor(img4.shape, dtype=torch.float32)
    centre = torch.eye(4)
    centre[:3, 3] = torch.from_numpy(c_img.astype(np.float32))

    params = torch.zeros(12, requires_grad=True)
    best_mi = 0.0
    for sigma, free, steps in ((1.5, 7, 80), (0.75, 12, 80), (0.0, 12, 40)):
        vol = ndi.gaussian_filter(img4, sigma) if sigma else img4
        # grid_sample wants (N, C, D, H, W) and x, y, z in [-1, 1] indexing W, H, D
        vol_t = torch.from_numpy(np.ascontiguousarray(vol.transpose(2, 1, 0)))[None, None]
        opt = torch.optim.Adam([params], lr=0.02)
        for _ in range(steps):
            opt.zero_grad()
            # stage 1: translation, rotation and one isotropic scale; then all 12
            p = params if free == 12 else torch.cat([params[:6], params[6:7].expand(3), torch.zeros(3)])
            m = centre @ _affine_matrix(p)
            vox = (world_to_vox @ m @ pts_t)[:3]
            grid = (2 * vox / (shape[:, None] - 1) - 1).T[None, None, None]
            s = torch.nn.functional.grid_sample(vol_t, grid, mode="bilinear", padding_mode="zeros",
                                                align_corners=True).reshape(-1)
            inside = ((vox >= 0) & (vox <= shape[:, None] - 1)).all(0).float()
            mi = _mutual_information(wt, s, inside)
            (-mi).backward()
            opt.step()
            best_mi = float(mi.detach())
        with torch.no_grad():
            if free != 12:  # carry the isotropic scale into all three axes
                params[7:9] = params[6]
    with torch.no_grad():
        m = (centre @ _affine_matrix(params.detach())).numpy().astype(np.float64)
    shift = np.eye(4)
    shift[:3, 3] = -c_tpl
    return m @ shift, best_mi


def brain_mask(img: nib.spatialimages.SpatialImage, contrast: str | None = "T1w") -> BrainMask:
    """The template brain mask registered onto ``img`` (3D, or 4D with one volume).

    ``contrast`` picks the template (T1w or T2w); any other value, or None, uses T1w (mutual
    information copes with the mismatch).
    """
    img = as_3d(img)
    contrast = contrast if contrast in CONTRASTS else "T1w"
    head_path, mask_path = template_files(contrast)
    tpl = nib.load(head_path)
    tpl_mask = nib.load(mask_path)
    data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32))
    m, mi = register_template(data, img.affine, np.asarray(tpl.dataobj, dtype=np.float32), tpl.affine)
    # image voxel -> template mask voxel, sampled only over the mask's bounding box in the image
    vox2vox = np.linalg.inv(tpl_mask.affine) @ np.linalg.inv(m) @ img.affine
    mask_data = np.asarray(tpl_mask.dataobj, dtype=np.float32)
    nz = np.array(np.nonzero(mask_data))
    box = [(nz[a].min() - 1, nz[a].max() + 1) for a in range(3)]
    corners = np.array([[a, b, c, 1.0] for a in box[0] for b in box[1] for c in box[2]]).T
    in_img = (np.linalg.inv(vox2vox) @ corners)[:3]
    lo = np.clip(np.floor(in_img.min(1)).astype(int), 0, np.array(img.shape))
    hi = np.clip(np.ceil(in_img.max(1)).astype(int) + 1, 0, np.array(img.shape))
    out = np.zeros(img.shape, bool)
    if np.all(hi > lo):
        offset = np.eye(4)
        offset[:3, 3] = lo
        sub = vox2vox @ offset
        sampled = ndi.affine_transform(mask_data, sub[:3, :3], sub[:3, 3], output_shape=tuple(hi - lo),
                                       order=1, mode="constant", cval=0.0)
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = sampled >= 0.5
    return BrainMask(out, img.affine.copy(), m, f"{TEMPLATE} {contrast}", mi)


def brain_voxels_changed(original: nib.spatialimages.SpatialImage, defaced: nib.spatialimages.SpatialImage,
                         mask: np.ndarray) -> int:
    """How many voxels inside ``mask`` differ between ``original`` and ``defaced`` (same grid)."""
    a = np.asarray(as_3d(original).dataobj, dtype=np.float64)
    b = np.asarray(as_3d(defaced).dataobj, dtype=np.float64)
    if a.shape != b.shape or a.shape != mask.shape:
        raise ValueError(f"brain check: original {a.shape}, defaced {b.shape} and mask {mask.shape} differ in shape")
    changed = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return int(np.count_nonzero(changed & mask))
