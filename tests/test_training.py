"""Training-data synthesis: seeded, labels carried with the anatomy, cuts and contrasts as promised."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from training.acquire import acquire, covering_acquisition
from training.augment import (SpatialConfig, SynthConfig, TrainingHead, default_intensity_pipeline, draw_sample,
                              oblique_cut, spatial_sample)
from training.contrast import ContrastConfig, source_renderer, synthetic_renderer
from training.deform import ElasticConfig, Warp, grid_points, random_field
from training.tissue import N_CLASSES, N_INTENSITY_CLASSES, tissue_map
from training.train import load_training_head

SOURCE_POINT = np.array([7.0, -11.0, 5.0])  # world mm, in the toy head's frame


def toy_head() -> TrainingHead:
    """A 1 mm ball 'head' with a small bright, labelled blob at SOURCE_POINT."""
    n = 120
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -n / 2
    x, y, z = grid_points((n, n, n), affine)
    r_head = np.sqrt(x**2 + y**2 + z**2)
    blob = (x - SOURCE_POINT[0]) ** 2 + (y - SOURCE_POINT[1]) ** 2 + (z - SOURCE_POINT[2]) ** 2 <= 4.0**2
    data = np.where(r_head < 50, 300.0, 0.0).astype(np.float32)
    data[blob] = 1000.0
    labels = blob.astype(np.uint8)
    return TrainingHead("toy", data, labels, affine, np.full(3, -50.0), np.full(3, 50.0))


def expected_output_point(world_to_src: np.ndarray, field: np.ndarray, field_affine: np.ndarray) -> np.ndarray:
    """Oracle: the output point q with world_to_src(q + u(q)) = SOURCE_POINT, by fixed-point iteration,
    with u read by scipy's RegularGridInterpolator (not the code under test)."""
    axes = [field_affine[a, 3] + field_affine[a, a] * np.arange(field.shape[1 + a]) for a in range(3)]
    u = [RegularGridInterpolator(axes, field[c]) for c in range(3)]
    target = np.linalg.solve(world_to_src, np.append(SOURCE_POINT, 1.0))[:3]  # q + u(q)
    q = target.copy()
    for _ in range(50):
        q = target - np.array([f(q)[0] for f in u])
    return q


def centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask).mean(0)
    return affine[:3, :3] @ idx + affine[:3, 3]


@pytest.mark.parametrize("thickness", [1.0, 7.0])
def test_a_known_point_moves_with_the_deformation_in_image_and_labels(thickness):
    head = toy_head()
    rng = np.random.default_rng(4)
    shift = np.eye(4)
    shift[:3, 3] = [3.0, -2.0, 4.0]
    field, field_affine = random_field(rng, np.full(3, -70.0), 140.0, ElasticConfig(coarse_max_mm=7, fine_max_mm=2.5))
    field *= 6.0 / np.abs(field).max()  # a clearly visible, still smooth, displacement
    warp = Warp(head.affine, shift, field, field_affine)
    q = expected_output_point(shift, field, field_affine)
    assert np.linalg.norm(q - np.linalg.solve(shift, np.append(SOURCE_POINT, 1))[:3]) > 1.5  # the field moved it
    acq = covering_acquisition(np.full(3, -60.0), np.full(3, 60.0), np.eye(3), 2, thickness, 1.0)
    image = acquire(source_renderer(head.data), warp, acq)
    labels = acquire(source_renderer(head.labels.astype(np.float32)), warp, acq)
    bright = image > (650 if thickness == 1 else 400)
    tol = np.array([1.0, 1.0, 1.0 if thickness == 1 else 2.5])
    assert np.all(np.abs(centroid(bright, acq.affine) - q) < tol)
    assert np.all(np.abs(centroid(labels > 0.5, acq.affine) - q) < tol)
    if thickness == 7:  # thick slices smear the blob over a whole 7 mm slice at least
        assert np.ptp(np.argwhere(image > 350)[:, 2]) * 7 >= 7


def test_full_synthesis_keeps_labels_on_the_image():
    """Paint the image with its own labels; after motion, deformation and thick oblique slices the
    labelled 4 mm voxels must still be the bright ones."""
    head = load_training_head("pydeface_mean")
    painted = TrainingHead(head.name, (head.labels > 0).astype(np.float32), head.labels, head.affine, head.lo, head.hi)
    synth = SynthConfig(contrast=None)
    synth.elastic.probability = 1.0
    rng = np.random.default_rng(8)
    for _ in range(3):
        image, labels = spatial_sample(rng, painted, SpatialConfig(), synth)
        assert (labels > 0).sum() > 50
        assert np.mean(image[labels > 0] > 0.1) > 0.9
        assert np.mean(labels[image > 0.6] > 0) > 0.8


def test_synthesis_is_seeded_and_draws_differ():
    head = load_training_head("pydeface_mean", with_tissue=True)
    a = draw_sample(np.random.default_rng(12), [head])
    b = draw_sample(np.random.default_rng(12), [head])
    c = draw_sample(np.random.default_rng(13), [head])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (64, 64, 64) and a[0].dtype == np.float32 and a[1].dtype == np.uint8


def test_tissue_map_is_reproducible_with_air_outside_and_two_depth_layers():
    head = toy_head()
    rng = np.random.default_rng(0)
    data = head.data + rng.normal(0, 20, head.data.shape).astype(np.float32) * (head.data > 0)
    t1, t2 = tissue_map(data), tissue_map(data)
    assert np.array_equal(t1, t2)
    assert t1.max() < N_CLASSES and np.all(t1[head.data == 0][::97] == 0)
    centre, rim = t1[60, 60, 60], t1[60, 60, 60 + 46]
    assert centre > N_INTENSITY_CLASSES >= rim > 0  # deep and shallow tissue are different classes


def test_synthetic_contrast_gives_each_tissue_class_its_own_random_intensity():
    tissue = np.repeat(np.arange(N_CLASSES, dtype=np.uint8), 8).reshape(N_CLASSES, 8, 1).repeat(4, axis=2)
    coords = np.indices(tissue.shape).astype(np.float32)
    cfg = ContrastConfig(max_spread=0.0, max_blur_vox=0.0)
    a = synthetic_renderer(np.random.default_rng(1), tissue, cfg)(coords)
    b = synthetic_renderer(np.random.default_rng(2), tissue, cfg)(coords)
    for img in (a, b):
        per_class = [np.unique(img[tissue == c]) for c in range(N_CLASSES)]
        assert all(len(v) == 1 for v in per_class)  # one intensity per class
        assert all(v[0] > per_class[0][0] for v in per_class[1:])  # air darker than every tissue
    assert not np.allclose(a, b)


def test_oblique_cut_removes_labels_with_the_image():
    head = load_training_head("pydeface_mean")
    image, labels = spatial_sample(np.random.default_rng(2), head, SpatialConfig())
    rng = np.random.default_rng(5)
    for _ in range(5):
        cut_image, cut_labels = oblique_cut(rng, image, labels)
        gone = (cut_image == image.min()) & (image != image.min())
        assert gone.any()
        assert np.all(cut_labels[gone] == 0)
        assert np.array_equal(cut_labels[~gone & (cut_image != image.min())], labels[~gone & (cut_image != image.min())])


def test_default_pipeline_output_is_bounded_and_seeded():
    head = load_training_head("pydeface_mean")
    pipe = default_intensity_pipeline()
    sample = spatial_sample(np.random.default_rng(3), head, SpatialConfig())
    a = pipe(np.random.default_rng(9), *sample)
    b = pipe(np.random.default_rng(9), *sample)
    assert np.array_equal(a[0], b[0]) and np.isfinite(a[0]).all()


def test_training_resumes_where_it_stopped_and_matches_an_unbroken_run(tmp_path):
    """Two epochs in one go, and one epoch then --resume for the second, give the same log."""
    import json

    from training.train import main

    common = ["--heads", "pydeface_mean", "--steps-per-epoch", "1", "--batch", "1", "--val-samples", "1",
              "--base", "4", "--max-epochs", "2", "--patience", "5"]
    main(["--out", str(tmp_path / "a" / "w.pt"), *common])
    main(["--out", str(tmp_path / "b" / "w.pt"), *common, "--minutes", "0.0001"])  # stops after one epoch
    main(["--out", str(tmp_path / "b" / "w.pt"), *common, "--resume"])
    logs = [[json.loads(line) for line in (tmp_path / d / "w.log.jsonl").read_text().splitlines()] for d in "ab"]
    assert [r["epoch"] for r in logs[1]] == [1, 2]
    for a, b in zip(*logs):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
