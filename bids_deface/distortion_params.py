"""The distortion operators' parameters and their defaults, in one place: :mod:`bids_deface.distort`
runs with them, the command line offers some of them and shows their defaults (this module imports
nothing heavy, so the parser stays light)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Params:
    """The operators' parameters (keywords of :func:`deface_image` and :func:`distortion_regions`).

    ``eye_box_margin_mm``: periocular margin around each eye's footprint (the paper's box
    margin); ``nose_box_scale``: the nose's window reaches its half-extent times this, minus one,
    beyond its footprint (2: the paper's doubled box; 3, the default, also planes the upper lip,
    which face detectors otherwise read as a mouth under a smooth face); ``eye_surface_band_vox``: voxels of skin
    beneath the new surface (the paper's band; at least 2, so that a renderer that needs two
    voxels above threshold in a row sees a closed surface); ``feather_mm``: width of the blend
    into the untouched face; ``envelope_width_mm``: bumps and pits narrower than this are planed
    off; ``max_cut_mm`` / ``max_fill_mm``: how far the new surface may lie behind / in front of
    the old one; ``ear_air_margin_mm``: air around the ear that is replaced with it;
    ``ear_margin_mm``, ``ear_envelope_width_mm``, ``ear_band_mm``: the ear's window margin,
    envelope width and skin band, seen from the side (the band reaches the auricle's root; the
    width 80 mm, not 45, planes the auricle's root and the pits around it broadly enough that no
    face detector reads the resurfaced patch as a face in profile: at 45 dlib's CNN did on the
    2 mm Conte template, ``benchmarks/bench_check.py``).
    """

    eye_box_margin_mm: float = 15.0
    nose_box_scale: float = 3.0
    eye_surface_band_vox: int = 3
    feather_mm: float = 20.0
    envelope_width_mm: float = 90.0
    max_cut_mm: float = 40.0
    max_fill_mm: float = 60.0
    ear_air_margin_mm: float = 3.0
    ear_margin_mm: float = 8.0
    ear_envelope_width_mm: float = 80.0
    ear_band_mm: float = 5.0
