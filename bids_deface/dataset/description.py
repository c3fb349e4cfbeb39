"""The dataset-level files of the output: dataset_description.json, README, .bidsignore (and the
feature labels' dseg.tsv, in the curator's labels folder)."""

from __future__ import annotations

from pathlib import Path

from bids_deface.dataset.atomic import write_json_atomic, write_text_atomic
from bids_deface.dataset.provenance import BIDS_VERSION, generated_by
from bids_deface.features import DSEG_TSV, dseg_tsv

BIDSIGNORE = ("logs/", "figures/", "*.html", "group_summary.tsv")


# the source, when it has no DOI: a path could name a person (folders are often named after the
# participant or the study's patient number), so none is written
UNNAMED_SOURCE = "bids:raw"


def source_reference(bids_dir: Path, output_dir: Path, source_desc: dict) -> dict:
    """How the output refers to its source dataset: its DOI if it has one; never a path."""
    ref: dict = {}
    doi = source_desc.get("DatasetDOI")
    if doi:
        ref["DOI"] = doi if doi.startswith("doi:") else f"doi:{doi}"
    ref["URL"] = ref.get("DOI", UNNAMED_SOURCE)
    if source_desc.get("Version") or source_desc.get("DatasetVersion"):
        ref["Version"] = str(source_desc.get("Version") or source_desc.get("DatasetVersion"))
    return ref


def derivative_description(source_desc: dict, source_ref: dict) -> dict:
    """``dataset_description.json`` of the derivative dataset."""
    desc = {
        "Name": f"bids-deface: {source_desc.get('Name', 'defaced dataset')}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by()],
        "SourceDatasets": [source_ref],
        "DatasetLinks": {"raw": source_ref.get("DOI", source_ref["URL"])},
    }
    if source_desc.get("License"):
        desc["License"] = source_desc["License"]
    return desc


def raw_description(source_desc: dict) -> dict:
    """The input's ``dataset_description.json`` with our ``GeneratedBy`` entry appended."""
    desc = dict(source_desc)
    # Said explicitly: with GeneratedBy and no DatasetType, validators take it for a derivative.
    desc.setdefault("DatasetType", "raw")
    previous = [g for g in desc.get("GeneratedBy", []) if g.get("Name") != "bids-deface"]
    desc["GeneratedBy"] = previous + [generated_by()]
    return desc



def derivative_readme(source_name: str) -> str:
    return (
        f"# bids-deface outputs for {source_name}\n\n"
        "Each face-bearing anatomical image of the source dataset, defaced: the eyes, nose and\n"
        "ears found by bids-deface's detector are distorted (`*_desc-defaced_<suffix>.nii.gz`),\n"
        "everything else is left unchanged voxel for voxel. (The detected feature labels outline\n"
        "the ears and the nose: they are not part of this dataset.)\n"
        "Sidecars carry the source's metadata without identifying keys, and the provenance of\n"
        "the defacing (`BidsDeface`). `logs/` holds the command lines and per-image records.\n"
    )


def merged_bidsignore(existing: str | None) -> str:
    lines = [line for line in (existing or "").splitlines()]
    for entry in BIDSIGNORE:
        if entry not in lines:
            lines.append(entry)
    return "\n".join(lines) + "\n"



def write_derivative_dataset(bids_dir: Path, output_dir: Path, source_desc: dict) -> None:
    """The dataset-level files of the derivative layout (idempotent)."""
    ref = source_reference(bids_dir, output_dir, source_desc)
    write_json_atomic(output_dir / "dataset_description.json", derivative_description(source_desc, ref))
    # (the folder's name is never used: it may name a person)
    write_text_atomic(output_dir / "README.md", derivative_readme(source_desc.get("Name", "the source dataset")))
    ignore = output_dir / ".bidsignore"
    write_text_atomic(ignore, merged_bidsignore(ignore.read_text() if ignore.exists() else None))


def write_labels_dataset(labels_dir: Path, source_desc: dict) -> None:
    """The curator's labels folder (``--labels-dir``): a derivative dataset of the feature labels."""
    desc = derivative_description(source_desc, source_reference(labels_dir, labels_dir, source_desc))
    desc["Name"] = f"bids-deface feature labels: {source_desc.get('Name', 'the source dataset')}"
    write_json_atomic(labels_dir / "dataset_description.json", desc)
    write_text_atomic(labels_dir / DSEG_TSV, dseg_tsv())



