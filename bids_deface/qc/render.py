"""Surface renders of a head MRI, with no display and no GPU.

A depth-map renderer on numpy/OpenCV: the volume is thresholded at the air/skin boundary,
every axial slice is rotated about the vertical axis (one ``cv2.warpAffine`` per slice),
the first voxel above the threshold along each ray gives the depth (refined to sub-voxel
by linear interpolation), and the depth map is shaded by its gradient normals. A view of a
1 mm head takes about 0.1 s on one core.

Before and after renders must compare: :func:`render_setup` fixes the threshold, the
camera centre and the pixel size from the *original* image, and every render of that
image's defaced version uses the same :class:`RenderSetup`.

Views are named by where the camera stands: ``frontal`` faces the nose, ``right45`` is
turned 45 degrees towards the subject's right ear, ``right`` is the right profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import nibabel as nib
import numpy as np

from ..features.geometry import air_threshold, as_3d, to_ras

# camera yaw in degrees: positive turns the camera towards the subject's right (+x in RAS)
VIEWS: dict[str, float] = {"left": -90.0, "left45": -45.0, "frontal": 0.0, "right45": 45.0, "right": 90.0}


def view_title(yaw: float, pitch: float = 0.0) -> str:
    """How reports name a view: ``frontal``, ``right 45°``, ``left profile``, ``right profile, chin down 20°``."""
    side = "right" if yaw > 0 else "left"
    name = "frontal" if yaw == 0 else (f"{side} profile" if abs(yaw) == 90 else f"{side} {abs(yaw):g}°")
    if pitch:
        name += f", chin {'down' if pitch > 0 else 'up'} {abs(pitch):g}°"
    return name


PITCH_VOXEL_MM = (1.5, 2.0)  # a nodded head's resampled grid, along the anterior and the superior axis
CANVAS = 256  # pixels; one fixed size, so one face-detector network serves every render
MAX_TILT_DEG = 10.0
ZOOM = 0.85
# shading: light from above the camera, little ambient light, a gamma that deepens shadows
LIGHT = (0.0, 0.5, 1.0)
AMBIENT = 0.05
GAMMA = 1.5


@dataclass(frozen=True)
class RasVolume:
    """Intensities on an axis-aligned RAS grid: world(i, j, k) = origin + (i, j, k) * zooms."""

    data: np.ndarray  # float32, 3D
    zooms: tuple[float, float, float]
    origin: np.ndarray  # (3,) mm


@dataclass(frozen=True)
class RenderSetup:
    """What before and after renders share: iso-surface threshold and camera."""

    threshold: float
    center_mm: tuple[float, float, float]  # world RAS point at the canvas centre
    pixel_mm: float
    size: int = CANVAS


def ras_volume(img: nib.spatialimages.SpatialImage) -> RasVolume:
    """``img`` (3D, or 4D with one volume; any orientation) as an axis-aligned RAS volume.

    Axis permutations and flips are exact; an oblique image is resampled (trilinear) onto a
    RAS grid of its finest voxel size, so that the renders stand upright in world space.
    """
    img = nib.as_closest_canonical(as_3d(img))
    rot = img.affine[:3, :3]
    zooms = np.sqrt((rot ** 2).sum(0))
    # a few degrees of obliquity only tilt the render; more than MAX_TILT_DEG is resampled
    cosines = np.abs(np.diag(rot)) / zooms
    if cosines.min() < np.cos(np.deg2rad(MAX_TILT_DEG)):
        data, affine = to_ras(img, float(np.clip(zooms.min(), 0.5, 2.0)))
        zooms = np.diag(affine[:3, :3])
    else:
        data = np.asarray(img.dataobj, dtype=np.float32)
        affine = img.affine
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    return RasVolume(data, tuple(float(z) for z in zooms), np.asarray(affine[:3, 3], float))


def surface_threshold(data: np.ndarray) -> float:
    """Iso-surface level for the skin: the head's one air/skin threshold
    (:func:`bids_deface.features.geometry.air_threshold`), so that a render shows the surface
    that the detector and the distortions work on."""
    return air_threshold(data)


def render_setup(original: nib.spatialimages.SpatialImage | RasVolume) -> RenderSetup:
    """Threshold and camera for renders of ``original`` and of anything made from it."""
    vol = original if isinstance(original, RasVolume) else ras_volume(original)
    thr = surface_threshold(vol.data)
    head = vol.data > thr
    if not head.any():
        raise ValueError("no voxel above the skin threshold: the image has no head to render")
    lo_hi = [np.nonzero(head.any(axis=tuple(b for b in range(3) if b != a)))[0][[0, -1]] for a in range(3)]
    lo = np.array([v[0] for v in lo_hi]) * vol.zooms + vol.origin
    hi = np.array([v[1] for v in lo_hi]) * vol.zooms + vol.origin
    center = (lo + hi) / 2
    extent = hi - lo
    # the canvas must hold the head seen from any yaw (horizontal diagonal) and its height
    span = max(float(np.hypot(extent[0], extent[1])), float(extent[2])) + 8.0
    # ZOOM < 1 trims the corners (back of the head at 45 degrees, neck) so that the face is
    # larger: the face detectors found more of the smooth template faces that way
    pixel = max(1.0, span / CANVAS) * ZOOM
    return RenderSetup(thr, tuple(float(c) for c in center), pixel, CANVAS)


def depth_map(vol: RasVolume, setup: RenderSetup, yaw_deg: float) -> np.ndarray:
    """Distance (mm) from the camera plane to the head surface; ``inf`` where no surface is hit.

    Rows go from top (superior) to bottom, columns from the viewer's left to right.
    """
    n = setup.size
    px = setup.pixel_mm
    dx, dy, dz = vol.zooms
    th = np.deg2rad(yaw_deg)
    ray = np.array([-np.sin(th), -np.cos(th)])  # in the (x, y) plane, pointing into the head
    right = np.array([-np.cos(th), np.sin(th)])  # the viewer's right on screen
    c = np.asarray(setup.center_mm)
    # canvas (row t = depth step, col u) -> voxel (i, j) of every axial slice
    start = c[:2] - (n / 2) * px * right - (n / 2) * px * ray - vol.origin[:2]
    to_ij = np.array([[px * right[0] / dx, px * ray[0] / dx, start[0] / dx],
                      [px * right[1] / dy, px * ray[1] / dy, start[1] / dy]])
    # cv2 addresses a slice data[i, j] as image(x=j, y=i): swap the output rows
    warp = to_ij[[1, 0]]
    nz = vol.data.shape[2]
    slab = np.empty((nz, n, n), np.float32)
    for k in range(nz):
        slab[k] = cv2.warpAffine(np.ascontiguousarray(vol.data[:, :, k]), warp, (n, n),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    above = slab > setup.threshold
    # two voxels in a row: a lone noise voxel in the air does not stop the ray
    above[:, :-1] &= above[:, 1:]
    hit = above.any(axis=1)
    first = above.argmax(axis=1)
    v1 = np.take_along_axis(slab, first[:, None, :], 1)[:, 0]
    v0 = np.take_along_axis(slab, np.maximum(first - 1, 0)[:, None, :], 1)[:, 0]
    frac = np.clip((v1 - setup.threshold) / np.maximum(v1 - v0, 1e-6), 0.0, 1.0)
    depth_k = np.where(hit, (first - frac) * px, np.inf).astype(np.float32)  # [slice, column]
    # slices -> canvas rows (top = superior)
    z_rows = c[2] + (n / 2 - 0.5 - np.arange(n)) * px
    k = (z_rows - vol.origin[2]) / dz
    depth = np.full((n, n), np.inf, np.float32)
    k0 = np.floor(k).astype(int)
    w = (k - k0).astype(np.float32)[:, None]
    ok = (k0 >= 0) & (k0 + 1 < nz)
    a, b = depth_k[k0[ok]], depth_k[k0[ok] + 1]
    both = np.isfinite(a) & np.isfinite(b)
    near = np.where(w[ok] < 0.5, a, b)  # at a silhouette edge take the nearer slice's value
    with np.errstate(invalid="ignore"):  # inf * 0 where one side is background: not selected
        depth[ok] = np.where(both, (1 - w[ok]) * a + w[ok] * b, near)
    if nz == 1:
        depth[np.abs(k) < 0.5] = depth_k[0]
    return depth


def shade(depth: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Grey uint8 image of a depth map: Lambertian shading of its normals, black background."""
    fg = np.isfinite(depth)
    if not fg.any():
        return np.zeros(depth.shape, np.uint8)
    filled = np.where(fg, depth, 0).astype(np.float32)
    # smooth inside the silhouette only (normalised convolution) to hide the voxel steps
    num = cv2.GaussianBlur(filled, (0, 0), 0.8)
    den = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 0.8)
    d = num / np.maximum(den, 1e-3)
    gy, gx = np.gradient(d, pixel_mm)
    # screen x right, y up, z towards the camera: the surface height is -depth and rows grow downwards
    normal = np.stack([gx, -gy, np.ones_like(d)])
    normal /= np.linalg.norm(normal, axis=0)
    light = np.array(LIGHT) / np.linalg.norm(LIGHT)
    lambert = np.clip(np.tensordot(light, normal, axes=1), 0.0, 1.0) ** GAMMA
    grey = AMBIENT + (1.0 - AMBIENT) * lambert
    grey[~fg] = 0.0
    return np.round(grey * 255).astype(np.uint8)


def view_name(yaw: float, pitch: float) -> str:
    """``yaw+45_pitch-20``: the name of a view in ``bids-deface check``'s reports and tables."""
    return f"yaw{yaw:+g}_pitch{pitch:+g}"


@dataclass(frozen=True)
class View:
    """Where the camera stands: ``yaw`` as :data:`VIEWS`, ``pitch`` the head nodded before the
    yaw sweep (positive: chin down, so that the frontal camera sees the face from above)."""

    name: str
    yaw: float
    pitch: float = 0.0


def pitched(vol: RasVolume, setup: RenderSetup, pitch_deg: float, voxel_mm=PITCH_VOXEL_MM) -> RasVolume:
    """``vol`` as the renders of a pitch see it: the level head (``pitch_deg`` 0) on its own grid;
    a nodded head turned by ``pitch_deg`` about the left-right axis through the camera centre,
    resampled (trilinear in each sagittal plane) onto ``voxel_mm`` = (along y, along z) voxels
    that hold the turned field of view as far as the canvas reaches, less the axial slices
    without head (a render's cost grows with the number of slices)."""
    if pitch_deg == 0.0:
        return vol
    nx, ny, nz = vol.data.shape
    dx, dy, dz = vol.zooms
    vy, vz = voxel_mm
    cy, cz = setup.center_mm[1], setup.center_mm[2]
    ys = vol.origin[1] + np.array([0, ny - 1]) * dy - cy  # the field of view around the centre
    zs = vol.origin[2] + np.array([0, nz - 1]) * dz - cz
    th = np.deg2rad(pitch_deg)
    c, s = np.cos(th), np.sin(th)
    corners = np.array([[c * y + s * z, -s * y + c * z] for y in ys for z in zs])
    half = setup.size * setup.pixel_mm / 2 + vz  # the canvas's reach above and below the centre
    y0, y1 = corners[:, 0].min(), corners[:, 0].max()
    z0, z1 = max(corners[:, 1].min(), -half), min(corners[:, 1].max(), half)
    ny2, nz2 = int((y1 - y0) / vy) + 1, int((z1 - z0) / vz) + 1
    # output (row a: y', col b: z') -> rotated back by -pitch -> source voxel (row: y, col: z);
    # source = R^T (y', z'): y = c y' - s z', z = s y' + c z'. cv2's inverse map takes
    # (column, row, 1) of the output to (column, row) of the source.
    to_src = np.array([[c * vz / dz, s * vy / dz, (s * y0 + c * z0 + cz - vol.origin[2]) / dz],
                       [-s * vz / dy, c * vy / dy, (c * y0 - s * z0 + cy - vol.origin[1]) / dy]])
    out = np.empty((nx, ny2, nz2), np.float32)
    for i in range(nx):
        out[i] = cv2.warpAffine(np.ascontiguousarray(vol.data[i]), to_src, (nz2, ny2),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    head = np.flatnonzero((out > setup.threshold).any(axis=(0, 1)))
    lo, hi = (max(head[0] - 2, 0), min(head[-1] + 3, nz2)) if head.size else (0, nz2)
    origin = np.array([vol.origin[0], y0 + cy, z0 + cz + lo * vz])
    return RasVolume(np.ascontiguousarray(out[:, :, lo:hi]), (dx, vy, vz), origin)


@dataclass
class Renders:
    """Views of one head: grey renders (uint8) and depth maps (mm, ``inf`` off the head)."""

    images: dict[str, np.ndarray]
    depths: dict[str, np.ndarray]
    views: dict[str, View]
    pixel_mm: float


def render_all(vol: RasVolume, setup: RenderSetup, views: list[View]) -> Renders:
    """The one renderer of QC and ``bids-deface check``: ``vol`` seen from every view, with one
    threshold and camera (``setup``), one turned volume per pitch."""
    images, depths = {}, {}
    for pitch in sorted({v.pitch for v in views}):
        turned = pitched(vol, setup, pitch)
        for view in (v for v in views if v.pitch == pitch):
            depth = depth_map(turned, setup, view.yaw)
            depths[view.name] = depth
            images[view.name] = shade(depth, setup.pixel_mm)
    return Renders(images, depths, {v.name: v for v in views}, setup.pixel_mm)


def render_views(img: nib.spatialimages.SpatialImage | RasVolume, setup: RenderSetup,
                 views: dict[str, float] = VIEWS) -> dict[str, np.ndarray]:
    """Renders of ``img`` for each named level view (yaw in degrees): ``{view: uint8 HxW}``
    (:func:`render_all` at pitch 0)."""
    vol = img if isinstance(img, RasVolume) else ras_volume(img)
    return render_all(vol, setup, [View(name, float(yaw)) for name, yaw in views.items()]).images
