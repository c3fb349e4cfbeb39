"""Detect the eyes, nose and ears of a head MRI (interface; implementation in progress).

``detect_features(img) -> FeatureDetection`` takes any nibabel image (any orientation,
3D or 4D with a singleton fourth axis) and returns the label image on the input grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib


@dataclass
class FeatureDetection:
    labels: nib.Nifti1Image  # uint8, input grid, 0 bg / 1 eyes / 2 nose / 3 ears
    confidence: dict[str, float]  # mean softmax probability inside each feature, 0 if absent
    components: dict[str, int]  # connected components found per feature
    warnings: list[str] = field(default_factory=list)  # missing / doubled / implausible features
    model_sha256: str = ""
