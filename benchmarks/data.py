"""Data pipeline speed per DataLoader worker: decoding and training augmentation, in one process with one thread
(as torch runs a worker), on real photos, against torchvision's transforms-v2 reference presets and against our
pipeline before the one-step rewrite, in one run.

- detection: coco128 train2017 (the images with boxes) and the SSD augmentation at ``--size`` (320; SSD300: 300).
  torchvision: references/detection's "ssd" preset (``RandomPhotometricDistort, RandomZoomOut(fill=mean),
  RandomIoUCrop, RandomHorizontalFlip``) plus ``Resize`` to the same square, ``ToDtype(float32, scale=True)``,
  ``SanitizeBoundingBoxes``.
- segmentation: voc128's train list with its palette masks, DeepLab's augmentation at ``--crop`` (513).
  torchvision: references/segmentation's preset (``RandomResize(0.5 * base, 2 * base)``, ``RandomHorizontalFlip``,
  ``PadIfSmaller`` with mask fill 255, ``RandomCrop``) with base = crop, plus ``ToDtype(float32, scale=True)``.

"before" is the pipeline as it was (rebuilt here): ``read_image`` through Pillow with a transposed copy, the SSD
chain as six albumentations steps on a zoom-out canvas, the segmentation chain as albumentations'
``RandomScale, PadIfNeeded, RandomCrop, HorizontalFlip``. Each stage is timed over the same images for every
pipeline in interleaved rounds; the median images/s is reported, and the ratios are the result.

Stages: "decode" (the image; with its mask for segmentation, read by the dataset's ``load_mask``), "augment" (on
images decoded beforehand, the same for every pipeline) and "decode+augment" (what a worker does per sample).
torchvision decodes with ``torchvision.io.decode_image``.

    python benchmarks/data.py [--rounds 5] [--images 64] [--size 320] [--crop 513] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
import torchvision
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.core.bbox_utils import denormalize_bboxes
from PIL import Image, ImageOps
from real_data import COCO128, VOC128, require
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from mobiletasks.data.detection.coco import COCODetection
from mobiletasks.data.io import read_image
from mobiletasks.data.segmentation.datasets import VOCSegmentation
from mobiletasks.data.transforms import (
    MEAN_PIXEL,
    SSD_MIN_IOUS,
    DetectionTransform,
    SegmentationTransform,
    segmentation_train_transform,
    train_transform,
)

TORCHVISION_MEAN = (123.0, 117.0, 104.0)  # references/detection/presets.py

# ---------------------------------------------------------------------------------------------- before


def read_image_before(path: Path) -> np.ndarray:
    """``read_image`` before: Pillow's decode, ``exif_transpose`` (a copy), ``np.asarray(...).copy()``."""
    with Image.open(path) as img:
        img.load()
        rgb = ImageOps.exif_transpose(img)
        rgb = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8).copy()


class ZoomOutBefore(A.Pad):
    """The zoom-out step before: the image on a mean-filled canvas ``U(1, 4)`` times its size."""

    def __init__(self, max_scale: float = 4.0, p: float = 0.5) -> None:
        super().__init__(padding=0, fill=MEAN_PIXEL, p=p)
        self.max_scale = max_scale

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        scale = self.py_random.uniform(1.0, self.max_scale)
        extra_h, extra_w = int(height * scale) - height, int(width * scale) - width
        top, left = self.py_random.randint(0, extra_h), self.py_random.randint(0, extra_w)
        return {"pad_top": top, "pad_bottom": extra_h - top, "pad_left": left, "pad_right": extra_w - left}


class IoUCropBefore(BaseCrop):
    """The IoU crop before: one candidate patch at a time, each tested on its own."""

    def __init__(self, trials: int = 50) -> None:
        super().__init__(p=1.0)
        self.trials = trials

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        bboxes = np.asarray(data.get("bboxes", np.zeros((0, 4))))
        boxes = denormalize_bboxes(bboxes[:, :4], (height, width)) if len(bboxes) else np.zeros((0, 4))
        for _ in range(self.trials):
            min_iou = self.py_random.choice(SSD_MIN_IOUS)
            if min_iou is None:
                return {"crop_coords": (0, 0, width, height)}
            for _ in range(self.trials):
                new_w = int(width * self.py_random.uniform(0.3, 1.0))
                new_h = int(height * self.py_random.uniform(0.3, 1.0))
                if new_w < 1 or new_h < 1 or not 0.5 <= new_w / new_h <= 2.0:
                    continue
                left = int((width - new_w) * self.py_random.random())
                top = int((height - new_h) * self.py_random.random())
                crop = (left, top, left + new_w, top + new_h)
                if self._accepts(crop, boxes, min_iou):
                    return {"crop_coords": crop}
        return {"crop_coords": (0, 0, width, height)}

    @staticmethod
    def _accepts(crop: tuple[int, int, int, int], boxes: np.ndarray, min_iou: float) -> bool:
        if len(boxes) == 0:
            return True
        inside = boxes[centers_inside(boxes, crop)]
        if len(inside) == 0:
            return False
        x0, y0, x1, y1 = crop
        iw = np.clip(np.minimum(inside[:, 2], x1) - np.maximum(inside[:, 0], x0), 0, None)
        ih = np.clip(np.minimum(inside[:, 3], y1) - np.maximum(inside[:, 1], y0), 0, None)
        inter = iw * ih
        areas = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
        return bool((inter / (areas + (x1 - x0) * (y1 - y0) - inter)).max() >= min_iou)

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        height, width = params["shape"][:2]
        pixels = denormalize_bboxes(bboxes[:, :4], (height, width)) if len(bboxes) else np.zeros((0, 4))
        return super().apply_to_bboxes(bboxes[centers_inside(pixels, crop_coords)], crop_coords, **params)


def centers_inside(boxes: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > crop[0]) & (cx < crop[2]) & (cy > crop[1]) & (cy < crop[3])


def ssd_before(size: int) -> DetectionTransform:
    return DetectionTransform(
        [
            A.RandomBrightnessContrast(brightness_limit=32 / 255, contrast_limit=0.0, p=0.5),
            A.ColorJitter(brightness=0.0, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=18 / 360, p=0.5),
            ZoomOutBefore(),
            IoUCropBefore(),
            A.HorizontalFlip(p=0.5),
            A.Resize(size, size),
        ]
    )


def deeplab_before(crop: int) -> SegmentationTransform:
    return SegmentationTransform(
        [
            A.RandomScale(
                scale_limit=(-0.5, 1.0), interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, p=1
            ),
            A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_CONSTANT, fill=MEAN_PIXEL, fill_mask=255),
            A.RandomCrop(crop, crop),
            A.HorizontalFlip(p=0.5),
        ]
    )


# ---------------------------------------------------------------------------------------------- torchvision


def ssd_torchvision(size: int) -> v2.Compose:
    """references/detection/presets.py, data_augmentation="ssd", use_v2=True, on tensors; then one resize."""
    fill: dict[Any, Any] = {tv_tensors.Image: list(TORCHVISION_MEAN), tv_tensors.Mask: 0}
    return v2.Compose(
        [
            v2.RandomPhotometricDistort(),
            v2.RandomZoomOut(fill=fill),
            v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(p=0.5),
            v2.Resize((size, size)),
            v2.ToDtype(torch.float32, scale=True),
            v2.SanitizeBoundingBoxes(),
            v2.ToPureTensor(),
        ]
    )


class PadIfSmaller:
    """references/segmentation/v2_extras.py: pad right and bottom up to ``size``, the image with 0, the mask 255."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        padding = [0, 0, max(self.size - width, 0), max(self.size - height, 0)]
        if any(padding):
            image, mask = F.pad(image, padding, fill=0), F.pad(mask, padding, fill=255)
        return image, mask


def deeplab_torchvision(crop: int, base: int) -> v2.Compose:
    """references/segmentation/presets.py, use_v2=True, on tensors, without the final Normalize."""
    return v2.Compose(
        [
            v2.RandomResize(int(0.5 * base), int(2.0 * base)),
            v2.RandomHorizontalFlip(0.5),
            PadIfSmaller(crop),
            v2.RandomCrop(crop),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.ToPureTensor(),
        ]
    )


def decode_torchvision(path: Path) -> torch.Tensor:
    return torchvision.io.decode_image(str(path), mode=torchvision.io.ImageReadMode.RGB)


# ---------------------------------------------------------------------------------------------- timing


def rates(runs: dict[str, Callable[[int], object]], count: int, rounds: int, desc: str) -> dict[str, float]:
    """Median images/s of each run over images ``0..count-1``, the runs interleaved round by round."""
    per_round: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm up
        for i in range(min(count, 4)):
            run(i)
    for _ in tqdm(range(rounds), desc=desc, leave=False):
        for name, run in runs.items():
            start = time.perf_counter()
            for i in range(count):
                run(i)
            per_round[name].append(count / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in per_round.items()}


def detection(size: int, count: int, rounds: int) -> dict[str, float]:
    dataset = COCODetection(
        require(COCO128) / "images" / "train2017", COCO128 / "annotations" / "instances_train2017.json"
    )
    records = [r for r in dataset.records if r.boxes is not None and len(r.boxes)][:count]
    paths = [r.path for r in records]
    boxes = [np.asarray(r.boxes, np.float32) for r in records]
    images = [read_image(p) for p in paths]
    tensors = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]

    def target(i: int, image: torch.Tensor) -> dict[str, Any]:
        box = tv_tensors.BoundingBoxes(boxes[i], format="XYXY", canvas_size=tuple(image.shape[-2:]))
        return {"boxes": box, "labels": torch.zeros(len(boxes[i]), dtype=torch.int64)}

    before, ours, theirs = ssd_before(size), train_transform(size), ssd_torchvision(size)
    for t in (before, ours):
        t.set_random_seed(0)
    torch.manual_seed(0)
    runs: dict[str, dict[str, Callable[[int], object]]] = {
        "decode": {
            "before": lambda i: read_image_before(paths[i]),
            "ours": lambda i: read_image(paths[i]),
            "torchvision": lambda i: decode_torchvision(paths[i]),
        },
        "augment": {
            "before": lambda i: before(images[i], boxes[i]),
            "ours": lambda i: ours(images[i], boxes[i]),
            "torchvision": lambda i: theirs(tv_tensors.Image(tensors[i]), target(i, tensors[i])),
        },
        "decode+augment": {
            "before": lambda i: before(read_image_before(paths[i]), boxes[i]),
            "ours": lambda i: ours(read_image(paths[i]), boxes[i]),
            "torchvision": lambda i: theirs(tv_tensors.Image(image := decode_torchvision(paths[i])), target(i, image)),
        },
    }
    return table(runs, len(paths), rounds, f"detection {size}")


def segmentation(crop: int, count: int, rounds: int) -> dict[str, float]:
    dataset = VOCSegmentation(require(VOC128), "train")
    labelled = [(r.path, r.mask) for r in dataset.records if r.mask is not None][:count]
    paths, mask_paths = [path for path, _ in labelled], [mask for _, mask in labelled]
    masks = [dataset.load_mask(m) for m in mask_paths]
    images = [read_image(p) for p in paths]
    tensors = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]
    mask_tensors = [torch.from_numpy(m) for m in masks]

    def load_mask(i: int) -> np.ndarray:
        return dataset.load_mask(mask_paths[i])

    before, ours, theirs = deeplab_before(crop), segmentation_train_transform(crop), deeplab_torchvision(crop, crop)
    for t in (before, ours):
        t.set_random_seed(0)
    torch.manual_seed(0)
    runs: dict[str, dict[str, Callable[[int], object]]] = {
        "decode": {
            "before": lambda i: (read_image_before(paths[i]), load_mask(i)),
            "ours": lambda i: (read_image(paths[i]), load_mask(i)),
            "torchvision": lambda i: (decode_torchvision(paths[i]), torch.from_numpy(load_mask(i))),
        },
        "augment": {
            "before": lambda i: before(images[i], masks[i]),
            "ours": lambda i: ours(images[i], masks[i]),
            "torchvision": lambda i: theirs(tv_tensors.Image(tensors[i]), tv_tensors.Mask(mask_tensors[i])),
        },
        "decode+augment": {
            "before": lambda i: before(read_image_before(paths[i]), load_mask(i)),
            "ours": lambda i: ours(read_image(paths[i]), load_mask(i)),
            "torchvision": lambda i: theirs(
                tv_tensors.Image(decode_torchvision(paths[i])), tv_tensors.Mask(torch.from_numpy(load_mask(i)))
            ),
        },
    }
    return table(runs, len(paths), rounds, f"segmentation {crop}")


def table(runs: dict[str, dict[str, Callable[[int], object]]], count: int, rounds: int, task: str) -> dict[str, float]:
    report: dict[str, float] = {}
    for stage, stage_runs in runs.items():
        speed = rates(stage_runs, count, rounds, f"{task} {stage}")
        for name, value in speed.items():
            report[f"{task} {stage} {name} img/s"] = round(value, 1)
        report[f"{task} {stage} ours/before"] = round(speed["ours"] / speed["before"], 2)
        report[f"{task} {stage} ours/torchvision"] = round(speed["ours"] / speed["torchvision"], 2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="images per round (coco128 and voc128 hold 100+)")
    parser.add_argument("--size", type=int, default=320, help="SSD image size (SSD300: 300)")
    parser.add_argument("--crop", type=int, default=513, help="DeepLab crop size")
    parser.add_argument("--task", choices=["all", "detection", "segmentation"], default="all")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)
    report: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, 1 thread (a DataLoader worker)",
    }
    if args.task in ("all", "detection"):
        report |= detection(args.size, args.images, args.rounds)
    if args.task in ("all", "segmentation"):
        report |= segmentation(args.crop, args.images, args.rounds)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<60} {value}")


if __name__ == "__main__":
    main()
