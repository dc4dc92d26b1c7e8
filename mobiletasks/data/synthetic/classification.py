"""The synthetic shapes datasets of the classification tasks: one shape per image (ImageFolder layout), and
shape attributes of the detection images (CelebA layout).

``classification`` (format ``folder``, torchvision's ``ImageFolder`` layout): ``{train,val}/<class>/<NNNNNN>.jpg``.
Each image holds one large shape (circle, square, triangle, star or cross; random size, rotation, position
and color) on the textured background of :mod:`mobiletasks.data.synthetic.shapes`; its class is the outline.
The classes come in shuffled blocks of five (images 0-4, 5-9, ...), so every class holds a fifth of a split
whose images start and end on a block boundary (the defaults: 160 train and 40 val images), within two images
otherwise.
``CLASSIFICATION_CLASSES`` lists them as an ImageFolder reader numbers them: sorted by name.

``attributes`` (format ``celeba``, the official CelebA layout): ``img_align_celeba/NNNNNN.jpg`` (the images
of the detection dataset: ``make_sample``, 1 to 6 shapes), ``list_attr_celeba.txt`` (the image count, the
attribute names, then one row of -1/1 per image) and ``list_eval_partition.txt`` (0 train, 1 val). The
attributes (``ATTRIBUTE_NAMES``) are read off the shapes by :func:`shape_attributes`; none tells left from
right, so horizontal flips keep them true. Positive rates over 500 images of 64 pixels (seed 0): Has_<shape>
46-54%, Many_Shapes 68%, Has_Large_Shape 36%, Has_Small_Shape 61%, Shape_In_Top_Quarter 48%.

Writing is atomic, seeded and refuses foreign folders, as for detection
(:func:`~mobiletasks.data.synthetic.detection.write_detection_dataset`; the marker names the task).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from mobiletasks.data.synthetic.shapes import (
    SHAPE_CLASSES,
    ShapeObject,
    finish_image,
    mask_box,
    paint_shape,
    random_background,
    sample_rng,
    shape_mask,
)
from mobiletasks.data.synthetic.writers import WriterFactory, image_name, save_jpeg, write_dataset

__all__ = [
    "ATTRIBUTE_NAMES",
    "CLASSIFICATION_CLASSES",
    "AttributesFormat",
    "ClassificationFormat",
    "classification_label",
    "classification_sample",
    "shape_attributes",
    "write_attributes_dataset",
    "write_classification_dataset",
]

ClassificationFormat = Literal["folder"]
AttributesFormat = Literal["celeba"]

# as torchvision's ImageFolder numbers the class folders: sorted by name
CLASSIFICATION_CLASSES: tuple[str, ...] = tuple(sorted(SHAPE_CLASSES))
CLASSIFICATION_EXTENT = (0.3, 0.9)  # the shape's extent as a fraction of the image side, drawn log-uniformly

MANY_SHAPES = 3  # Many_Shapes: at least this many shapes
LARGE_SIDE = 0.4  # Has_Large_Shape: a box side (the longer) above this fraction of the image side
SMALL_SIDE = 0.125  # Has_Small_Shape: a box whose longer side is below this fraction
TOP = 0.25  # Shape_In_Top_Quarter: a box center above this fraction of the image height
ATTRIBUTE_NAMES: tuple[str, ...] = (
    *(f"Has_{name.capitalize()}" for name in SHAPE_CLASSES),
    "Many_Shapes",
    "Has_Large_Shape",
    "Has_Small_Shape",
    "Shape_In_Top_Quarter",
)

_LABEL_STREAM = 1  # keeps the class draws apart from the images' generators (sample_rng)


# ---------------------------------------------------------------------------------------------- classification


def classification_label(seed: int, index: int) -> int:
    """The shape (an index into ``SHAPE_CLASSES``) of image ``index``: images ``5b .. 5b + 4`` hold the five
    shapes in a random order drawn from ``(seed, b)``.

    Example:
        >>> sorted(classification_label(0, i) for i in range(5))
        [0, 1, 2, 3, 4]
    """
    block = np.random.default_rng(np.random.SeedSequence([seed, index // len(SHAPE_CLASSES), _LABEL_STREAM]))
    return int(block.permutation(len(SHAPE_CLASSES))[index % len(SHAPE_CLASSES)])


def classification_sample(rng: np.random.Generator, size: int, label: int) -> tuple[np.ndarray, list[ShapeObject]]:
    """One image of one shape ``label`` (an index into ``SHAPE_CLASSES``) on a textured background.

    The shape spans 30% to 90% of the image side, at a random rotation, position and color.

    Returns:
        ``(image, [shape])``: RGB uint8 ``[size, size, 3]`` and the shape (its mask and box).

    Example:
        >>> image, (shape,) = classification_sample(sample_rng(0, 0), 64, 3)
        >>> image.shape, shape.name
        ((64, 64, 3), 'star')
    """
    image = random_background(rng, size)
    mask = shape_mask(rng, label, size, CLASSIFICATION_EXTENT)
    paint_shape(rng, image, mask, [])
    return finish_image(rng, image), [ShapeObject(label, mask_box(mask), mask)]


class _ImageFolderWriter:
    """``{split}/<class>/<NNNNNN>.jpg``; a class folder is made with its first image (ImageFolder refuses empty
    ones)."""

    def __init__(self, root: Path, splits: tuple[str, ...], description: str) -> None:
        self.root = root
        for s in splits:
            (root / s).mkdir()

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None:
        (shape,) = objects
        folder = self.root / split / shape.name
        folder.mkdir(exist_ok=True)
        save_jpeg(image, folder / f"{image_name(index)}.jpg")

    def close(self) -> None:
        pass


def write_classification_dataset(
    out: str | Path,
    *,
    format: ClassificationFormat = "folder",
    num_images: int = 200,
    val_fraction: float = 0.2,
    num_val: int | None = None,
    image_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic shapes classification dataset to ``out``: ``{train,val}/<class>/<NNNNNN>.jpg``.

    Image ``i`` is ``classification_sample(sample_rng(seed, i), image_size, classification_label(seed, i))``;
    the val split is the last ``num_val`` images. Arguments, atomic writing and refusals as
    :func:`~mobiletasks.data.synthetic.detection.write_detection_dataset`.

    Returns:
        the dataset folder, as an absolute path.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = write_classification_dataset(Path(tmp) / "c", num_images=10, image_size=32, progress=False)
        ...     print(sorted(p.name for p in (root / "train").iterdir()))
        ['circle', 'cross', 'square', 'star', 'triangle']
    """
    return write_dataset(
        out,
        task="classification",
        writers={"folder": _ImageFolderWriter},
        classes=CLASSIFICATION_CLASSES,
        format=format,
        num_images=num_images,
        val_fraction=val_fraction,
        num_val=num_val,
        image_size=image_size,
        seed=seed,
        progress=progress,
        sampler=lambda seed, index, size: classification_sample(
            sample_rng(seed, index), size, classification_label(seed, index)
        ),
    )


# ---------------------------------------------------------------------------------------------- attributes


def shape_attributes(objects: Sequence[ShapeObject], size: int) -> np.ndarray:
    """The attributes (``ATTRIBUTE_NAMES`` order) of an image of ``size`` pixels holding ``objects``: bool [K].

    Boxes are the visible extents, so a shape half covered by another counts by what is seen of it.

    Example:
        >>> from mobiletasks.data.synthetic import make_sample
        >>> _, objects = make_sample(sample_rng(0, 0), 64)
        >>> attributes = shape_attributes(objects, 64)
        >>> attributes[:5].tolist() == [any(o.name == n for o in objects) for n in SHAPE_CLASSES]
        True
    """
    sides = [max(x1 - x0, y1 - y0) / size for x0, y0, x1, y1 in (o.box for o in objects)]
    centers = [(o.box[1] + o.box[3]) / 2 / size for o in objects]
    present = {o.label for o in objects}
    return np.array(
        [
            *(label in present for label in range(len(SHAPE_CLASSES))),
            len(objects) >= MANY_SHAPES,
            any(side > LARGE_SIDE for side in sides),
            any(side < SMALL_SIDE for side in sides),
            any(center < TOP for center in centers),
        ]
    )


class _CelebAWriter:
    """``img_align_celeba/NNNNNN.jpg``, ``list_attr_celeba.txt`` and ``list_eval_partition.txt``, in the text
    formats of the official files."""

    PARTITIONS = {"train": 0, "val": 1, "test": 2}

    def __init__(self, root: Path, splits: tuple[str, ...], description: str) -> None:
        self.root = root
        self.attributes: list[str] = []
        self.partition: list[str] = []
        (root / "img_align_celeba").mkdir()

    def add(self, split: str, index: int, image: np.ndarray, objects: list[ShapeObject]) -> None:
        file_name = f"{image_name(index)}.jpg"
        save_jpeg(image, self.root / "img_align_celeba" / file_name)
        values = np.where(shape_attributes(objects, image.shape[0]), 1, -1)
        # "000001.jpg -1  1  1 -1": each value right-aligned in two characters, after a space
        self.attributes.append(file_name + "".join(f" {v:2d}" for v in values) + "\n")
        self.partition.append(f"{file_name} {self.PARTITIONS[split]}\n")

    def close(self) -> None:
        header = f"{len(self.attributes)}\n" + "".join(f"{name} " for name in ATTRIBUTE_NAMES) + "\n"
        (self.root / "list_attr_celeba.txt").write_text(header + "".join(self.attributes))
        (self.root / "list_eval_partition.txt").write_text("".join(self.partition))


_ATTRIBUTE_WRITERS: dict[str, WriterFactory] = {"celeba": _CelebAWriter}


def write_attributes_dataset(
    out: str | Path,
    *,
    format: AttributesFormat = "celeba",
    num_images: int = 200,
    val_fraction: float = 0.2,
    num_val: int | None = None,
    image_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic shapes attribute dataset to ``out``, in the CelebA layout (see the module doc).

    Image ``i`` is ``make_sample(sample_rng(seed, i), image_size)`` (the detection image of the same seed),
    its attributes :func:`shape_attributes` of its shapes; the val split (partition 1) is the last
    ``num_val`` images. Arguments, atomic writing and refusals as
    :func:`~mobiletasks.data.synthetic.detection.write_detection_dataset`.

    Returns:
        the dataset folder, as an absolute path.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = write_attributes_dataset(Path(tmp) / "a", num_images=5, image_size=32, progress=False)
        ...     print((root / "list_eval_partition.txt").read_text().splitlines()[-1])
        000005.jpg 1
    """
    return write_dataset(
        out,
        task="attributes",
        writers=_ATTRIBUTE_WRITERS,
        classes=ATTRIBUTE_NAMES,
        format=format,
        num_images=num_images,
        val_fraction=val_fraction,
        num_val=num_val,
        image_size=image_size,
        seed=seed,
        progress=progress,
    )
