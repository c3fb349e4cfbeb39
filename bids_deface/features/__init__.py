"""Facial-feature detection: the label contract shared by the whole package.

A feature label image is uint8 on the input image's own grid:
0 background, 1 eyes, 2 nose, 3 ears (4 mouth is reserved, never produced).
"""

LABELS: dict[str, int] = {"eyes": 1, "nose": 2, "ears": 3}
FEATURES: tuple[str, ...] = tuple(LABELS)
# How many separate components a normal head shows for each feature.
EXPECTED_COMPONENTS: dict[str, int] = {"eyes": 2, "nose": 1, "ears": 2}
