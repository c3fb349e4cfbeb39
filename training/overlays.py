"""Draw label overlays for checking annotations by eye: slices and surface views.

``python -m training.overlays [HEAD ...] [-o DIR]`` writes ``DIR/<head>_labels.png``
for every annotated head (default all): a mid-sagittal slice through the nose, an axial slice
through the eyes, a coronal slice through the ears, and frontal and both lateral surface views
with eyes (red), nose (green) and ears (blue) tinted and the landmarks marked, on a 10 mm grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

from bids_deface.features.geometry import head_mask, robust_range, to_ras
from .labels import Landmarks, label_ras, load_landmarks

COLOURS = {1: (255, 40, 40), 2: (40, 220, 40), 3: (60, 120, 255)}
SCALE = 2


def _tint(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(float)
    for value, colour in COLOURS.items():
        sel = labels == value
        rgb[sel] = 0.5 * rgb[sel] + 0.5 * np.array(colour)
    return rgb.astype(np.uint8)


def _panel(rgb: np.ndarray, h_axis_mm: np.ndarray, v_axis_mm: np.ndarray, title: str,
           points: list[tuple[float, float]]) -> Image.Image:
    """rgb indexed [h, v, 3] with v increasing upwards; draws a 10 mm grid and points (mm)."""
    im = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 0, 2)[::-1]))
    im = im.resize((im.width * SCALE, im.height * SCALE), Image.NEAREST)
    draw = ImageDraw.Draw(im)
    h0, dh = h_axis_mm[0], h_axis_mm[1] - h_axis_mm[0]
    v0, dv = v_axis_mm[0], v_axis_mm[1] - v_axis_mm[0]
    nv = len(v_axis_mm)

    def to_px(h, v):
        return ((h - h0) / dh * SCALE, (nv - 1 - (v - v0) / dv) * SCALE)

    for h in np.arange(np.ceil(h_axis_mm.min() / 10) * 10, h_axis_mm.max(), 10):
        x, _ = to_px(h, v0)
        draw.line([(x, 0), (x, im.height)], fill=(0, 70, 0))
        if int(h) % 20 == 0:
            draw.text((x + 1, 1), f"{h:.0f}", fill=(255, 255, 0))
    for v in np.arange(np.ceil(v_axis_mm.min() / 10) * 10, v_axis_mm.max(), 10):
        _, y = to_px(h0, v)
        draw.line([(0, y), (im.width, y)], fill=(0, 70, 0))
        if int(v) % 20 == 0:
            draw.text((1, y + 1), f"{v:.0f}", fill=(255, 255, 0))
    for h, v in points:
        x, y = to_px(h, v)
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=(255, 0, 255), width=2)
    draw.text((4, im.height - 14), title, fill=(255, 255, 255))
    return im


def overlay_figure(data: np.ndarray, affine: np.ndarray, labels: np.ndarray, lm: Landmarks, title: str) -> Image.Image:
    """A contact sheet of slices and surface views of one head with its labels."""
    axes_mm = [affine[a, a] * np.arange(data.shape[a]) + affine[a, 3] for a in range(3)]
    lo, hi = robust_range(data)
    grey = (np.clip((data - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    inv = np.linalg.inv(affine)
    ijk = lambda p: np.rint(nib.affines.apply_affine(inv, p)).astype(int)  # noqa: E731
    pts = [np.array(p) for p in (*lm.eyes, lm.nasion, lm.pronasale, lm.subnasale, *lm.ears)]
    t = ijk(lm.pronasale)
    e = ijk(np.mean(lm.eyes, axis=0))
    r = ijk(np.mean(lm.ears, axis=0))
    x, y, z = axes_mm
    panels = [
        _panel(_tint(grey[t[0]], labels[t[0]]), y, z, f"sagittal x={x[t[0]]:.0f}",
               [(p[1], p[2]) for p in pts if abs(p[0] - x[t[0]]) < 20]),
        _panel(_tint(grey[:, :, e[2]], labels[:, :, e[2]]), x, y, f"axial z={z[e[2]]:.0f}",
               [(p[0], p[1]) for p in pts if abs(p[2] - z[e[2]]) < 12]),
        _panel(_tint(grey[:, r[1], :], labels[:, r[1], :]), x, z, f"coronal y={y[r[1]]:.0f}",
               [(p[0], p[2]) for p in pts if abs(p[1] - y[r[1]]) < 20]),
    ]
    mask = head_mask(data)
    # surface views: depth-shaded first hit, label colour of the hit voxel
    for name, axis, reverse, h_ax, v_ax, proj in (
        ("front", 1, True, 0, 2, (0, 2)),
        ("left", 0, False, 1, 2, (1, 2)),
        ("right", 0, True, 1, 2, (1, 2)),
    ):
        m = np.moveaxis(mask, axis, -1)
        lab = np.moveaxis(labels, axis, -1)
        if reverse:
            m, lab = m[..., ::-1], lab[..., ::-1]
        hit = m.any(-1)
        depth = np.argmax(m, axis=-1)
        shade = np.where(hit, 255 - np.clip((depth - depth[hit].min()) * 2, 0, 200), 0).astype(np.uint8)
        first_label = np.take_along_axis(lab, depth[..., None], axis=-1)[..., 0] * hit
        # labels just under the surface too (skin is often a voxel thick)
        for d in (1, 2, 3):
            below = np.take_along_axis(lab, np.clip(depth + d, 0, lab.shape[-1] - 1)[..., None], axis=-1)[..., 0]
            first_label = np.where(first_label == 0, below * hit, first_label)
        rgb = _tint(shade, first_label)
        if name == "left":
            rgb = rgb[::-1]  # look at the left ear from the left: anterior to the left
            h_mm = -axes_mm[h_ax][::-1]
            ppts = [(-p[1], p[2]) for p in pts]
        else:
            h_mm = axes_mm[h_ax]
            ppts = [(p[h_ax], p[v_ax]) for p in pts]
        panels.append(_panel(rgb, h_mm, axes_mm[v_ax], f"surface {name}", ppts))
    width = sum(p.width for p in panels[:3])
    height = max(p.height for p in panels[:3]) + max(p.height for p in panels[3:])
    sheet = Image.new("RGB", (max(width, sum(p.width for p in panels[3:])), height + 16))
    xpos = 0
    for p in panels[:3]:
        sheet.paste(p, (xpos, 16))
        xpos += p.width
    xpos, ytop = 0, 16 + max(p.height for p in panels[:3])
    for p in panels[3:]:
        sheet.paste(p, (xpos, ytop))
        xpos += p.width
    ImageDraw.Draw(sheet).text((4, 2), title + "   eyes red, nose green, ears blue, landmarks magenta", fill=(255, 255, 255))
    return sheet


def draw_head(head: str, out_dir: Path) -> Path:
    from tools.heads import fetch_head

    img = nib.load(fetch_head(head))
    lm = load_landmarks(head)
    data, affine = to_ras(img, 1.0)
    labels = label_ras(data, affine, lm)
    counts = {k: int((labels == v).sum()) for k, v in (("eyes", 1), ("nose", 2), ("ears", 3))}
    out = out_dir / f"{head}_labels.png"
    overlay_figure(data, affine, labels, lm, f"{head} voxels(1mm): {counts}").save(out)
    return out


def main(argv=None) -> None:
    from .labels import annotation_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("heads", nargs="*", help="annotated heads (default: all)")
    parser.add_argument("-o", "--out-dir", type=Path, default=Path("overlays"))
    args = parser.parse_args(argv)
    heads = args.heads or sorted(p.stem for p in annotation_path("x").parent.glob("*.json"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for head in heads:
        print(draw_head(head, args.out_dir))


if __name__ == "__main__":
    main()
