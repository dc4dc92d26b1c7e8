"""A tiny CelebA in the official layout, for tests: ``write_celeba(root)`` writes ``root/img_align_celeba/*.jpg``,
``root/list_attr_celeba.txt`` and ``root/list_eval_partition.txt``, the text files byte for byte in the official
format (see :mod:`mobiletasks.data.classification.celeba`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# the 40 attributes of list_attr_celeba.txt, in the file's order
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)


def attribute_text(names: Sequence[str], file_names: Sequence[str], values: np.ndarray) -> str:
    """``list_attr_celeba.txt``: the count, the names with a trailing space, then ``000001.jpg -1  1 ...``.

    Example:
        >>> attribute_text(["Male", "Young"], ["000001.jpg"], np.array([[-1, 1]]))
        '1\\nMale Young \\n000001.jpg -1  1\\n'
    """
    rows = [
        f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(file_names, values.tolist(), strict=True)
    ]
    return f"{len(rows)}\n" + " ".join(names) + " \n" + "".join(row + "\n" for row in rows)


def partition_text(file_names: Sequence[str], codes: Sequence[int]) -> str:
    """``list_eval_partition.txt``: ``000001.jpg 0`` per image."""
    return "".join(f"{name} {code}\n" for name, code in zip(file_names, codes, strict=True))


def write_celeba(
    root: Path | str,
    num_images: int = 12,
    partition: tuple[int, int, int] = (8, 2, 2),
    names: Sequence[str] | None = None,
    size: tuple[int, int] = (54, 44),
    seed: int = 0,
) -> Path:
    """Write ``num_images`` random JPEGs of ``size`` (height, width; the official 218 x 178 scaled down) and
    their attributes (-1/1, drawn from ``seed``); the first ``partition[0]`` images are train, the next
    ``partition[1]`` val, the rest test, as in the official partition. Returns ``root``."""
    if sum(partition) != num_images:
        raise ValueError(f"partition {partition} must add up to num_images={num_images}")
    root = Path(root)
    names = list(CELEBA_ATTRIBUTES if names is None else names)
    rng = np.random.default_rng(seed)
    file_names = [f"{i:06d}.jpg" for i in range(1, num_images + 1)]
    values = np.where(rng.random((num_images, len(names))) < 0.4, 1, -1)
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    for name in file_names:
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name, quality=90)
    codes = [0] * partition[0] + [1] * partition[1] + [2] * partition[2]
    (root / "list_attr_celeba.txt").write_bytes(attribute_text(names, file_names, values).encode())
    (root / "list_eval_partition.txt").write_bytes(partition_text(file_names, codes).encode())
    return root
