"""The workflow that defaces one image."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_deface.features import FEATURES
from bids_deface.features.inference import shipped_network
from bids_deface.interfaces.sink import DefacedSink
from bids_deface.interfaces.deface import DetectFeatures, DistortFeatures, LoadImage, ScrubMetadata

INPUT_FIELDS = ("in_file", "source_relpath", "metadata", "seed", "output_dir", "out_image", "out_sidecar",
                "out_dseg", "out_dseg_sidecar", "out_record", "stem", "step_log", "qc_figures_dir", "qc_json")


def init_deface_wf(*, features=FEATURES, omp_nthreads: int = 1, policy_file: str | None = None,
                   margins: dict | None = None, qc: bool = False, name: str = "deface_wf"):
    """Deface one image: load → detect → distort → scrub metadata → (QC → QC gate →) write.

    Every step works on the image's own grid and orientation (nothing is resampled or reoriented)
    and records its outcome in the image's step log (``step_log``,
    :mod:`bids_deface.interfaces.steps`); the sink only writes.

    Parameters
    ----------
    features : the features to distort (eyes, nose, ears).
    omp_nthreads : threads the detector may use.
    policy_file : a user metadata policy extending or overriding the shipped one.
    margins : distortion parameters (``eye_box_margin_mm``, ``eye_surface_band_vox``,
        ``nose_box_scale``); the paper's defaults when absent.
    qc : run :class:`bids_deface.interfaces.qc.QC` (renders, face check, brain check) on the
        defaced image, and its gate, which refuses an image on which a face remains.

    Inputs (``inputnode``)
    ----------------------
    in_file : the input image; source_relpath : its path in the input dataset;
    metadata : its sidecar metadata after inheritance; seed : seed of the ear noise;
    output_dir, out_image, out_sidecar, out_dseg, out_dseg_sidecar, out_record : where the
    sink writes (paths relative to output_dir; the optional ones may be empty);
    stem : the image's name without extension; step_log : where the steps record their outcome;
    qc_figures_dir, qc_json : where QC writes its figures and result (outside output_dir: they
    show the original face).

    Outputs (``outputnode``)
    ------------------------
    defaced_file : the defaced image in the output dataset; labels_file : the feature labels on
    the input grid (work directory); record : the per-image record.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["defaced_file", "labels_file", "record"]),
                         name="outputnode")

    load = pe.Node(LoadImage(), name="load", mem_gb=0.5)
    detect = pe.Node(DetectFeatures(omp_nthreads=omp_nthreads), name="detect", n_procs=omp_nthreads, mem_gb=1.5)
    if shipped_network().exists():  # else the detector reports the missing network per image
        detect.inputs.weights = str(shipped_network())
    distort = pe.Node(DistortFeatures(features=list(features), **(margins or {})), name="distort", mem_gb=1.0)
    scrub = pe.Node(ScrubMetadata(**({"policy_file": str(policy_file)} if policy_file else {})),
                    name="scrub", mem_gb=0.5)
    # Always rerun: the sink's outputs live outside the work directory, which nipype's cache
    # cannot see (a kept work directory would otherwise skip writing them).
    sink = pe.Node(DefacedSink(features=list(features)), name="sink", mem_gb=0.5, overwrite=True)
    steps = [load, detect, distort, scrub, sink]

    wf.connect([
        (inputnode, load, [("in_file", "in_file")]),
        (load, detect, [("out_file", "in_file")]),
        (load, distort, [("out_file", "in_file")]),
        (inputnode, distort, [("seed", "seed")]),
        (detect, distort, [("labels_file", "labels_file")]),
        (distort, scrub, [("out_file", "in_file")]),
        (inputnode, scrub, [("metadata", "metadata")]),
        (scrub, sink, [("out_file", "defaced_file"), ("metadata", "metadata"),
                       ("removed_keys", "removed_keys"), ("cleared_fields", "cleared_fields")]),
        (detect, sink, [("labels_file", "labels_file"), ("confidence", "confidence"), ("components", "components"),
                        ("warnings", "warnings"), ("model_sha256", "model_sha256")]),
        (distort, sink, [("voxel_counts", "voxel_counts")]),
        (inputnode, sink, [(f, f) for f in ("output_dir", "out_image", "out_sidecar", "out_dseg",
                                            "out_dseg_sidecar", "out_record", "source_relpath", "seed")]),
        (sink, outputnode, [("out_file", "defaced_file"), ("out_record", "record")]),
        (detect, outputnode, [("labels_file", "labels_file")]),
    ])
    if qc:
        steps += _add_qc(wf, inputnode, detect, distort, scrub, sink)
    for step in steps:  # every step names the image in its messages and records its outcome
        wf.connect(inputnode, "source_relpath", step, "source_name")
        wf.connect(inputnode, "step_log", step, "step_log")
    return wf


def _add_qc(wf, inputnode, detect, distort, scrub, sink) -> list:
    """QC and its gate between scrubbing and writing: an image on which QC still finds a face
    never reaches the output."""
    from bids_deface.interfaces.qc import QC, QCGate

    qc_node = pe.Node(QC(), name="qc", mem_gb=2.0)
    qc_gate = pe.Node(QCGate(), name="qc_gate", mem_gb=0.2)
    wf.connect([
        (inputnode, qc_node, [("in_file", "original"), ("stem", "stem"), ("qc_figures_dir", "figures_dir")]),
        (scrub, qc_node, [("out_file", "defaced")]),
        (detect, qc_node, [("labels_file", "labels")]),
        (qc_node, qc_gate, [("qc", "qc")]),
        (inputnode, qc_gate, [("qc_json", "qc_json")]),
        (distort, qc_gate, [("voxel_counts", "voxel_counts")]),
        (detect, qc_gate, [("confidence", "confidence")]),
        (scrub, qc_gate, [("removed_keys", "removed_keys")]),
        (qc_gate, sink, [("qc", "qc")]),
    ])
    return [qc_node, qc_gate]
