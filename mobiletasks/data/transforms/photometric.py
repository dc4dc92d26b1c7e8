"""SSD's photometric distortion (SSD paper section 2.2; the Caffe SSD and torchvision's
``RandomPhotometricDistort``): :func:`sample_distortion` draws the steps as the old albumentations chain did,
:func:`distort` applies them to uint8 RGB as albumentations' ``RandomBrightnessContrast`` and ``ColorJitter`` do,
through clipped lookup tables.
"""

from __future__ import annotations

import cv2
import numpy as np

# SSD's photometric distortion (the Caffe SSD and torchvision's RandomPhotometricDistort): brightness +-32,
# contrast and saturation x[0.5, 1.5], hue +-18 degrees; brightness and the other three each with probability 0.5
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18 / 360  # of a full turn

Distortion = list[tuple[str, float]]  # ("brightness" | "contrast" | "saturation" | "hue", amount), in order


def sample_distortion(rng: np.random.Generator) -> Distortion:
    """SSD's photometric distortion as the old albumentations chain drew it: brightness (probability 0.5),
    then (probability 0.5) contrast, saturation and hue in a random order."""
    steps: Distortion = []
    if rng.random() < 0.5:
        steps.append(("brightness", rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)))
    if rng.random() < 0.5:
        jitter = [
            ("contrast", rng.uniform(*CONTRAST_RANGE)),
            ("saturation", rng.uniform(*SATURATION_RANGE)),
            ("hue", rng.uniform(-HUE_DELTA, HUE_DELTA)),
        ]
        steps += [jitter[i] for i in rng.permutation(len(jitter))]
    return steps


def distort(image: np.ndarray, steps: Distortion, reference: np.ndarray | None = None) -> np.ndarray:
    """``image`` (uint8 RGB) through the photometric ``steps``, as albumentations' ``RandomBrightnessContrast``
    and ``ColorJitter`` compute them on uint8 (clipped lookup tables, ``cv2.addWeighted``, hue in OpenCV's HSV).

    Contrast pivots on the gray mean of ``reference`` (default ``image``) taken through the steps before it: pass
    the whole photo (a subsample is enough) when ``image`` is a part of it. Brightness and contrast in a row are one
    lookup table. Returns a new array (or ``image`` itself when there are no steps).
    """
    kinds = [kind for kind, _ in steps]
    pivot = 0.0
    if "contrast" in kinds:
        ref = image if reference is None else reference
        for kind, amount in steps[: kinds.index("contrast")]:
            ref = _distort_one(ref, kind, amount, pivot)
        pivot = float(cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).mean())
    lut: np.ndarray | None = None
    for kind, amount in steps:
        if kind in ("brightness", "contrast"):
            step = _tone_lut(kind, amount, pivot)
            lut = step if lut is None else step[lut]
            continue
        if lut is not None:
            image, lut = cv2.LUT(image, lut), None
        image = _distort_one(image, kind, amount, pivot)
    return image if lut is None else cv2.LUT(image, lut)


def _distort_one(image: np.ndarray, kind: str, amount: float, pivot: float) -> np.ndarray:
    if kind in ("brightness", "contrast"):
        return cv2.LUT(image, _tone_lut(kind, amount, pivot))
    if kind == "saturation":  # blend with the gray image (torchvision's adjust_saturation)
        gray = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        return cv2.addWeighted(image, amount, gray, 1 - amount, 0)
    # hue: a turn of OpenCV's 0..180 hue channel, the other two channels unchanged
    identity = np.arange(256)
    hue = np.mod(identity + 180 * amount, 180).astype(np.uint8)
    lut = np.stack([hue, identity.astype(np.uint8), identity.astype(np.uint8)], axis=-1)[None]
    return cv2.cvtColor(cv2.LUT(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), lut), cv2.COLOR_HSV2RGB)


def _tone_lut(kind: str, amount: float, pivot: float) -> np.ndarray:
    """The lookup table of a brightness shift by ``amount`` or a contrast scaling by ``amount`` about ``pivot``."""
    return _affine_lut(1.0, amount) if kind == "brightness" else _affine_lut(amount, pivot * (1 - amount))


def _affine_lut(scale: float, shift: float) -> np.ndarray:
    """uint8 ``x -> clip(x * scale + shift)``, truncated as albucore's ``multiply_add`` does."""
    return np.clip(np.arange(256, dtype=np.float32) * scale + shift, 0, 255).astype(np.uint8)
