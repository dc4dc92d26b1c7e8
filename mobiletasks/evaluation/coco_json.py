"""Reading COCO annotation and results files the way pycocotools needs them, whoever wrote them.

Converters (from YOLO, Pascal VOC, CVAT, Label Studio, Roboflow, ...) often write COCO files that pycocotools
loads but later fails on, or scores wrongly: ``area`` or ``iscrowd`` left out (``KeyError`` inside
``COCOeval``), no ``info`` or ``licenses`` (``KeyError: 'info'`` in ``loadRes`` of pycocotools 2.0.9 and
2.0.10), annotation ids that are missing, repeated or 0 (``COCOeval`` takes a match with id 0 for no match,
so such a box can never be found: silently lower AP). :func:`load_coco` completes such a file as COCO defines
its fields, and refuses what cannot be completed with a message that names the file, the entry and the fix:

- ``info`` and ``licenses``: ``{}`` and ``[]`` when absent;
- ``iscrowd``: 0 when absent;
- ``area``: the area of the ``segmentation`` (polygons or RLE, as COCO defines it) when there is one, the
  image has ``width`` and ``height`` and pycocotools can measure it (not malformed, not polygons that would crash
  its C code), else the box's ``w * h``;
- annotation ``id``: renumbered 1..N when any is absent, not a positive integer, or repeated (a counted
  warning; nothing else refers to annotation ids);
- image ids: integers or strings, kept as they are (a results file must use the same ones: ``"139"`` is not
  ``139``); anything else, or an id given twice, is an error;
- category ids: integers, each with a ``name``;
- ``bbox``: four finite numbers ``[x, y, width, height]`` (with ``x + width`` and ``y + height`` within the
  range of float32, which boxes become); ``image_id`` and ``category_id`` of every
  annotation must be listed in ``images`` and ``categories``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, TypeGuard

from pycocotools import mask as mask_utils

from mobiletasks.common import PathLike

log = logging.getLogger(__name__)

ImageId = int | str
RESULT_KEYS = ("image_id", "category_id", "bbox", "score")
_FLOAT32_MAX = 3.4028234663852886e38  # boxes become float32 tensors
# what pycocotools' C code can rasterize without overflowing or crashing (segfault) on a failed allocation
_MAX_MASK_PIXELS = 2**31  # it indexes pixels with 32-bit ints
_MAX_COORDINATE = 1e8  # it scales polygon coordinates by 5 into 32-bit ints
_MAX_OUTLINE = 10**7  # points it traces along the outlines (8 bytes each); a 10,000 px square has 2e5


def describe(value: object) -> str:
    """``'139' (str)`` or ``139 (int)``: a value with its type, for messages about ids."""
    return f"{value!r} ({type(value).__name__})"


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float, not a bool (JSON ``true`` is not a coordinate), that a float holds (json reads a
    400-digit integer as an int, which ``float()`` and ``math.isfinite`` refuse with OverflowError)."""
    if isinstance(value, float):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


def is_box(value: object) -> bool:
    """A COCO bbox: four finite numbers ``[x, y, width, height]`` whose corners stay finite as float32."""
    if not isinstance(value, list) or len(value) != 4 or not all(is_number(v) and math.isfinite(v) for v in value):
        return False
    x, y, w, h = value
    return all(abs(v) <= _FLOAT32_MAX for v in (x, y, w, h, x + w, y + h))


def is_image_id(value: object) -> bool:
    """COCO image ids are integers; strings (file stems, UUIDs) are supported as they are."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value != "")


def id_order(value: ImageId) -> tuple[bool, ImageId]:
    """Sort key of image ids: integers first, then strings (a file may hold both)."""
    return (isinstance(value, str), value)


def read_json(path: PathLike, kind: str) -> Any:
    """The parsed json of ``path``; FileNotFoundError / ValueError naming the file and what ``kind`` it should be."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file {path} does not exist; pass the path of a COCO {kind} json")
    try:
        return json.loads(path.read_bytes())
    except (ValueError, RecursionError) as err:  # ValueError: also UnicodeDecodeError, an int of over 4300 digits
        raise ValueError(f"{kind} file {path} is not valid json ({err}); pass a COCO {kind} json") from err


def complete_dataset(data: Any, path: PathLike) -> dict[str, Any]:
    """The COCO annotation dict ``data`` (read from ``path``) checked and completed as the module doc says.

    Returns a new top-level dict; annotation dicts are completed in place. Raises ValueError naming ``path``.
    """
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise ValueError(
            f"annotations file {path} is not in COCO format: it needs 'images' and 'categories' lists "
            "(and 'annotations'), as instances_val2017.json has"
        )
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"annotations file {path}: 'annotations' is a {type(annotations).__name__}, not a list")
    images = _index(data["images"], path, "images", is_image_id, "an integer or a non-empty string")
    if not images:
        raise ValueError(
            f"annotations file {path} lists no images: there is nothing to train on or score; point to the "
            "annotations of a split that has images"
        )
    categories = _index(data["categories"], path, "categories", is_int, "an integer")
    for category in categories.values():
        if not isinstance(category.get("name"), str):
            raise ValueError(
                f"annotations file {path}: category {describe(category['id'])} has no 'name' string; give every "
                "category a name (it names the class)"
            )
    for k, ann in enumerate(annotations):
        _complete_annotation(ann, k, images, categories, path)
    ids = [ann.get("id") for ann in annotations]
    if not all(is_int(i) and i > 0 for i in ids) or len(set(ids)) != len(ids):
        log.warning(
            "%s: annotation ids are missing, not positive integers or repeated; renumbered 1..%d "
            "(pycocotools needs unique positive ids)",
            path,
            len(annotations),
        )
        for new_id, ann in enumerate(annotations, start=1):
            ann["id"] = new_id
    info = data.get("info")
    licenses = data.get("licenses")
    return {
        **data,
        "info": info if isinstance(info, dict) else {},
        "licenses": licenses if isinstance(licenses, list) else [],
        "annotations": annotations,
    }


def is_int(value: object) -> TypeGuard[int]:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _index(entries: list[Any], path: PathLike, key: str, valid: Any, kind: str) -> dict[Any, dict[str, Any]]:
    """``{id: entry}`` of the ``images`` or ``categories`` list; ValueError for a bad or repeated id."""
    index: dict[Any, dict[str, Any]] = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not valid(entry.get("id")):
            got = describe(entry.get("id")) if isinstance(entry, dict) else f"a {type(entry).__name__}"
            raise ValueError(
                f"annotations file {path}: entry {k} of '{key}' has id {got}; an id must be {kind}"
                + (" (keep one type for all image ids)" if key == "images" else "")
            )
        if entry["id"] in index:
            raise ValueError(f"annotations file {path}: '{key}' lists id {describe(entry['id'])} twice; ids are unique")
        index[entry["id"]] = entry
    return index


def _complete_annotation(
    ann: Any, k: int, images: dict[Any, dict[str, Any]], categories: dict[Any, Any], path: PathLike
) -> None:
    if not isinstance(ann, dict):
        raise ValueError(f"annotations file {path}: annotation {k} is a {type(ann).__name__}, not an object")
    name = f"annotation id {ann['id']!r}" if "id" in ann else f"annotation {k} (no id)"
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    if not is_image_id(image_id) or image_id not in images:
        raise ValueError(
            f"annotations file {path}: {name} refers to image_id {describe(image_id)}, which is not in 'images'"
            f"{_type_hint(image_id, images)}"
        )
    if not is_int(category_id) or category_id not in categories:
        raise ValueError(
            f"annotations file {path}: {name} has category_id {describe(category_id)}, which is not among the "
            f"categories of the file ({len(categories)}); add it to 'categories' or fix the annotation"
        )
    bbox = ann.get("bbox")
    if not is_box(bbox):
        raise ValueError(
            f"annotations file {path}: {name} has bbox {bbox!r}; a COCO bbox is four finite numbers "
            "[x, y, width, height] in pixels (corners within float32's range, 3.4e38)"
        )
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1):  # True and False compare equal to 1 and 0
        raise ValueError(f"annotations file {path}: {name} has iscrowd {crowd!r}; it is 0 or 1")
    ann["iscrowd"] = int(crowd)
    area = ann.get("area")
    if not (is_number(area) and math.isfinite(area)):
        if area is not None:
            raise ValueError(f"annotations file {path}: {name} has area {area!r}; it is a number of pixels")
        ann["area"] = _area(ann, images[image_id])


def _type_hint(value: object, known: dict[Any, Any]) -> str:
    """Where an id is the right text in the wrong type (``'139'`` for ``139``), say so."""
    for other in known:
        if str(other) == str(value) and type(other) is not type(value):
            return f"; it lists {describe(other)}: use the same type in both"
    return ""


def _area(ann: dict[str, Any], image: dict[str, Any]) -> float:
    """COCO's area: of the segmentation where there is one (and the image size is known), else of the box.

    A segmentation that pycocotools cannot measure counts as absent: malformed (pycocotools raises several kinds
    of errors), of an image too large for its 32-bit pixel counts, polygons that would crash its C code (see
    :func:`_traceable`), or an area that is not within the image (an RLE of another size).
    """
    width, height = image.get("width"), image.get("height")
    segmentation = ann.get("segmentation")
    box_area = float(ann["bbox"][2] * ann["bbox"][3])
    if not (segmentation and is_int(width) and is_int(height) and width > 0 and height > 0):
        return box_area
    if width * height >= _MAX_MASK_PIXELS:
        return box_area
    try:
        if isinstance(segmentation, list):
            if not _traceable(segmentation):
                return box_area
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        area = float(mask_utils.area(rle))
    except Exception:
        return box_area
    return area if 0 <= area <= width * height else box_area


def _traceable(polygons: list[Any]) -> bool:
    """Whether pycocotools' ``frPyObjects`` can trace ``polygons`` (lists ``[x1, y1, x2, y2, ...]`` of at least
    three points): its C code reads nan or a huge coordinate as an arbitrary integer and then crashes (segfault)
    allocating the outline, as it does for an outline of billions of points."""
    outline = 0
    for polygon in polygons:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            return False
        if not all(is_number(v) and abs(v) <= _MAX_COORDINATE for v in polygon):  # False for nan
            return False
        xs, ys = polygon[0::2], polygon[1::2]
        outline += sum(max(abs(xs[j] - xs[j - 1]), abs(ys[j] - ys[j - 1])) for j in range(len(xs)))
    return 5 * outline <= _MAX_OUTLINE


def read_results(path: PathLike) -> list[dict[str, Any]]:
    """The detections of a COCO results json: a list of {image_id, category_id, bbox, score}.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not json, not a list of objects, or a detection lacks a key or has a bad bbox (not four
            finite numbers, or a negative width or height) or score (the message names the file and the
            detection's index).
    """
    anns = read_json(path, "results")
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        raise ValueError(
            f"results file {path} holds a {type(anns).__name__}; it must be a json list of "
            '{"image_id", "category_id", "bbox": [x, y, w, h], "score"} objects'
        )
    for i, ann in enumerate(anns):
        missing = [k for k in RESULT_KEYS if k not in ann]
        if missing:
            raise ValueError(
                f"results file {path}: detection {i} lacks {', '.join(missing)}; each needs "
                f"{', '.join(RESULT_KEYS)} (bbox as [x, y, w, h])"
            )
        bbox, score = ann["bbox"], ann["score"]
        if not is_box(bbox):
            raise ValueError(
                f"results file {path}: detection {i} has bbox {bbox!r}; it needs four finite numbers (corners within "
                "float32's range, 3.4e38)"
            )
        if not (is_number(score) and math.isfinite(score)):
            raise ValueError(f"results file {path}: detection {i} has score {score!r}; it needs a finite number")
    negative = [i for i, ann in enumerate(anns) if ann["bbox"][2] < 0 or ann["bbox"][3] < 0]
    if negative:
        i = negative[0]
        raise ValueError(
            f"results file {path}: {len(negative)} of {len(anns)} detections have a negative width or height (e.g. "
            f"detection {i}: bbox {anns[i]['bbox']!r}), which no box has and pycocotools scores as misses: a COCO "
            "bbox is [x, y, width, height]; were corners [x1, y1, x2, y2] converted with their order swapped?"
        )
    return anns
