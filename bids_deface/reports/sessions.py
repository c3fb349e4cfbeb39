"""The group summary's sessions: per subject and session, the distorted regions of every image in
the reference's space, and how well they agree.

Each defaced image leaves its distorted regions beside its record (``logs/images/<image>_regions.npz``,
:mod:`bids_deface.dataset.regions`: on a 3 mm world lattice, swept outward, so that they show no
surface). An image registered to the session's reference is carried into the reference's space
with the transform its provenance records (``Session.Registration.reference_to_image``: a point
``p`` of the reference is at ``reference_to_image @ p`` in the image); an image that shares the
distortion of the first image of its acquisition goes with that image's transform. The figure
draws each image's regions as an outline of its own colour, over maximum-intensity projections of
the *defaced* reference (read back from the output, as the thumbnails are); the table gives each
image's Dice against the reference, per feature, inside both fields of view. An image that fell
back to its own detection is listed with the reason, and neither drawn nor measured: the
registration that would place it failed.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

from bids_deface.dataset.naming import parse_name
from bids_deface.dataset.regions import KeptRegions, dice, in_reference_space, lattice_mapped
from bids_deface.features import FEATURES
from bids_deface.qc.overlay import _erode, _grey, _row

LOGGER = logging.getLogger("bids_deface")
PIXELS_PER_CELL = 2
TINT = 0.45  # of the reference's colour over the background
AGREEMENT = 0.85  # Dice at which the regions of two images of a session agree (issue 13)
# one colour per image, the reference's first; none is grey (the background is)
PALETTE = ((255, 215, 0), (0, 200, 255), (255, 140, 0), (255, 60, 200), (60, 230, 90), (0, 110, 255),
           (170, 120, 255), (255, 90, 90))
PROJECTIONS = (("sagittal", 0), ("coronal", 1), ("axial", 2))
BIDS_RAW = "bids:raw:"


def _session_of(relpath: str) -> tuple[str, str] | None:
    try:
        pairs = dict(parse_name(Path(relpath).name)[0])
    except ValueError:
        return None
    return pairs.get("sub", ""), pairs.get("ses", "")


def _reference_of(members: dict[str, dict]) -> str | None:
    """The relpath that the session's images name as their reference (one of the members)."""
    for record in members.values():
        named = record.get("Provenance", {}).get("Session", {}).get("Reference", "")
        if named.removeprefix(BIDS_RAW) in members:
            return named.removeprefix(BIDS_RAW)
    return None


def _placement(relpath: str, members: dict[str, dict], reference: str, seen=()) -> tuple[np.ndarray | None, str]:
    """(reference world -> this image's world, or None when it cannot be placed; its role in words)."""
    if relpath == reference:
        return np.eye(4), "reference"
    session = members[relpath].get("Provenance", {}).get("Session", {})
    if session.get("SharedWith"):
        leader = session["SharedWith"].removeprefix(BIDS_RAW)
        if leader in members and leader not in seen:
            matrix, _ = _placement(leader, members, reference, (*seen, relpath))
            return matrix, f"shares the distortion of {Path(leader).name}"
        return None, f"shares the distortion of {Path(leader).name} (not in this session's records)"
    registration = session.get("Registration", {})
    if session.get("Fallback"):
        why = "; ".join(registration.get("failures", []))
        return None, f"fell back to its own detection: {session['Fallback']}" + (f" ({why})" if why else "")
    if registration.get("sound") and registration.get("reference_to_image"):
        return np.asarray(registration["reference_to_image"], float), (
            f"registered to the reference (mutual information {registration.get('mutual_information', 0):.2f}, "
            f"moved {registration.get('motion_mm', 0):.1f} mm / {registration.get('motion_deg', 0):.1f}°)")
    return None, "defaced on its own (no registration to the reference recorded)"


def _output(output_dir: Path, record: dict, name: str) -> Path | None:
    """The file a defaced image's record names as its output ``name``, when it lies in the output."""
    rel = record.get("Outputs", {}).get(name)
    if record.get("Status") != "defaced" or not rel:
        return None
    path = (Path(output_dir) / rel).resolve()
    return path if Path(output_dir).resolve() in path.parents and path.is_file() else None


def _regions(output_dir: Path, record: dict) -> KeptRegions | None:
    rel = _output(output_dir, record, "regions")
    if rel is None:
        return None
    try:
        return KeptRegions.load(rel)
    except Exception as exc:  # an unreadable file: the session says so, the rest is summarised
        LOGGER.warning("%s: unreadable regions (%s)", rel, type(exc).__name__)
        return None


def _background(output_dir: Path, record: dict, lattice: KeptRegions) -> np.ndarray:
    """The defaced reference (read back from the output) at the lattice's cell centres; zeros when it
    cannot be read."""
    path = _output(output_dir, record, "image")
    try:
        img = nib.load(str(path))
        vox = lattice_mapped(np.linalg.inv(img.affine), lattice.origin, lattice.fov.shape)
        index = np.clip(np.rint(vox).astype(int), 0, np.asarray(img.shape[:3]) - 1)
        data = np.asanyarray(img.dataobj)
        data = data[..., 0] if data.ndim == 4 else data
        return np.where(lattice.fov, data[tuple(index[..., a] for a in range(3))], 0).astype(np.float32)
    except Exception as exc:
        LOGGER.warning("%s: no background for the session figure (%s)", record.get("Source", ""),
                       type(exc).__name__)
        return np.zeros(lattice.fov.shape, np.float32)


def _project(volume: np.ndarray, axis: int) -> np.ndarray:
    """Maximum along ``axis`` (lattice axes are the world's R, A, S), shown as qc/overlay shows its
    slices: superior (or anterior) at the top, the subject's left on the viewer's left."""
    return volume.max(axis).T[::-1]


def _panel(grey: np.ndarray, fill: tuple[np.ndarray, tuple], outlines: list[tuple[np.ndarray, tuple]],
           title: str) -> Image.Image:
    """The reference's regions tinted (``fill``), each other image's outlined in its colour."""
    big = np.kron(grey, np.ones((PIXELS_PER_CELL, PIXELS_PER_CELL), np.uint8))
    rgb = np.repeat(big[..., None], 3, axis=2).astype(np.float32)

    def enlarged(mask):
        return np.kron(mask, np.ones((PIXELS_PER_CELL, PIXELS_PER_CELL), bool))

    tint = enlarged(fill[0])
    rgb[tint] = (1 - TINT) * rgb[tint] + TINT * np.asarray(fill[1], np.float32)
    for mask, colour in outlines:
        mask = enlarged(mask)
        rgb[mask & ~_erode(mask)] = colour
    im = Image.fromarray(np.round(rgb).astype(np.uint8))
    ImageDraw.Draw(im).text((4, 4), title, fill=(255, 255, 255))
    return im


def session_figure(background: np.ndarray, placed: list[tuple[KeptRegions, tuple]]) -> bytes:
    """PNG: a row per feature, a column per projection; the reference's regions (``placed[0]``)
    tinted in its colour, each other image's outlined in its own."""
    rows = []
    for feature in FEATURES:
        panels = []
        for plane, axis in PROJECTIONS:
            shown = [(_project(kept.masks.get(feature, np.zeros_like(kept.fov)) & kept.fov, axis), colour)
                     for kept, colour in placed]
            panels.append(_panel(_grey(_project(background, axis)), shown[0], shown[1:], f"{feature}, {plane}"))
        rows.append(_row(panels))
    width, height = max(r.width for r in rows), sum(r.height for r in rows) + 6 * (len(rows) - 1)
    out, y = Image.new("RGB", (width, height), (0, 0, 0)), 0
    for row in rows:
        out.paste(row, (0, y))
        y += row.height + 6
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _hex(colour: tuple) -> str:
    return "#" + "".join(f"{c:02x}" for c in colour)


def session_view(output_dir: Path, name: str, members: dict[str, dict]) -> dict:
    """One session for the report: its figure (a ``data:`` URI, or None) and a row per image."""
    from bids_deface.reports.templating import png_uri

    reference = _reference_of(members)
    view = {"name": name, "figure": None, "rows": [], "note": ""}
    kept = _regions(output_dir, members[reference]) if reference else None
    if kept is None:
        view["note"] = ("no image of this session was registered to a defaced reference: each was defaced "
                        "on its own" if reference is None else "the reference's distorted regions are not in the output")
    placed = [(kept, PALETTE[0])] if kept is not None else []
    order = ([reference] if reference else []) + sorted(r for r in members if r != reference)
    for relpath in order:
        record = members[relpath]
        row = {"image": relpath, "colour": None, "role": "", "dice": {f: None for f in FEATURES}, "empty": [],
               "disagree": []}
        if record.get("Status") != "defaced":
            row["role"] = f"{record.get('Status', 'not processed')}: not in the figure"
        else:
            matrix, row["role"] = _placement(relpath, members, reference)
            own = None if kept is None or matrix is None else kept if relpath == reference else \
                _regions(output_dir, record)
            if own is not None:
                moved = own if relpath == reference else in_reference_space(own, kept, matrix)
                colour = PALETTE[0] if relpath == reference else PALETTE[len(placed) % len(PALETTE)]
                if relpath != reference:
                    placed.append((moved, colour))
                    row["dice"] = {f: dice(kept.masks[f], moved.masks[f], kept.fov & moved.fov)
                                   if f in kept.masks and f in moved.masks else None for f in FEATURES}
                row["disagree"] = [f for f, d in row["dice"].items() if d is not None and d < AGREEMENT]
                row["colour"] = _hex(colour)
                row["empty"] = [f for f in FEATURES if not (moved.masks.get(f, moved.fov) & moved.fov).any()]
            elif kept is not None and matrix is not None:
                row["role"] += " (its distorted regions are not in the output: not drawn)"
        view["rows"].append(row)
    if kept is not None:
        view["figure"] = png_uri(session_figure(_background(output_dir, members[reference], kept), placed))
    return view


def session_views(output_dir: Path | None, records: dict[str, dict]) -> list[dict]:
    """Every subject and session with more than one defaced image, in order."""
    if output_dir is None:
        return []
    sessions: dict[tuple[str, str], dict[str, dict]] = {}
    for relpath, record in records.items():
        key = _session_of(relpath)
        if key is not None:
            sessions.setdefault(key, {})[relpath] = record
    views = []
    for (subject, session), members in sorted(sessions.items()):
        if sum(r.get("Status") == "defaced" for r in members.values()) > 1:
            name = f"sub-{subject}" + (f" ses-{session}" if session else "")
            views.append(session_view(Path(output_dir), name, members))
    return views
