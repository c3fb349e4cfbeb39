"""Writing one defaced image's outputs: the image, its sidecar, its feature labels, its record.

Every file goes to a temporary hidden name first and is renamed into place
(:mod:`bids_deface.dataset.atomic`), so an interrupted run leaves either the previous file or the
new one, never half a file. Nothing here decides anything: the steps before it did.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib

from bids_deface.dataset.atomic import write_atomic, write_json_atomic
from bids_deface.dataset.regions import regions_relpath
from bids_deface.dataset.provenance import defaced_sidecar, dseg_sidecar, image_record
from bids_deface.images import save_exact


def write_defaced(output_dir: str | Path, outputs: dict, source_relpath: str, defaced, labels,
                  metadata: dict, prov: dict, labels_dir: str | Path | None = None, regions=None) -> dict:
    """Write ``defaced`` (and, in the derivative layout, its sidecar) under ``output_dir``, then the
    per-image record; returns the record. ``labels`` (and their sidecar) go to ``labels_dir`` only:
    they outline the ears and the nose, so they are never part of the shared output. ``regions``
    (:class:`~bids_deface.dataset.regions.KeptRegions`: the distorted regions swept outward, which
    show no surface) go beside the record, for the group report."""
    root = Path(output_dir)
    write_atomic(root / outputs["image"], lambda tmp: save_exact(defaced, tmp))
    written = {"image": outputs["image"]}
    if outputs.get("layout", "derivative") == "derivative":  # (the raw copy writes the raw sidecars)
        write_json_atomic(root / outputs["sidecar"], defaced_sidecar(metadata, source_relpath, prov))
        written["sidecar"] = outputs["sidecar"]
    if labels_dir and outputs.get("labels"):
        write_atomic(Path(labels_dir) / outputs["labels"], lambda tmp: nib.save(labels, tmp))
        write_json_atomic(Path(labels_dir) / outputs["labels_sidecar"], dseg_sidecar(source_relpath, prov))
    if regions is not None:
        written["regions"] = regions_relpath(outputs["record"])
        write_atomic(root / written["regions"], regions.save)
    record = image_record(source_relpath=source_relpath, status="defaced", outputs=written, prov=prov)
    write_json_atomic(root / outputs["record"], record)
    return record
