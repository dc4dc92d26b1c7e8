"""Hypothesis fuzzing of the annotation parsers through their public entry points: COCO json (``load_coco``,
``COCODetection``, ``read_categories``), Pascal VOC XML and image set lists (``VOCDetection``), and the text files
of CUB-200-2011 (``CUBDataModule``) and CelebA (``CelebADataModule``).

Each test starts from a small valid file, lets hypothesis mutate it (keys dropped, types changed, numbers out of
range, lines broken, bytes garbled, other encodings) and checks one of two outcomes: the documented error, a
``ValueError`` or ``FileNotFoundError`` whose message names the file, or a result consistent with the input
(finite boxes inside their image, labels in range, one record per listed image, values as a plain reference
reader of the format gives them). Any other exception (``KeyError``, ``TypeError``, ``IndexError``,
``UnicodeDecodeError``, ``OverflowError``, ``RecursionError``, ...) fails the test. The unmutated files must parse.
"""

from __future__ import annotations

import codecs
import copy
import io
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from xml.sax.saxutils import escape

import numpy as np
import pytest
from celeba_layout import write_celeba
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from official_layouts import write_cub
from PIL import Image
from pycocotools.coco import COCO

from mobiletasks.data.classification.celeba import SPLIT_CODES, CelebADataModule
from mobiletasks.data.classification.fine_grained import CUBDataModule
from mobiletasks.data.detection.coco import COCODetection, read_categories
from mobiletasks.data.detection.voc import VOCDetection
from mobiletasks.evaluation.coco import load_coco

T = TypeVar("T")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_or_refuse(parse: Callable[[], T], *named: Path) -> T | None:
    """``parse()``, or None when it raises the documented error, whose message must name one of ``named`` (a file,
    or a folder the file named is in). Any other exception propagates and fails the test."""
    try:
        return parse()
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        assert any(str(path) in message for path in named), f"{type(err).__name__} names none of {named}: {message}"
        return None


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh temporary folder per example (pytest's tmp_path is one per test, shared by all examples)."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def tiny_image(size: tuple[int, int], suffix: str) -> bytes:
    """A real (decodable) image of ``size`` (width, height)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 30)).save(buffer, format="PNG" if suffix == ".png" else "JPEG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------- bytes: encodings and garbage

# text numbers that json and float() read as something odd: nan, infinity, an int no float holds, an int over
# Python's 4300-digit limit, a float that underflows to 0
ODD_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e309", "-1e309", "1" + "0" * 400, "9" * 5000, "1e-400", "-0")


def encoded(data: st.DataObject, text: str) -> bytes:
    """``text`` as UTF-8 mostly, sometimes with a BOM, in UTF-16 or Latin-1, truncated, spliced with random bytes,
    or replaced by random bytes."""
    raw = text.encode("utf-8", "surrogatepass")
    if data.draw(st.integers(0, 3), label="mangle") < 3:
        return raw
    how = data.draw(
        st.sampled_from(["bom", "utf-16", "latin-1", "truncate", "splice", "binary", "empty"]), label="encoding"
    )
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    if how == "latin-1":
        return text.encode("latin-1", "replace")
    if how == "truncate":
        return raw[: data.draw(st.integers(0, len(raw)), label="cut")]
    if how == "splice":
        at = data.draw(st.integers(0, len(raw)), label="at")
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=8), label="spliced") + raw[at:]
    if how == "binary":
        return data.draw(st.binary(max_size=64), label="bytes")
    return b""


# ------------------------------------------------------------------------------------------------- COCO json


@dataclass(frozen=True)
class Raw:
    """A json number written as this text (``1e309``, a 400-digit integer), which json.dumps cannot write."""

    text: str

    def __repr__(self) -> str:  # "9" * 5000 in a falsifying example is unreadable
        return f"Raw({self.text[:12]!r}{f' ({len(self.text)} characters)' if len(self.text) > 12 else ''})"


def dump(value: Any) -> str:
    """json text of ``value``; :class:`Raw` values as their text, floats nan/inf as NaN/Infinity."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["1", "a", "", "cat", "a.jpg", "."]),
    st.sampled_from(ODD_NUMBERS).map(Raw),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["id", "name", "size", "counts", "bbox", "x"]) | st.text(max_size=3), children
        )
    ),
    max_leaves=8,
)
# values that were trouble somewhere: float32 overflow, 32-bit limits, paths that are folders
ODD_VALUES = (None, True, 0, -1, 2**31, 2**64, 0.5, 1e38, 1e39, 1e308, 5e-324, "", ".", "/", "1", [], {}, [1, 2, 3, 4])
# what a mutation puts in place of a value
replacements = st.one_of(st.sampled_from(ODD_NUMBERS).map(Raw), st.sampled_from(ODD_VALUES), scalars, json_values)


def coco_dict(string_ids: bool, sized: bool) -> dict[str, Any]:
    """A valid COCO annotation dict: two images (a.jpg 32 x 24, b.png 20 x 20, their sizes given or not), two
    categories, a box with a polygon, a box leaving its image, a crowd box with an uncompressed RLE; image ids as
    ints or strings."""
    a, b = ("a", "b") if string_ids else (1, 2)
    images: list[dict[str, Any]] = [{"id": a, "file_name": "a.jpg"}, {"id": b, "file_name": "b.png"}]
    if sized:
        images[0] |= {"width": 32, "height": 24}
        images[1] |= {"width": 20, "height": 20}
    return {
        "info": {"description": "fuzz"},
        "licenses": [],
        "images": images,
        "annotations": [
            {
                "id": 1,
                "image_id": a,
                "category_id": 1,
                "bbox": [2.0, 3.0, 10.0, 8.0],
                "area": 80.0,
                "iscrowd": 0,
                "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]],
            },
            {"id": 2, "image_id": a, "category_id": 3, "bbox": [20, 10, 30, 30], "iscrowd": 0},
            {
                "id": 3,
                "image_id": b,
                "category_id": 3,
                "bbox": [0, 0, 5, 5],
                "iscrowd": 1,
                "segmentation": {"size": [20, 20], "counts": [0, 5, 15, 5, 375]},
            },
        ],
        "categories": [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 3, "name": "dog"}],
    }


def slots(value: Any, where: str = "") -> dict[str, tuple[Any, Any]]:
    """Every (container, key) of a json value, by its path (``annotations[0].bbox``), depth first."""
    if isinstance(value, dict):
        items = [(key, f"{where}.{key}" if where else str(key)) for key in value]
    elif isinstance(value, list):
        items = [(k, f"{where}[{k}]") for k in range(len(value))]
    else:
        return {}
    found = {}
    for key, path in items:
        found[path] = (value, key)
        found.update(slots(value[key], path))
    return found


def retyped(value: Any, how: str) -> Any:
    """``value`` as a string, in a list, negated, as a 400-digit int, as a float, or None."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if how == "str":
        return str(value)
    if how == "list":
        return [value]
    if how == "negate" and number:
        return -value
    if how == "huge" and number:
        return Raw("1" + "0" * 400)
    if how == "float" and number:
        return float(value) + 0.5
    return None


def fuzzed_coco(data: st.DataObject) -> tuple[bytes, bool]:
    """A mutated COCO file, and whether it is the valid file unchanged."""
    doc: Any = coco_dict(data.draw(st.booleans(), label="string ids"), data.draw(st.booleans(), label="sized"))
    mutations = data.draw(st.integers(0, 6), label="mutations")
    for _ in range(mutations):
        places = slots(doc)
        if not places:
            break
        parent, key = places[data.draw(st.sampled_from(sorted(places)), label="where")]
        action = data.draw(st.sampled_from(["drop", "replace", "retype", "duplicate"]), label="action")
        if action == "drop":
            del parent[key]
        elif action == "replace":
            parent[key] = copy.deepcopy(data.draw(replacements, label="value"))  # later mutations change it
        elif action == "retype":
            how = data.draw(st.sampled_from(["str", "list", "negate", "huge", "float", "null"]), label="how")
            parent[key] = retyped(parent[key], how)
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:  # a dict: the value under another key
            parent[data.draw(st.sampled_from(["id", "bbox", "area", "name", "width"]), label="as")] = copy.deepcopy(
                parent[key]
            )
    text = dump(doc)
    special = data.draw(
        st.sampled_from(["", "", "", "", "", "", "not an object", "deep", "categories last"]), label="kind"
    )
    if special == "not an object":
        text = dump(data.draw(json_values, label="document"))
    elif special == "deep":  # deeper than json's recursion limit, where read_categories looks
        text = '{"images": [], "categories": ' + "[" * 5000 + "]" * 5000 + "}"
    elif special == "categories last":  # read_categories then reads the file's end only
        text = text.removesuffix("}") + ', "categories": ' + dump(data.draw(json_values, label="categories")) + "}"
    raw = encoded(data, text)
    return raw, mutations == 0 and special == "" and raw == text.encode()


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_coco(coco: COCO) -> None:
    """What pycocotools needs of a completed annotation dict."""
    dataset = coco.dataset
    assert isinstance(dataset["info"], dict) and isinstance(dataset["licenses"], list)
    assert len(coco.imgs) == len(dataset["images"]) and len(coco.cats) == len(dataset["categories"])
    ids = [ann["id"] for ann in dataset["annotations"]]
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == len(ids)
    for ann in dataset["annotations"]:
        assert ann["image_id"] in coco.imgs and ann["category_id"] in coco.cats
        assert len(ann["bbox"]) == 4 and all(is_number(v) and math.isfinite(v) for v in ann["bbox"])
        assert ann["iscrowd"] in (0, 1) and type(ann["iscrowd"]) is int
        assert is_number(ann["area"]) and math.isfinite(ann["area"]), ann
    assert all(isinstance(c["name"], str) for c in dataset["categories"])


@pytest.fixture(scope="module")
def coco_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image files of :func:`coco_dict`."""
    images = tmp_path_factory.mktemp("coco_images")
    for name, size in (("a.jpg", (32, 24)), ("b.png", (20, 20))):
        (images / name).write_bytes(tiny_image(size, Path(name).suffix))
    return images


@FUZZ
@given(data=st.data())
def test_load_coco(data: st.DataObject) -> None:
    raw, valid = fuzzed_coco(data)
    with folder() as tmp:
        path = tmp / "instances.json"
        path.write_bytes(raw)
        coco = parse_or_refuse(lambda: load_coco(path), path)
    if valid:
        assert coco is not None
    if coco is not None:
        check_coco(coco)


@FUZZ
@given(data=st.data(), keep_empty=st.booleans())
def test_coco_detection(coco_images: Path, data: st.DataObject, keep_empty: bool) -> None:
    raw, valid = fuzzed_coco(data)
    with folder() as tmp:
        path = tmp / "instances.json"
        path.write_bytes(raw)
        dataset = parse_or_refuse(lambda: COCODetection(coco_images, path, keep_empty=keep_empty), path)
    if valid:  # image b has a crowd box only
        assert dataset is not None and len(dataset) == (2 if keep_empty else 1) and dataset.stats["boxes"] == 2
    if dataset is None:
        return
    check_coco(dataset.coco)
    num_classes = len(dataset.class_names)
    assert num_classes == len(dataset.category_ids) > 0
    stats = dataset.stats
    assert stats["images"] == len(dataset.records) <= len(dataset.coco.imgs)
    if keep_empty:
        assert len(dataset.records) == len(dataset.coco.imgs)
    crowd = sum(bool(ann["iscrowd"]) for ann in dataset.coco.dataset["annotations"])
    assert stats["crowd"] == crowd
    assert stats["boxes"] + stats["dropped"] == len(dataset.coco.dataset["annotations"]) - crowd
    for record in dataset.records:
        assert record.image_id in dataset.coco.imgs
        boxes, labels = record.boxes, record.labels
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4) and np.isfinite(boxes).all()
        assert ((labels >= 0) & (labels < num_classes)).all()
        if record.width and record.height:
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= record.width).all()
            assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= record.height).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert sum(len(r.boxes) for r in dataset.records) == stats["boxes"]


@settings(FUZZ, report_multiple_bugs=False)
@given(data=st.data())
def test_read_categories(data: st.DataObject) -> None:
    raw, valid = fuzzed_coco(data)
    with folder() as tmp:
        path = tmp / "instances.json"
        path.write_bytes(raw)
        categories = parse_or_refuse(lambda: read_categories(path), path)
        coco = parse_or_refuse(lambda: load_coco(path), path)
    if valid:
        assert categories == [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 3, "name": "dog"}]
    if categories is None:
        return
    assert categories and all(isinstance(c["id"], int) and isinstance(c["name"], str) for c in categories)
    assert [c["id"] for c in categories] == sorted(c["id"] for c in categories)
    if coco is not None:  # the whole file read as json agrees with its end
        assert categories == sorted(coco.dataset["categories"], key=lambda c: c["id"])


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "null",
        "[]",
        '{"images": [], "categories": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"categories": [{"id": 1, "name": "cat"}], "images": [], "n": ' + "9" * 5000 + "}",
    ],
    ids=["not json", "null", "list", "deep", "5000 digits"],
)
def test_read_categories_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "instances.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_categories(path)


def test_coco_file_name_dot_is_refused(coco_images: Path, tmp_path: Path) -> None:
    """``images / "."`` is the image folder itself, which exists: a file_name whose path has no file name part is
    refused (``/`` and ``../a.jpg`` are refused as missing files)."""
    doc = coco_dict(string_ids=False, sized=True)
    doc["images"][1]["file_name"] = "."
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        COCODetection(coco_images, path)


def test_coco_box_of_no_height_in_float32_is_dropped(coco_images: Path, tmp_path: Path) -> None:
    """A bbox 1e-7 pixels high at y = 3 has an extent in float64 but none in float32: a target box of zero height
    would be log(0) in SSD's box encoding, so it is dropped."""
    doc = coco_dict(string_ids=False, sized=True)
    doc["annotations"][0]["bbox"] = [2.0, 3.0, 10.0, 1e-7]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    boxes = COCODetection(coco_images, path).records[0].boxes
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


# ---------------------------------------------------------------------------------------------- Pascal VOC

VOC_CLASSES = ["dog", "cat", "person"]
IMAGE_SIZE = (40, 30)  # of every VOC image (width, height)

numbers = st.one_of(
    st.integers(-20, 60).map(str),
    st.floats().map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "-1e400", "1" + "0" * 400, "9" * 5000, "", " 7 ", "7.5", "1_0"]),
    st.sampled_from(["0x10", "ten", "\u0663", "+5", "5e-324", "-0"]),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=4),
)
COORDS = ("xmin", "ymin", "xmax", "ymax")
bndbox = st.one_of(
    st.tuples(*[numbers] * 4).map(lambda v: "".join(f"<{c}>{escape(x)}</{c}>" for c, x in zip(COORDS, v, strict=True))),
    st.lists(st.tuples(st.sampled_from([*COORDS, "x"]), numbers), max_size=5).map(
        lambda kv: "".join(f"<{c}>{escape(x)}</{c}>" for c, x in kv)
    ),
).map(lambda inner: f"<bndbox>{inner}</bndbox>")
garbage = st.sampled_from(
    [
        "",
        "<part><name>head</name><bndbox><xmin>1</xmin></bndbox></part>",
        "<object/>",
        "<name>cat</name>",
        "<!-- comment -->",
        "<![CDATA[<object>]]>",
        "&amp;&lt;",
        "<a><b><c>deep</c></b></a>",
        "<size><width>-5</width><height>0</height></size>",
        "<bndbox><xmin>1</xmin></bndbox>",
    ]
)
voc_object = st.builds(
    lambda name, difficult, box, extra: f"<object><name>{escape(name)}</name>{difficult}{box}{extra}</object>",
    st.sampled_from(VOC_CLASSES) | st.sampled_from([" dog ", "Dog", "", "unicorn", "cat\n"]) | st.text(max_size=4),
    st.one_of(st.just(""), (st.sampled_from(["0", "1", "2", "inf", "nan", "1.0", "true"]) | numbers)).map(
        lambda d: d and f"<difficult>{escape(d)}</difficult>"
    ),
    st.one_of(st.just(""), bndbox, bndbox, bndbox),
    garbage,
)
voc_size = st.one_of(
    st.just(""),
    st.tuples(numbers, numbers).map(lambda wh: f"<size><width>{escape(wh[0])}</width><height>{escape(wh[1])}</height>"),
    st.just(f"<size><width>{IMAGE_SIZE[0]}</width><height>{IMAGE_SIZE[1]}</height>"),
).map(lambda size: size and size + "<depth>3</depth></size>")
PROLOGS = (
    "",
    '<?xml version="1.0" encoding="utf-8"?>\n',
    '<?xml version="1.0" encoding="klingon"?>',
    '<?xml version="1.0" encoding="shift_jis"?>',
    '<!DOCTYPE annotation [<!ENTITY c "cat">]>',
    '<!DOCTYPE annotation [<!ENTITY e SYSTEM "file:///etc/hostname">]>',
)
voc_xml = st.builds(
    lambda prolog, size, objects, extra: (
        f"{prolog}<annotation><filename>a.jpg</filename>{size}" + "".join(objects) + f"{extra}</annotation>"
    ),
    st.sampled_from(PROLOGS),
    voc_size,
    st.lists(voc_object, max_size=4),
    garbage | st.sampled_from(["<object><name>&c;</name></object>", "<name>&e;</name>"]),
)
set_lines = st.lists(
    st.sampled_from(["a", "b", "a 1", "  b", "a\t-1", "", "   ", "c", "\ufeffa", "a b", "../JPEGImages/a"])
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=4),
    max_size=5,
)


def write_voc_devkit(root: Path, data: st.DataObject) -> tuple[bytes, bool]:
    """A VOCdevkit with VOC2012/ImageSets/Main/train.txt (mutated), images a.jpg and b.jpg and their XML files
    (a.xml mutated); returns the set list's bytes and whether everything is valid."""
    year = root / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    image = data.draw(st.sampled_from(["jpeg", "jpeg", "jpeg", "empty", "garbage"]), label="image")
    jpeg = tiny_image(IMAGE_SIZE, ".jpg")
    (year / "JPEGImages" / "a.jpg").write_bytes({"jpeg": jpeg, "empty": b"", "garbage": jpeg[100:]}[image])
    (year / "JPEGImages" / "b.jpg").write_bytes(jpeg)
    valid_xml = f"<annotation><size><width>40</width><height>30</height></size>{_object('cat', (1, 2, 30, 20))}"
    (year / "Annotations" / "b.xml").write_text(valid_xml + "</annotation>")
    mutate = data.draw(st.booleans(), label="mutate a.xml")
    xml = encoded(data, data.draw(voc_xml, label="a.xml")) if mutate else (valid_xml + "</annotation>").encode()
    (year / "Annotations" / "a.xml").write_bytes(xml)
    lines = data.draw(st.just(["a", "b"]) | set_lines, label="set lines")
    eol = data.draw(st.sampled_from(["\n", "\r\n", "\r"]), label="line end")
    listing = encoded(data, "".join(line + eol for line in lines))
    (year / "ImageSets" / "Main" / "train.txt").write_bytes(listing)
    return listing, not mutate and lines == ["a", "b"] and listing == f"a{eol}b{eol}".encode()


def _object(name: str, box: tuple[int, int, int, int], difficult: int = 0) -> str:
    coords = "".join(f"<{c}>{v}</{c}>" for c, v in zip(COORDS, box, strict=True))
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>"


@settings(FUZZ, max_examples=600)
@given(data=st.data(), keep_difficult=st.booleans())
def test_voc_detection(data: st.DataObject, keep_difficult: bool) -> None:
    with folder() as root:
        listing, valid = write_voc_devkit(root, data)
        year = root / "VOC2012"
        dataset = parse_or_refuse(
            lambda: VOCDetection(root, sets=["2012/train"], classes=VOC_CLASSES, keep_difficult=keep_difficult),
            year / "ImageSets" / "Main" / "train.txt",
            year / "Annotations",
            year / "JPEGImages",
        )
    if valid:
        assert dataset is not None and len(dataset) == 2 and dataset.stats["boxes"] == 2
    if dataset is None:
        return
    # one record per listed line (a plain reader of the list: the first word of each non-blank line)
    listed = [line.split()[0] for line in listing.decode("utf-8-sig").splitlines() if line.strip()]
    assert [r.file_name for r in dataset.records] == [f"VOC2012/JPEGImages/{i}.jpg" for i in listed]
    assert dataset.stats["images"] == len(dataset.records) and [r.image_id for r in dataset.records] == list(
        range(len(listed))
    )
    for record in dataset.records:
        assert isinstance(record.width, int) and isinstance(record.height, int) and record.width > 0 < record.height
        boxes, labels, difficult = record.boxes, record.labels, record.difficult
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4) == (len(difficult), 4)
        boxes = boxes.astype(np.float64)  # <size> may say 1e300 pixels (then the image will not match it)
        assert np.isfinite(boxes).all() and ((labels >= 0) & (labels < len(VOC_CLASSES))).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= record.width).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= record.height).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert keep_difficult or not difficult.any()
    assert sum(len(r.boxes) for r in dataset.records) == dataset.stats["boxes"]


# ---------------------------------------------------------------------------------------------- text files

odd_tokens = (
    st.sampled_from(
        ["-1", "1", "0", "2", "+1", "01", "-0", "1.0", "x", "\u0663", "-1-1", "1" * 30, "9" * 5000, "nan", "inf"]
    )
    | st.sampled_from(["1e309", "1e308", "\ufeff1", "\u00a0", "a.jpg", "\x00", "\x1c", "\x85", "1_0", "-", "\t"])
    | st.sampled_from([".", "..", "/", "/x.jpg", "a//b.jpg", "../x.jpg"])
    | st.text(max_size=3)
)


def fuzzed_lines(data: st.DataObject, lines: list[str]) -> tuple[bytes, bool]:
    """``lines`` with lines and words dropped, repeated, swapped or replaced, any line end,
    encoded by :func:`encoded`; and whether they are unchanged."""
    lines = list(lines)
    mutations = data.draw(st.integers(0, 3), label="mutations")
    for _ in range(mutations):
        action = data.draw(
            st.sampled_from(["drop", "repeat", "swap", "blank", "drop word", "add word", "set word", "trail"]),
            label="action",
        )
        if not lines:
            lines.append(data.draw(odd_tokens, label="line"))
            continue
        n = data.draw(st.integers(0, len(lines) - 1), label="line")
        words = lines[n].split()
        if action == "drop":
            del lines[n]
        elif action == "repeat":
            lines.insert(data.draw(st.integers(0, len(lines)), label="to"), lines[n])
        elif action == "swap":
            m = data.draw(st.integers(0, len(lines) - 1), label="with")
            lines[n], lines[m] = lines[m], lines[n]
        elif action == "blank":
            lines.insert(n, data.draw(st.sampled_from(["", "  ", "\t"]), label="blank"))
        elif action == "trail":
            lines[n] += data.draw(st.sampled_from([" ", "\t", "  \t", "\x0c"]), label="trail")
        elif action == "drop word" and words:
            del words[data.draw(st.integers(0, len(words) - 1), label="word")]
            lines[n] = " ".join(words)
        elif action == "add word":
            words.insert(data.draw(st.integers(0, len(words)), label="at"), data.draw(odd_tokens, label="word"))
            lines[n] = " ".join(words)
        elif action == "set word" and words:
            words[data.draw(st.integers(0, len(words) - 1), label="word")] = data.draw(odd_tokens, label="value")
            lines[n] = " ".join(words)
    eol = data.draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]), label="line end")
    text = eol.join(lines) + data.draw(st.sampled_from([eol, "", eol * 3]), label="end")
    raw = encoded(data, text)
    return raw, mutations == 0 and eol != "\r" and raw == text.encode()


def words(line: bytes) -> list[bytes]:
    """The words of a line as the CelebA and CUB formats separate them (spaces, tabs, any control byte)."""
    return [w for w in re.split(rb"[\x00-\x20]+", line) if w]


# -------------------------------------------------------------------------------------------------- CelebA

CELEBA_NAMES = ["Male", "Smiling", "Young"]
ATTR, PARTITION = "list_attr_celeba.txt", "list_eval_partition.txt"


@pytest.fixture(scope="module")
def celeba(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CelebA: 6 images (2 train, 2 val, 2 test), 3 attributes."""
    return write_celeba(tmp_path_factory.mktemp("celeba"), 6, (2, 2, 2), CELEBA_NAMES, size=(8, 8))


def reference_celeba(attr: bytes, partition: bytes) -> tuple[list[str], dict[str, list[int]], dict[str, int]]:
    """The attribute names, each image's values and partition, read line by line as the README describes."""
    lines = attr.removeprefix(codecs.BOM_UTF8).split(b"\n")
    names = lines[1].decode("utf-8", "replace").split()
    values = {w[0].decode("utf-8", "replace"): [int(v) for v in w[1:]] for w in map(words, lines[2:]) if w}
    table = map(words, partition.removeprefix(codecs.BOM_UTF8).split(b"\n"))
    codes = {w[0].decode("utf-8", "replace"): int(w[1]) for w in table if w}
    return names, values, codes


@FUZZ
@given(data=st.data(), which=st.sampled_from([ATTR, PARTITION, "both"]), subset=st.booleans())
def test_celeba(celeba: Path, data: st.DataObject, which: str, subset: bool) -> None:
    files = {}
    valid = True
    for name in (ATTR, PARTITION):
        lines = (celeba / name).read_text().splitlines()
        if which in (name, "both"):
            files[name], unchanged = fuzzed_lines(data, lines)
            valid &= unchanged
        else:
            files[name] = (celeba / name).read_bytes()
    with folder() as root:
        (root / "img_align_celeba").symlink_to(celeba / "img_align_celeba")
        for name, raw in files.items():
            (root / name).write_bytes(raw)
        attributes = ["Young", "Male"] if subset else None
        module = CelebADataModule(root, attributes=attributes, num_workers=0)
        named = (root / ATTR, root / PARTITION, root / "img_align_celeba")
        class_names = parse_or_refuse(lambda: module.class_names, *named)
        splits = {split: parse_or_refuse(lambda s=split: module.dataset(s), *named) for split in SPLIT_CODES}
    if valid:
        assert class_names is not None and all(split is not None for split in splits.values())
    if class_names is None:
        return
    assert class_names == (
        attributes or files[ATTR].removeprefix(codecs.BOM_UTF8).split(b"\n")[1].decode("utf-8", "replace").split()
    )
    if all(split is None for split in splits.values()):
        return
    names, values, codes = reference_celeba(files[ATTR], files[PARTITION])
    for split, dataset in splits.items():
        if dataset is None:
            continue
        expected = [file for file in values if codes[file] == SPLIT_CODES[split]]  # in the attribute file's order
        assert dataset.file_names == expected
        assert all(path.parent == root / "img_align_celeba" for path in dataset.paths)  # files in the folder
        assert dataset.targets is not None and dataset.targets.dtype == np.float32
        want = [[float(values[file][names.index(a)] == 1) for a in class_names] for file in expected]
        assert dataset.targets.tolist() == want


# ----------------------------------------------------------------------------------------------------- CUB

CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "bounding_boxes.txt")


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CUB_200_2011: 2 classes, 2 train and 1 test image each."""
    return write_cub(tmp_path_factory.mktemp("cub"), ("Black_footed_Albatross", "Laysan_Albatross"), (2, 1), 8)


def reference_cub(files: dict[str, bytes]) -> dict[str, dict[int, list[str]]]:
    """Each file's rows by id, the other columns as text (space-separated, as the README describes them)."""
    rows = {}
    for name, raw in files.items():
        table = (line.split() for line in raw.decode("utf-8-sig").splitlines())
        rows[name] = {int(w[0]): w[1:] for w in table if w}
    return rows


@settings(FUZZ, max_examples=400)
@given(data=st.data(), which=st.sampled_from(CUB_FILES), crop_to_bbox=st.booleans(), missing=st.booleans())
def test_cub(cub: Path, data: st.DataObject, which: str, crop_to_bbox: bool, missing: bool) -> None:
    files = {name: (cub / name).read_bytes() for name in CUB_FILES}
    files[which], valid = fuzzed_lines(data, (cub / which).read_text().splitlines())
    missing &= data.draw(st.integers(0, 9), label="missing") == 0
    with folder() as root:
        (root / "images").symlink_to(cub / "images")
        for name, raw in files.items():
            if not (missing and name == which):
                (root / name).write_bytes(raw)
        module = CUBDataModule(root, crop_to_bbox=crop_to_bbox, num_workers=0)
        named = [root / name for name in CUB_FILES] + [root / "images"]
        class_names = parse_or_refuse(lambda: module.class_names, *named)
        splits = {split: parse_or_refuse(lambda s=split: module.dataset(s), *named) for split in ("train", "test")}
    if valid and not missing:
        assert class_names is not None and all(split is not None for split in splits.values())
    if class_names is None or None in splits.values():
        return
    rows = reference_cub({name: raw for name, raw in files.items() if crop_to_bbox or name != "bounding_boxes.txt"})
    classes = sorted(rows["classes.txt"])
    assert class_names == [re.sub(r"^\d+\.", "", rows["classes.txt"][c][0]) for c in classes]
    for split, dataset in splits.items():
        assert dataset is not None and dataset.targets is not None
        ids = [i for i in sorted(rows["images.txt"]) if int(rows["train_test_split.txt"][i][0]) == (split == "train")]
        assert dataset.file_names == [rows["images.txt"][i][0] for i in ids]
        assert all(root / "images" in path.parents and ".." not in path.parts for path in dataset.paths)
        want = [classes.index(int(rows["image_class_labels.txt"][i][0])) for i in ids]
        assert dataset.targets.dtype == np.int64 and dataset.targets.tolist() == want
        if crop_to_bbox:
            assert dataset.boxes is not None and dataset.boxes.shape == (len(ids), 4)
            assert np.isfinite(dataset.boxes).all()
            assert (dataset.boxes[:, 2] > dataset.boxes[:, 0]).all() and (
                dataset.boxes[:, 3] > dataset.boxes[:, 1]
            ).all()
