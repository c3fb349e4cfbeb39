"""The curator's QC reports (bids_deface.reports.participant) from real QC runs, as a curator reads
them: self-contained, the verdict of each image first, then its renders, then its numbers; human
headers and no raw data; on a 1366 px laptop screen without sideways scrolling; and in print.

Two real QC results on the ICBM152 T2w head: defaced (QC passes) and left intact (QC refuses it:
the face is there), plus an image that failed before QC.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from bids_deface.distort import deface_image
from bids_deface.qc import run_qc
from bids_deface.reports.participant import write_group_index, write_participant_report
from browser import LAPTOP, chromium, layout, measure, screenshot, table_rows
from training.labels import head_labels

ERROR = "sub-01/anat/sub-01_run-3_T2w.nii.gz: not a 3D volume"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("qc_out")
    img, labels = head_labels("icbm152_t2")
    defaced, counts = deface_image(img, labels)
    passed = run_qc(img, defaced, labels, out / "figures", "sub-01_T2w")
    intact = run_qc(img, img, labels, out / "figures", "sub-01_run-2_T2w")
    passed.update(status="defaced", distorted_voxels=counts, scrubbed_keys=["InstitutionName", "DeviceSerialNumber"])
    intact.update(status="refused", error="sub-01/anat/sub-01_run-2_T2w.nii.gz: not written: face")
    broken = {"image": "sub-01_run-3_T2w", "status": "failed", "error": ERROR}
    sub = write_participant_report(out / "sub-01.html", "sub-01", [passed, intact, broken])
    rows = [dict(r, participant="sub-01", report=str(sub)) for r in (passed, intact, broken)]
    index = write_group_index(out / "index.html", rows)
    return out, sub, index, passed, intact


def test_qc_gives_the_verdicts_the_report_shows(reports):
    _, _, _, passed, intact = reports
    assert passed["refusals"] == [] and passed["brain_voxels_changed"] == 0
    assert [r["check"] for r in intact["refusals"]] == ["face", "ears"]  # nothing distorted: 0% of the ears


def test_reports_are_self_contained(reports):
    _, sub, index, _, _ = reports
    for page in (sub, index):
        text = page.read_text()
        assert not re.search(r"https?://", text) and "<link" not in text
        for src in re.findall(r'src="([^"]*)"', text):
            assert src.startswith("data:image/png;base64,"), src[:40]
    text = sub.read_text()
    assert text.count("<img") == 8  # renders, ears, features, brain of each image that ran
    assert "DeviceSerialNumber" in text and ERROR in text
    assert 'href="sub-01.html#sub-01_T2w"' in index.read_text()


def test_each_image_shows_its_verdict_before_its_renders_and_numbers(reports):
    _, sub, _, _, _ = reports
    text = sub.read_text()
    for name, verdict in (("sub-01_T2w", "defaced"), ("sub-01_run-2_T2w", "refused"), ("sub-01_run-3_T2w", "failed")):
        section = text[text.index(f'<section class="image" id="{name}">'):]
        section = section[:section.index("</section>")]
        first_verdict = section.index("data-verdict=")
        assert section[first_verdict:].startswith(f'data-verdict="{verdict}"'), name
        if verdict != "failed":
            assert first_verdict < section.index("<img") < section.index("<h3>Face detectors</h3>"), name
    intact = text[text.index('id="sub-01_run-2_T2w"'):]
    assert "a face is still detected after defacing" in intact[:intact.index("<img")]


def test_the_qc_index_gives_each_image_its_verdict(reports):
    _, _, index, _, _ = reports
    rows = {row["cells"][2]: row["verdict"] for row in table_rows(index.read_text())}
    assert rows == {"sub-01_T2w": "defaced", "sub-01_run-2_T2w": "refused", "sub-01_run-3_T2w": "failed"}


@pytest.mark.parametrize("page", ["sub-01.html", "index.html"])
def test_reports_fit_a_laptop_screen_verdict_first(reports, tmp_path, page):
    out = reports[0]
    box = layout(out / page, tmp_path, {"verdict": ".verdict"})
    assert box["innerWidth"] == LAPTOP[0]
    assert box["scrollWidth"] <= LAPTOP[0], f"{page} is {box['scrollWidth']} px wide on a {LAPTOP[0]} px screen"
    assert box["first"]["verdict"]["bottom"] < LAPTOP[1] and box["first"]["verdict"]["text"] == "Defaced"
    seen = measure(out / page, "return {headers: Array.prototype.map.call(document.querySelectorAll('th'),"
                   "function (th) { return th.innerText.trim(); }), text: document.body.innerText};", tmp_path)
    assert not [h for h in seen["headers"] if re.search(r"\w_\w", h)], seen["headers"]
    assert not re.search(r"[{}\[\]]", seen["text"]), "raw data on the page"
    shot = screenshot(out / page, tmp_path / "shot.png")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (LAPTOP[1], LAPTOP[0])
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # text, tables, renders: not a blank page


def test_the_participant_report_prints_one_image_a_page_within_the_page(reports, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    pdf = tmp_path / "report.pdf"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", (reports[1]).as_uri()], capture_output=True, timeout=180)
    reader = pypdf.PdfReader(pdf)
    starts, outside = [], []
    for number, page in enumerate(reader.pages):
        width = float(page.mediabox.width)

        def visit(fragment, cm, tm, font, size, page_width=width):
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            if fragment.strip() and not 0 <= x <= page_width:
                outside.append(fragment)

        text = " ".join(page.extract_text(visitor_text=visit).split())
        starts += [(name, number) for name in ("sub-01_T2w", "sub-01_run-2_T2w", "sub-01_run-3_T2w")
                   if text.startswith(name)]
    assert [name for name, _ in starts] == ["sub-01_run-2_T2w", "sub-01_run-3_T2w"]  # each further image: a new page
    assert not outside, f"text printed off the page: {outside[:5]}"
