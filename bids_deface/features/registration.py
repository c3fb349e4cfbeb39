"""Affine registration of a template head to an image by Mattes mutual information.

Mattes et al. (2003): a cubic B-spline Parzen window on the moving image's intensities, plain
bins on the fixed template's, over a fixed random sample of template points, with the analytic
derivative of the mutual information, so that Adam can follow it (numpy and scipy only: no torch
at run time). Mutual information assumes nothing about contrast. Rigid plus one scale on an
8 mm image, then all 12 parameters at 4 mm (``SCHEDULE``).

The start is the head itself: the template's cranium (its top ``CRANIUM_MM``) is centred on
the image's and scaled to its width, so any field of view that holds the cranium starts near
the answer; template points outside the image's field of view leave the histograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .geometry import otsu_threshold, robust_range

CRANIUM_MM = 120.0  # the top of the head: the same part in any field of view that holds the brain
CUT_MM = 10.0  # head voxels on the grid's border this close to the head's extreme: the view cuts it
BINS = 32
# a fit this good is a head on a head (heads reach 0.55-2.3 nats; a failed start ~0.3): no other
# start of the registration is tried
GOOD_FIT_MI = 0.5
# (image voxel mm, smoothing sigma in voxels, free parameters, steps, learning rate, samples)
SCHEDULE = ((8.0, 0.7, 7, 50, 0.04, 3000), (4.0, 0.6, 12, 40, 0.02, 6000), (4.0, 0.0, 12, 20, 0.01, 6000))

def block_mean(data: np.ndarray, affine: np.ndarray, target_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Block means of about ``target_mm`` (anti-aliased and cheap), with the matching affine."""
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    k = np.maximum(1, np.round(target_mm / zooms)).astype(int)
    shape = np.maximum(np.array(data.shape) // k, 1)
    d = data[: shape[0] * k[0], : shape[1] * k[1], : shape[2] * k[2]]
    d = d.reshape(shape[0], k[0], shape[1], k[1], shape[2], k[2]).mean(axis=(1, 3, 5), dtype=np.float32)
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * k
    out[:3, 3] = affine[:3, 3] + affine[:3, :3] @ ((k - 1) / 2)
    return d, out


def _normalise(data: np.ndarray) -> np.ndarray:
    lo, hi = robust_range(data)
    return np.clip((data - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def world_coords(affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """World coordinates (3, n) of the voxels in ``mask``."""
    return affine[:3, :3] @ np.argwhere(mask).T + affine[:3, 3:4]


def coarse_head(data: np.ndarray) -> np.ndarray:
    """Head (tissue above the air threshold, holes filled) on a coarse image."""
    lo, hi = robust_range(data)
    head = data > lo + 0.5 * (otsu_threshold(np.clip(data.ravel(), lo, hi)) - lo)
    if not head.any():
        return head
    # closing on an edge-padded copy: where the field of view cuts the head, the cut stays head
    head = ndi.binary_closing(np.pad(head, 1, mode="edge"), iterations=1)[1:-1, 1:-1, 1:-1]
    return ndi.binary_fill_holes(head)


def _cranium(head: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (world mm) and left-right width of the head's top CRANIUM_MM."""
    if not head.any():
        raise ValueError("no head found (nothing above the air threshold)")
    xyz = world_coords(affine, head)
    top = xyz[:, xyz[2] > xyz[2].max() - CRANIUM_MM]
    lo, hi = np.percentile(top[0], [1, 99])
    return top.mean(axis=1), float(hi - lo)


def _extent(head: np.ndarray, affine: np.ndarray, margin: float = CUT_MM
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """World bounding box (lo, hi) of the head, and per world axis whether the field of view
    cuts the head at its low and at its high end (head voxels on the grid's border, within
    ``margin`` mm of the head's extreme there)."""
    xyz = world_coords(affine, head)
    lo, hi = xyz.min(axis=1), xyz.max(axis=1)
    border = head.copy()
    border[1:-1, 1:-1, 1:-1] = False
    edge = world_coords(affine, border)
    if not edge.size:
        return lo, hi, np.zeros(3, bool), np.zeros(3, bool)
    return lo, hi, (edge < lo[:, None] + margin).any(1), (edge > hi[:, None] - margin).any(1)


def _starts(image_head: np.ndarray, image_affine: np.ndarray, template_head: np.ndarray,
            template_affine: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Where the registration may start (:func:`_start`): with the field of view's cuts read at
    CUT_MM, at twice that, and as if there were none. Whether a head counts as cut can flip on a
    rounding of its header, so each distinct reading is a start, and the better fit is kept."""
    none = np.zeros(3, bool)
    readings = []
    for margin in (CUT_MM, 2 * CUT_MM, None):
        cut = _extent(image_head, image_affine, margin)[2:] if margin else (none, none)
        if not any(np.array_equal(cut[0], r[0]) and np.array_equal(cut[1], r[1]) for r in readings):
            readings.append(cut)
    return [_start(image_head, image_affine, template_head, template_affine, cut) for cut in readings]


def _start(image_head: np.ndarray, image_affine: np.ndarray, template_head: np.ndarray,
           template_affine: np.ndarray, cut: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """Where the registration starts: the template's cranium centre on the image's, scaled to its
    width; but along a world axis where the field of view cuts the image's head at one end only
    (``cut``: per axis, cut at the low end, at the high end), the template's other, uncut edge on
    the image's (half a head has no centre to match)."""
    c_img, w_img = _cranium(image_head, image_affine)
    c_tpl, w_tpl = _cranium(template_head, template_affine)
    lo_i, hi_i, _, _ = _extent(image_head, image_affine)
    lo_t, hi_t, _, _ = _extent(template_head, template_affine)
    cut_lo, cut_hi = cut
    one_sided = cut_lo != cut_hi
    scale = 1.0 if one_sided[0] else float(np.clip(w_img / max(w_tpl, 1.0), 0.8, 1.25))
    for a in np.flatnonzero(one_sided):
        c_img[a] = hi_i[a] - scale * (hi_t[a] - c_tpl[a]) if cut_lo[a] else lo_i[a] + scale * (c_tpl[a] - lo_t[a])
    return c_img, c_tpl, scale


def _cubic_bspline(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base bins, cubic B-spline weights (4, n) and their derivatives (4, n) at positions ``u``."""
    base = np.floor(u)
    t = u - base
    w = np.stack([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3]) / 6
    dw = np.stack([-((1 - t) ** 2), 3 * t**2 - 4 * t, -3 * t**2 + 2 * t + 1, t**2]) / 2
    return base.astype(np.int64), w, dw


def _mutual_information(tbin: np.ndarray, s: np.ndarray, inside: np.ndarray) -> tuple[float, np.ndarray]:
    """Mattes MI of template bins ``tbin`` and image values ``s`` in [0, 1] at the inside points,
    and its derivative with respect to each value (Mattes et al. 2003, eq. 9-11)."""
    clamped = np.clip(s, 0.0, 1.0)
    base, w, dw = _cubic_bspline(clamped * (BINS - 4) + 1.5)
    cells = tbin[None] * BINS + base[None] + np.arange(-1, 3)[:, None]
    joint = np.bincount(cells.ravel(), (w * inside).ravel(), BINS * BINS).reshape(BINS, BINS)
    total = max(joint.sum(), 1e-12)
    p = joint / total
    pt, ps = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    mi = float((p * (np.log(p + 1e-10) - np.log(pt @ ps + 1e-10))).sum())
    # dMI = sum dp * (log p - log p_s): the template's bins and the total do not move
    gain = (np.log(p + 1e-10) - np.log(ps + 1e-10)).ravel()
    ds = (dw * gain[cells]).sum(0) * (BINS - 4) * inside / total
    ds[(s < 0) | (s > 1)] = 0.0
    return mi, ds


def _affine_matrix(p: np.ndarray) -> np.ndarray:
    """12 parameters -> 4x4: translation (x10 mm), rotation (rad), log-scale, shear."""
    t, r, s, h = p[:3] * 10.0, p[3:6], np.exp(p[6:9]), p[9:12]
    (cx, cy, cz), (sx, sy, sz) = np.cos(r), np.sin(r)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    shear = np.array([[1, h[0], h[1]], [0, 1, h[2]], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx @ np.diag(s) @ shear
    m[:3, 3] = t
    return m


def _matrix_derivatives(p: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """d(affine matrix)/d(parameter k), (12, 4, 4), by central differences."""
    out = np.empty((12, 4, 4))
    for k in range(12):
        e = np.zeros(12)
        e[k] = step
        out[k] = (_affine_matrix(p + e) - _affine_matrix(p - e)) / (2 * step)
    return out


@dataclass
class _Points:
    """Template sample points (homogeneous, centred on the template's cranium) and their bins."""

    xyz: np.ndarray  # (4, n)
    bins: np.ndarray  # (n,) int


def _template_points(template: np.ndarray, affine: np.ndarray, centre: np.ndarray, n: int) -> _Points:
    # the head and a band of air around it: the edges carry most of the signal
    keep = ndi.binary_dilation(coarse_head(template), iterations=2)
    pts = world_coords(affine, keep) - centre[:, None]
    values = _normalise(template)[keep]
    pick = np.random.default_rng(0).permutation(pts.shape[1])[:n]  # fixed subset (Mattes et al.)
    xyz = np.vstack([pts[:, pick], np.ones((1, pick.size))])
    return _Points(xyz, np.minimum((values[pick] * BINS).astype(np.int64), BINS - 1))


@dataclass
class _Volume:
    """One pyramid level of the image: intensities in [0, 1], their gradient, world -> voxel."""

    values: np.ndarray
    gradient: np.ndarray  # (3, *shape), per voxel
    world_to_vox: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray, affine: np.ndarray, mm: float, sigma: float) -> "_Volume":
        vol, aff = block_mean(image, affine, mm)
        vol = _normalise(ndi.gaussian_filter(vol, sigma) if sigma else vol)
        grad = np.stack(np.gradient(vol)) if min(vol.shape) > 1 else np.zeros((3, *vol.shape), np.float32)
        return cls(vol, grad.astype(np.float32), np.linalg.inv(aff))


def _cost(params: np.ndarray, centre: np.ndarray, pts: _Points, vol: _Volume,
          gradient: bool = True) -> tuple[float, np.ndarray | None]:
    """MI at ``params`` and its gradient with respect to the 12 parameters."""
    to_vox = vol.world_to_vox @ centre
    vox = (to_vox @ _affine_matrix(params) @ pts.xyz)[:3]
    shape = np.array(vol.values.shape)[:, None]
    inside = ((vox >= 0) & (vox <= shape - 1)).all(0).astype(np.float64)
    s = ndi.map_coordinates(vol.values, vox, order=1, mode="constant", cval=0.0)
    mi, ds = _mutual_information(pts.bins, s, inside)
    if not gradient:
        return mi, None
    g = np.stack([ndi.map_coordinates(vol.gradient[a], vox, order=1, mode="constant") for a in range(3)])
    # chain rule: d MI / d(matrix entry ij) = sum over points of (d MI / d position)_i * point_j
    dmi_dpos = to_vox[:3, :3].T @ (g * ds)
    return mi, np.tensordot(_matrix_derivatives(params)[:, :3, :], dmi_dpos @ pts.xyz.T, axes=([1, 2], [0, 1]))


def register_template(image: np.ndarray, image_affine: np.ndarray, template: np.ndarray,
                      template_affine: np.ndarray) -> tuple[np.ndarray, float]:
    """Affine ``template world -> image world`` (4x4, mm) maximising mutual information.

    Inputs: the image's intensities and affine (any orientation, any contrast, 3D), the
    template head's intensities and affine. Returns the matrix and the mutual information
    (nats) reached.
    """
    image2, affine2 = block_mean(np.asarray(image, np.float32), image_affine, 2.0)
    return register_downsampled(image2, affine2, template, template_affine)


def register_downsampled(image2: np.ndarray, affine2: np.ndarray, template: np.ndarray,
                         template_affine: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`register_template` of an image already reduced to about 2 mm (``block_mean``)."""
    coarse, coarse_affine = block_mean(image2, affine2, 4.0)
    best = None
    for c_img, c_tpl, scale in _starts(coarse_head(coarse), coarse_affine, coarse_head(template), template_affine):
        centre = np.eye(4)
        centre[:3, 3] = c_img
        params = np.zeros(12)
        params[6:9] = np.log(scale)
        found = _optimise(image2, affine2, template, template_affine, centre, c_tpl, params, SCHEDULE)
        if best is None or found[1] > best[1]:  # the higher mutual information
            best = found
        if best[1] >= GOOD_FIT_MI:  # a head's fit: the other starts would not do better
            break
    return best


def _optimise(image2, affine2, template, template_affine, centre, c_tpl, params, schedule):
    """Adam ascending the MI through ``schedule``; the matrix template world -> image world and
    the MI reached. ``free`` parameters per stage: 12 (affine), 7 (rigid plus one isotropic
    scale, held in params[6]) or 6 (rigid)."""
    all_points = _template_points(template, template_affine, c_tpl, max(s[5] for s in schedule))
    for mm, sigma, free, steps, lr, n in schedule:
        pts = _Points(all_points.xyz[:, :n], all_points.bins[:n])
        vol = _Volume.of(image2, affine2, mm, sigma)
        m1, m2 = np.zeros(12), np.zeros(12)
        for step in range(1, steps + 1):
            _, grad = _cost(params, centre, pts, vol)
            if free != 12:
                grad = np.concatenate([grad[:6], [grad[6:9].sum() if free == 7 else 0.0], np.zeros(5)])
            m1 = 0.9 * m1 + 0.1 * grad
            m2 = 0.999 * m2 + 0.001 * grad**2
            params = params + lr * (m1 / (1 - 0.9**step)) / (np.sqrt(m2 / (1 - 0.999**step)) + 1e-8)
            if free == 7:
                params[7:9] = params[6]
    mi, _ = _cost(params, centre, all_points, vol, gradient=False)
    shift = np.eye(4)
    shift[:3, 3] = -c_tpl
    return centre @ _affine_matrix(params) @ shift, mi


# images of one session share the scanner's frame: the head moved a little between them, if at all
RIGID_SCHEDULE = ((8.0, 0.7, 6, 30, 0.04, 3000), (4.0, 0.5, 6, 30, 0.01, 6000))


def register_rigid(image2: np.ndarray, affine2: np.ndarray, reference: np.ndarray,
                   reference_affine: np.ndarray) -> tuple[np.ndarray, float]:
    """Rigid ``reference world -> image world`` (4x4, mm) maximising mutual information, starting
    from the identity (both images are in the scanner's frame), rotating about the reference's
    cranium. ``image2``: the image reduced to about 2 mm (``block_mean``); ``reference``: the
    reference image, reduced to about 4 mm. Any contrasts (T1w to T2w, FLAIR, fieldmap magnitude)."""
    c_ref, _ = _cranium(coarse_head(reference), reference_affine)
    centre = np.eye(4)
    centre[:3, 3] = c_ref
    return _optimise(image2, affine2, reference, reference_affine, centre, c_ref, np.zeros(12), RIGID_SCHEDULE)


def sample_moved(data: np.ndarray, data_affine: np.ndarray, to_world: np.ndarray, shape, affine: np.ndarray,
                 order: int = 0, cval: float = 0.0, mode: str = "constant") -> np.ndarray:
    """``data`` (on ``data_affine``, moved by ``to_world``) sampled on the grid ``shape``/``affine``;
    beyond ``data``'s grid: ``cval`` (mode "constant") or the nearest edge value ("nearest")."""
    vox2vox = np.linalg.inv(data_affine) @ np.linalg.inv(to_world) @ affine
    return ndi.affine_transform(np.asarray(data, np.float32), vox2vox[:3, :3], vox2vox[:3, 3],
                                output_shape=tuple(int(s) for s in shape), order=order, mode=mode, cval=cval)
