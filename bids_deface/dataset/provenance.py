"""What the outputs say about how they were made: GeneratedBy, provenance sidecars, per-image records.

Names and numbers only, never a metadata value.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version as _dist_version
from pathlib import Path

from bids_deface.dataset.naming import bids_uri

CODE_URL = "https://github.com/bids-deface/bids-deface"
BIDS_VERSION = "1.10.0"


def package_version() -> str:
    try:
        return _dist_version("bids-deface")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"



def container_info() -> dict | None:
    """The container this process runs in, for ``GeneratedBy.Container`` (None when none).

    Our images set ``BIDS_DEFACE_CONTAINER`` to a JSON object (``{"Type": "docker", "Tag":
    "bids-deface"}``); ``<type>:<tag>`` is read too. Apptainer/Singularity also announce
    themselves in the environment.
    """
    spec = os.environ.get("BIDS_DEFACE_CONTAINER", "").strip()
    info: dict = {}
    if spec.startswith("{"):
        try:
            info = {k: v for k, v in json.loads(spec).items() if k in ("Type", "Tag", "URI")}
        except (json.JSONDecodeError, AttributeError):
            info = {}
    elif spec:
        kind, _, tag = spec.partition(":")
        info = {"Type": kind or "docker", **({"Tag": tag} if tag else {})}
    for var in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        if os.environ.get(var):
            info["Type"] = "singularity"
            info.setdefault("URI", Path(os.environ[var]).name)
            break
    return info or None


def generated_by() -> dict:
    entry = {
        "Name": "bids-deface",
        "Version": package_version(),
        "CodeURL": CODE_URL,
        "Description": "Eyes, nose and ears detected by a 3D attention-gated U-Net and distorted "
                       "(after Jeong et al., JMIR 2020); identifying metadata removed.",
    }
    container = container_info()
    if container:
        entry["Container"] = container
    return entry



def provenance(*, source_relpath: str, features, seed: int, model_sha256: str, voxel_counts: dict,
               confidence: dict, components: dict, warnings, removed_keys, cleared_fields, qc=None,
               fail_closed=None, session=None) -> dict:
    """What was done to one image: names and numbers only, never a metadata value."""
    prov = {
        "Version": package_version(),
        "ModelSHA256": model_sha256,
        "Features": list(features),
        "VoxelCounts": {f: int(voxel_counts.get(f, 0)) for f in features},
        "DetectorConfidence": {k: round(float(v), 4) for k, v in sorted(confidence.items())},
        "DetectedComponents": {k: int(v) for k, v in sorted(components.items())},
        "Warnings": list(warnings),
        "Seed": int(seed),
        "ScrubbedSidecarKeys": sorted(removed_keys),
        "ClearedNiftiFields": sorted(cleared_fields),
    }
    if fail_closed is not None:  # bids_deface.features.gate.Decision.provenance: names and numbers
        prov["FailClosed"] = fail_closed
    if session is not None:  # bids_deface.defacing.session: the reference and the registration
        prov["Session"] = session
    if qc is not None:  # the verdicts of bids_deface.qc.run_qc
        prov["QC"] = {
            "FaceDetectedAfter": qc.get("face_detected_after"),
            "FaceDetectedBefore": qc.get("face_detected_before"),
            "EarsLeft": qc.get("ears_left"),
            "BrainVoxelsChanged": qc.get("brain_voxels_changed"),
            "Failures": list(qc.get("failures", [])),
            "Flags": list(qc.get("flags", [])),
            "Override": list(qc.get("override", [])),  # checks released by --qc-override despite Failures
        }
    return prov


def defaced_sidecar(metadata: dict, source_relpath: str, prov: dict) -> dict:
    """Sidecar of ``…_desc-defaced_<suffix>.nii.gz``: scrubbed source metadata + provenance."""
    sidecar = dict(metadata)
    sidecar.update({
        "Description": "Defaced by bids-deface: " + ", ".join(prov["Features"]) + " distorted.",
        "Sources": [bids_uri(source_relpath)],
        "SkullStripped": False,
        "BidsDeface": prov,
    })
    return sidecar


def dseg_sidecar(source_relpath: str, prov: dict) -> dict:
    return {
        "Description": "Eyes, nose and ears found by the bids-deface detector "
                       "(labels in desc-facialfeatures_dseg.tsv).",
        "Sources": [bids_uri(source_relpath)],
        "SpatialReference": bids_uri(source_relpath),
        "Manual": False,
        "BidsDeface": {k: prov[k] for k in ("Version", "ModelSHA256", "DetectorConfidence", "DetectedComponents")},
    }


def image_record(*, source_relpath: str, status: str, outputs: dict | None = None, prov: dict | None = None,
                 error: str | None = None) -> dict:
    """The per-image record in ``logs/images/`` that the group level summarises."""
    record = {"Source": source_relpath, "Status": status, "Outputs": outputs or {}}
    if prov is not None:
        record["Provenance"] = prov
    if error:
        record["Error"] = error
    return record


