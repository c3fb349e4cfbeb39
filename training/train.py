"""Train the facial-feature detector: one seeded, resumable command from fetched heads to weights.

    python -m training.train --out bids_deface/data/facialfeatures_unet.pt

Heads are fetched (tools.heads), labelled from their committed landmarks, and sampled
through the augmentation pipeline. Each epoch trains on freshly drawn samples and is checked on a
fixed validation set (augmented samples from a separate seed stream); the best weights by
validation Dice are kept and training stops early when validation stops improving. A checkpoint
after every epoch makes the run resumable (``--resume``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from bids_deface.features.geometry import to_ras
from bids_deface.features.unet import AttentionUNet3D, dice_ce_loss
from tools.heads import cache_dir, fetch_head
from .augment import TrainingHead, draw_sample
from .labels import annotation_path, label_ras, load_landmarks
from .tissue import tissue_map

import nibabel as nib


def annotated_heads() -> list[str]:
    return sorted(p.stem for p in annotation_path("x").parent.glob("*.json"))


def _cached(name: str, key_files: list[Path], make) -> dict:
    """Arrays of ``make()`` cached under the training cache, keyed by the files they depend on."""
    key = hashlib.sha256(b"".join(p.read_bytes() for p in key_files)).hexdigest()[:12]
    cached = cache_dir() / "training" / f"{name}-{key}.npz"
    if cached.exists():
        return dict(np.load(cached))
    arrays = make()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(cached)
    return arrays


def load_training_head(name: str, with_tissue: bool = False) -> TrainingHead:
    """A head on its 1 mm RAS grid with labels (and tissue map), cached by what they derive from."""
    here = Path(__file__).parent
    labels_key = [annotation_path(name), here / "labels.py"]

    def make():
        data, affine = to_ras(nib.load(fetch_head(name)), 1.0)
        head = TrainingHead.from_arrays(name, data, label_ras(data, affine, load_landmarks(name)), affine)
        return {"data": head.data, "labels": head.labels, "affine": head.affine, "lo": head.lo, "hi": head.hi}

    z = _cached(name, labels_key, make)
    head = TrainingHead(name, z["data"], z["labels"], z["affine"], z["lo"], z["hi"])
    if with_tissue:
        head.tissue = _cached(f"{name}-tissue", labels_key + [here / "tissue.py"],
                              lambda: {"tissue": tissue_map(head.data)})["tissue"]
    return head


def dice_per_class(pred: np.ndarray, target: np.ndarray, n_classes: int = 4) -> list[float]:
    out = []
    for c in range(1, n_classes):
        a, b = pred == c, target == c
        denom = a.sum() + b.sum()
        out.append(float(2 * (a & b).sum() / denom) if denom else 1.0)
    return out


# cross-entropy weights: background, eyes, nose, ears (the small features need the push)
CE_CLASS_WEIGHTS = torch.tensor([1.0, 2.0, 25.0, 25.0])


class EpochSamples(torch.utils.data.IterableDataset):
    """One epoch of augmented samples, drawn in a worker process from a seed fixed by the epoch."""

    def __init__(self, heads, seed: int, epoch: int, n: int):
        self.heads, self.seed, self.epoch, self.n = heads, seed, epoch, n

    def __iter__(self):
        rng = np.random.default_rng([self.seed, 2, self.epoch])
        for _ in range(self.n):
            yield draw_sample(rng, self.heads)


def _worker_init(_):
    torch.set_num_threads(1)


def make_batch(samples):
    x = torch.from_numpy(np.stack([s[0] for s in samples])[:, None])
    y = torch.from_numpy(np.stack([s[1] for s in samples]).astype(np.int64))
    return x, y


def cosine_lr(lr: float, epoch: int, max_epochs: int, floor: float = 0.02) -> float:
    """Learning rate for an epoch: cosine decay from ``lr`` to ``floor * lr`` over ``max_epochs``.

    A pure function of the epoch, so a resumed run follows the same schedule as an unbroken one.
    """
    t = min(epoch / max(max_epochs, 1), 1.0)
    return float(lr * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * t))))


def train(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    heads = [load_training_head(h, with_tissue=True) for h in args.heads if h not in set(args.exclude)]
    print(f"training heads: {[h.name for h in heads]}", flush=True)
    val_rng = np.random.default_rng([args.seed, 1])
    val_set = [draw_sample(val_rng, heads) for _ in range(args.val_samples)]
    model = AttentionUNet3D(base=args.base, depth=3)
    init_meta = {"path": str(args.init), "sha256": hashlib.sha256(Path(args.init).read_bytes()).hexdigest()} if args.init else None
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    out = Path(args.out)
    ckpt_path = out.with_suffix(".ckpt")
    log_path = out.with_suffix(".log.jsonl")
    state = {"epoch": 0, "best_dice": -1.0, "stale": 0, "elapsed": 0.0}
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        print(f"resumed at epoch {state['epoch']}", flush=True)
    elif args.init:
        # warm start: the network begins from earlier weights (recorded in the metadata)
        blob = torch.load(args.init, map_location="cpu", weights_only=False)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
        print(f"initialised from {args.init}", flush=True)
    if not args.resume and log_path.exists():
        log_path.unlink()
    while state["epoch"] < args.max_epochs and state["elapsed"] < args.minutes * 60:
        t0 = time.time()
        for group in opt.param_groups:
            group["lr"] = cosine_lr(args.lr, state["epoch"], args.max_epochs)
        samples = EpochSamples(heads, args.seed, state["epoch"], args.steps_per_epoch * args.batch)
        # sampling (scipy, one core) overlaps with the network step (torch) in a worker process
        loader = torch.utils.data.DataLoader(samples, batch_size=args.batch, num_workers=1, collate_fn=make_batch,
                                             worker_init_fn=_worker_init)
        model.train()
        losses = []
        for x, y in loader:
            loss = dice_ce_loss(model(x), y, class_weights=CE_CLASS_WEIGHTS)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        dices, val_losses = [], []
        with torch.no_grad():
            for img, lab in val_set:
                x, y = make_batch([(img, lab)])
                logits = model(x)
                val_losses.append(float(dice_ce_loss(logits, y)))
                dices.append(dice_per_class(logits.argmax(1)[0].numpy(), lab))
        dice = np.mean(dices, axis=0)
        state["epoch"] += 1
        state["elapsed"] += time.time() - t0
        record = {"epoch": state["epoch"], "train_loss": float(np.mean(losses)), "val_loss": float(np.mean(val_losses)),
                  "val_dice_eyes": float(dice[0]), "val_dice_nose": float(dice[1]), "val_dice_ears": float(dice[2]),
                  "val_dice_mean": float(dice.mean()), "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)}
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
        if record["val_dice_mean"] > state["best_dice"]:
            state["best_dice"], state["stale"] = record["val_dice_mean"], 0
            save_weights(model, out, {"epoch": state["epoch"], "val": record, "heads": [h.name for h in heads],
                                      "seed": args.seed, "init": init_meta})
        else:
            state["stale"] += 1
        tmp = ckpt_path.with_suffix(".part")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state}, tmp)
        tmp.replace(ckpt_path)
        if state["stale"] >= args.patience:
            print(f"early stop: no validation improvement in {args.patience} epochs", flush=True)
            break
    return state


def save_weights(model: AttentionUNet3D, path: Path, meta: dict) -> None:
    """Weights as float16 (half the size; inference casts back to float32) plus the network config."""
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".part")
    torch.save({"config": model.config, "state_dict": half, "meta": meta}, tmp)
    tmp.replace(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="weights file to write (best validation epoch)")
    p.add_argument("--heads", nargs="*", default=annotated_heads())
    p.add_argument("--exclude", nargs="*", default=[], help="heads held out of training entirely")
    p.add_argument("--seed", type=int, default=20201)
    p.add_argument("--base", type=int, default=8)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--steps-per-epoch", type=int, default=40)
    p.add_argument("--val-samples", type=int, default=16)
    p.add_argument("--max-epochs", type=int, default=75, help="length of the cosine learning-rate schedule")
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--minutes", type=float, default=100.0, help="stop after this much training time")
    p.add_argument("--threads", type=int, default=1, help="torch threads (synthesis runs in one more process)")
    p.add_argument("--init", default=None, help="start from these weights instead of a random initialisation")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    train(args)


if __name__ == "__main__":
    main()
