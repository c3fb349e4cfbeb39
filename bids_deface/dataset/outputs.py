"""Writing one defaced image's outputs: the image, its sidecar, its feature labels, its record.

Every file goes to a temporary hidden name first and is renamed into place
(:mod:`bids_deface.dataset.atomic`), so an interrupted run leaves either the previous file or the
new one, never half a file. Nothing here decides anything: the steps before it did.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib

from bids_deface.dataset.atomic import write_atomic, write_json_atomic
from bids_deface.dataset.provenance import defaced_sidecar, dseg_sidecar, image_record
from bids_deface.images import save_exact


def write_defaced(output_dir: str | Path, outputs: dict, source_relpath: str, defaced, labels,
                  metadata: dict, prov: dict) -> dict:
    """Write ``defaced`` (and, where ``outputs`` names them, its sidecar, ``labels`` and the
    labels' sidecar) under ``output_dir``, then the per-image record; returns the record."""
    root = Path(output_dir)
    write_atomic(root / outputs["image"], lambda tmp: save_exact(defaced, tmp))
    written = {"image": outputs["image"]}
    if outputs.get("sidecar") and outputs.get("dseg"):  # the derivative layout; the raw copy writes raw sidecars
        write_json_atomic(root / outputs["sidecar"], defaced_sidecar(metadata, source_relpath, prov))
        written["sidecar"] = outputs["sidecar"]
    if outputs.get("dseg"):
        write_atomic(root / outputs["dseg"], lambda tmp: nib.save(labels, tmp))
        written["dseg"] = outputs["dseg"]
        if outputs.get("dseg_sidecar"):
            write_json_atomic(root / outputs["dseg_sidecar"], dseg_sidecar(source_relpath, prov))
    record = image_record(source_relpath=source_relpath, status="defaced", outputs=written, prov=prov)
    write_json_atomic(root / outputs["record"], record)
    return record
