"""The workflow that defaces one image."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from pathlib import Path

from bids_deface.features import FEATURES, shipped_weights
from bids_deface.interfaces.sink import DefacedSink
from bids_deface.interfaces.deface import DetectFeatures, DistortFeatures, LoadImage, RestoreGrid, ScrubMetadata

INPUT_FIELDS = ("in_file", "source_relpath", "metadata", "seed", "output_dir", "out_image", "out_sidecar",
                "out_dseg", "out_dseg_sidecar", "out_record", "stem", "qc_figures_dir", "qc_json")


def init_deface_wf(*, features=FEATURES, omp_nthreads: int = 1, policy_file: str | None = None,
                   margins: dict | None = None, qc: bool = False, name: str = "deface_wf"):
    """Deface one image: load → reorient to RAS → detect → distort → restore the input grid →
    scrub metadata → (QC →) write.

    Parameters
    ----------
    features : the features to distort (eyes, nose, ears).
    omp_nthreads : threads the detector may use.
    policy_file : a user sidecar policy extending or overriding the shipped one.
    margins : distortion parameters (``eye_box_margin_mm``, ``eye_surface_band_vox``,
        ``nose_box_scale``); the paper's defaults when absent.
    qc : run :class:`bids_deface.interfaces.qc.QC` (renders, face check, brain check) on the
        defaced image before writing it; the sink refuses an image on which a face remains.

    Inputs (``inputnode``)
    ----------------------
    in_file : the input image; source_relpath : its path in the input dataset;
    metadata : its sidecar metadata after inheritance; seed : seed of the ear noise;
    output_dir, out_image, out_sidecar, out_dseg, out_dseg_sidecar, out_record : where the
    sink writes (paths relative to output_dir; the optional ones may be empty);
    stem, qc_figures_dir, qc_json : the image's name without extension, and where QC writes its
    figures and result (outside output_dir: they show the original face).

    Outputs (``outputnode``)
    ------------------------
    in_file : the input image; defaced_file : the defaced image in the output dataset;
    labels_file : the feature labels on the input grid (work directory);
    record : the per-image record.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["in_file", "defaced_file", "labels_file", "record"]),
                         name="outputnode")

    load = pe.Node(LoadImage(), name="load", mem_gb=0.5)
    detect = pe.Node(DetectFeatures(omp_nthreads=omp_nthreads), name="detect", n_procs=omp_nthreads, mem_gb=1.5)
    if shipped_weights().exists():  # else the detector reports the missing weights per image
        detect.inputs.weights = str(shipped_weights())
    distort = pe.Node(DistortFeatures(features=list(features), **(margins or {})), name="distort", mem_gb=1.0)
    restore = pe.Node(RestoreGrid(), name="restore", mem_gb=0.5)
    scrub = pe.Node(ScrubMetadata(**({"policy_file": str(policy_file)} if policy_file else {})),
                    name="scrub", mem_gb=0.5)
    # Always rerun: the sink's outputs live outside the work directory, which nipype's cache
    # cannot see (a kept work directory would otherwise skip writing them).
    sink = pe.Node(DefacedSink(features=list(features)), name="sink", mem_gb=0.5, overwrite=True)

    wf.connect([
        (inputnode, load, [("in_file", "in_file"), ("source_relpath", "source_name")]),
        (inputnode, detect, [("source_relpath", "source_name")]),
        (load, detect, [("out_file", "in_file")]),
        (load, distort, [("out_file", "in_file")]),
        (inputnode, distort, [("seed", "seed")]),
        (detect, distort, [("labels_file", "labels_file")]),
        (distort, restore, [("out_file", "in_file")]),
        (detect, restore, [("labels_file", "labels_file")]),
        (inputnode, restore, [("in_file", "reference")]),
        (restore, scrub, [("out_file", "in_file")]),
        (inputnode, scrub, [("metadata", "metadata")]),
        (scrub, sink, [("out_file", "defaced_file"), ("metadata", "metadata"),
                       ("removed_keys", "removed_keys"), ("cleared_fields", "cleared_fields")]),
        (restore, sink, [("out_labels", "labels_file")]),
        (detect, sink, [("confidence", "confidence"), ("components", "components"),
                        ("warnings", "warnings"), ("model_sha256", "model_sha256")]),
        (distort, sink, [("voxel_counts", "voxel_counts")]),
        (inputnode, sink, [(f, f) for f in ("output_dir", "out_image", "out_sidecar", "out_dseg",
                                            "out_dseg_sidecar", "out_record", "source_relpath", "seed")]),
        (inputnode, outputnode, [("in_file", "in_file")]),
        (sink, outputnode, [("out_file", "defaced_file"), ("out_record", "record")]),
        (restore, outputnode, [("out_labels", "labels_file")]),
    ])
    if qc:
        from bids_deface.interfaces.qc import QC

        # Between scrubbing and writing: an image on which QC still finds a face never
        # reaches the output.
        qc_node = pe.Node(QC(), name="qc", mem_gb=2.0)
        wf.connect([
            (inputnode, qc_node, [("in_file", "original"), ("stem", "stem"), ("qc_figures_dir", "figures_dir")]),
            (scrub, qc_node, [("out_file", "defaced")]),
            (restore, qc_node, [("out_labels", "labels")]),
            (qc_node, sink, [("qc", "qc")]),
            (inputnode, sink, [("qc_json", "qc_json")]),
        ])
    return wf
