"""The one-step SSD and DeepLab augmentations against the albumentations chains they replace, and OpenCV's JPEG
decoding in read_image against Pillow's.

Where the two can be equal they are compared pixel for pixel (a plain resize, the center crop, each photometric
step against albumentations' own functions); elsewhere over a few hundred draws on a fixed synthetic image,
statistic by statistic (two-sample Kolmogorov-Smirnov, or means within a few standard errors). The chains are
rebuilt here from albumentations 2.0.8 (pinned in pyproject.toml) and this module's step classes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import albucore
import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.pixel import functional as fpixel
from data_trees import DataTrees
from PIL import Image
from scipy.stats import ks_2samp
from torch.utils.data import DataLoader

from mobiletasks.data.io import ImageReadError, read_image
from mobiletasks.data.transforms import (
    MEAN_PIXEL,
    SSD_MIN_IOUS,
    DetectionTransform,
    IoURandomCrop,
    RandomScaleCrop,
    RandomZoomOut,
    SegmentationTransform,
    SSDTransform,
    distort,
    sample_distortion,
    segmentation_train_transform,
    train_transform,
)

DRAWS = 300


def test_albumentations_version() -> None:
    import albumentations

    assert albumentations.__version__ == "2.0.8", "the chains below are albumentations 2.0.8's; check them anew"


# ---------------------------------------------------------------- SSD


def chain(
    size: int, *, photometric: bool = True, zoom_out: float = 0.5, min_ious: tuple = SSD_MIN_IOUS, flip: float = 0.5
) -> DetectionTransform:
    """The SSD chain as train_transform built it before SSDTransform: one albumentations step after another."""
    steps: list[A.BasicTransform] = []
    if photometric:
        steps += [
            A.RandomBrightnessContrast(brightness_limit=32 / 255, contrast_limit=0.0, p=0.5),
            A.ColorJitter(brightness=0.0, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=18 / 360, p=0.5),
        ]
    steps += [
        RandomZoomOut(max_scale=4.0, fill=MEAN_PIXEL, p=zoom_out),
        IoURandomCrop(min_ious=min_ious),
        A.HorizontalFlip(p=flip),
        A.Resize(size, size),
    ]
    return DetectionTransform(steps)


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth color gradients plus noise: no pixel is the mean pixel, and left differs from right."""
    ys, xs = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 40, (height, width, 3))
    return np.clip(np.stack([xs * 200 // width, ys * 200 // height, 60 + 0 * xs], axis=2) + noise, 0, 255).astype(
        np.uint8
    )


SSD_BOXES = np.array([[10, 20, 60, 80], [70, 30, 150, 110], [100, 5, 120, 25], [0, 100, 40, 120]], np.float32)


def draws(transform: Callable, image: np.ndarray, boxes: np.ndarray, n: int = DRAWS) -> list[tuple]:
    transform.set_random_seed(0)  # type: ignore[attr-defined]
    return [transform(image, boxes) for _ in range(n)]


def box_stats(samples: list[tuple], size: int) -> dict[str, np.ndarray]:
    kept = np.array([len(keep) for _, _, keep in samples])
    area = np.array([float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum()) / size**2 for _, b, _ in samples])
    boxes = torch.cat([b for _, b, _ in samples]).numpy() / size
    pixels = (torch.stack([img for img, _, _ in samples]) * 255).round()
    fill = (pixels == torch.tensor(MEAN_PIXEL, dtype=torch.float32)[:, None, None]).all(1).float().mean((1, 2))
    return {
        "kept": kept,
        "area": area,
        "cx": (boxes[:, 0] + boxes[:, 2]) / 2,
        "cy": (boxes[:, 1] + boxes[:, 3]) / 2,
        "w": boxes[:, 2] - boxes[:, 0],
        "fill": fill.numpy(),
        "kept_rows": np.concatenate([keep.numpy() for _, _, keep in samples]),
    }


def assert_same_distribution(ours: np.ndarray, theirs: np.ndarray, name: str) -> None:
    result = ks_2samp(ours, theirs)
    assert result.pvalue > 1e-3, f"{name}: KS statistic {result.statistic:.3f}, p = {result.pvalue:.2g}"


def assert_same_mean(ours: np.ndarray, theirs: np.ndarray, name: str, k: float = 4.0) -> None:
    se = np.sqrt(ours.var() / len(ours) + theirs.var() / len(theirs)) + 1e-9
    assert abs(ours.mean() - theirs.mean()) < k * se, f"{name}: {ours.mean():.4f} against {theirs.mean():.4f}"


def test_plain_resize_equals_the_albumentations_resize() -> None:
    rng = np.random.default_rng(1)
    for height, width, size in [(120, 160, 96), (48, 80, 64), (300, 200, 320), (64, 64, 64)]:
        image = textured(height, width, seed=height)
        corners = rng.uniform(-20, [width - 4, height - 4], (12, 2))  # some reach out of the image
        boxes = np.concatenate([corners, corners + rng.uniform(24, 60, (12, 2))], axis=1).astype(np.float32)
        boxes[3] = [5, 5, 5.5, 40]  # under a pixel wide once resized
        boxes[4] = [30, 30, 20, 40]  # no area
        boxes[5] = [5, 5, 7.2, 40]  # 1.2 to 2.4 pixels wide once resized: kept
        out, got, keep = train_transform(size, augment=False)(image, boxes)
        want, want_boxes, want_keep = DetectionTransform([A.Resize(size, size)])(image, boxes)
        assert torch.equal(out, want)
        assert keep.tolist() == want_keep.tolist()
        torch.testing.assert_close(got, want_boxes, atol=1e-4, rtol=0)


def test_geometry_matches_the_chain_in_distribution() -> None:
    image, size = textured(120, 160), 96
    ours = box_stats(draws(SSDTransform(size, photometric=False), image, SSD_BOXES), size)
    theirs = box_stats(draws(chain(size, photometric=False), image, SSD_BOXES), size)
    for name in ("cx", "cy", "w", "area", "fill"):
        assert_same_distribution(ours[name], theirs[name], name)
    for name in ("kept", "area", "fill"):
        assert_same_mean(ours[name], theirs[name], name)
    for row in range(len(SSD_BOXES)):  # how often each box survives
        assert_same_mean(ours["kept_rows"] == row, theirs["kept_rows"] == row, f"box {row} kept")
    assert (ours["fill"] > 0).mean() > 0.3  # zoom out happened, and its canvas is the exact mean pixel


def ramp(height: int, width: int) -> np.ndarray:
    """Red rises left to right, green top to bottom: an output pixel tells where in the source it came from."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // (width - 1), ys * 255 // (height - 1), np.full_like(xs, 200)], axis=2).astype(np.uint8)


def test_zoom_out_matches_the_chain_in_distribution() -> None:
    image, size, whole = ramp(120, 160), 64, np.array([[0, 0, 160, 120]], np.float32)
    settings = {"photometric": False, "min_ious": (None,), "flip": 0.0}  # zoom out alone, at its defaults
    ours = box_stats(draws(SSDTransform(size, **settings), image, whole, 600), size)  # type: ignore[arg-type]
    theirs = box_stats(draws(chain(size, **settings), image, whole, 600), size)  # type: ignore[arg-type]
    for name in ("fill", "area", "cx", "cy"):
        assert_same_distribution(ours[name], theirs[name], name)


def test_iou_crop_matches_the_chain_in_distribution() -> None:
    image, size = ramp(120, 160), 64
    settings = {"photometric": False, "zoom_out": 0.0, "flip": 0.0}  # the IoU crop alone, at its defaults

    def extents(samples: list[tuple]) -> dict[str, np.ndarray]:
        pixels = torch.stack([out for out, _, _ in samples]).numpy() * 255  # the crop's source extent, from the ramp
        x0, x1 = pixels[:, 0, size // 2, 0] * 159 / 255, pixels[:, 0, size // 2, -1] * 159 / 255
        y0, y1 = pixels[:, 1, 0, size // 2] * 119 / 255, pixels[:, 1, -1, size // 2] * 119 / 255
        return {"x0": x0, "width": x1 - x0, "y0": y0, "height": y1 - y0, "aspect": (x1 - x0 + 3) / (y1 - y0 + 3)}

    ours = draws(SSDTransform(size, **settings), image, SSD_BOXES, 600)  # type: ignore[arg-type]
    theirs = draws(chain(size, **settings), image, SSD_BOXES, 600)  # type: ignore[arg-type]
    mine, old = extents(ours) | box_stats(ours, size), extents(theirs) | box_stats(theirs, size)
    for name in ("x0", "width", "y0", "height", "aspect", "cx", "w"):
        assert_same_distribution(mine[name], old[name], name)
    for row in range(len(SSD_BOXES)):  # how often each box survives
        assert_same_mean(mine["kept_rows"] == row, old["kept_rows"] == row, f"box {row} kept", k=3)


def test_photometric_draws_match_albumentations() -> None:
    rng, n = np.random.default_rng(0), 4000
    ours = [sample_distortion(rng) for _ in range(n)]
    brightness = A.RandomBrightnessContrast(brightness_limit=32 / 255, contrast_limit=0.0, p=0.5)
    jitter = A.ColorJitter(brightness=0.0, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=18 / 360, p=0.5)
    A.Compose([brightness, jitter]).set_random_seed(0)
    pixel = {"image": np.zeros((2, 2, 3), np.uint8)}
    theirs = {"brightness": [brightness.get_params_dependent_on_data({}, pixel)["beta"] for _ in range(n)]}
    params = [jitter.get_params() for _ in range(n)]
    for kind in ("contrast", "saturation", "hue"):
        theirs[kind] = [p[kind] for p in params]
    for kind, values in theirs.items():
        mine = [amount for steps in ours for k, amount in steps if k == kind]
        assert 0.47 < len(mine) / n < 0.53, kind  # each with probability 0.5
        assert_same_distribution(np.array(mine), np.array(values), kind)
    orders = [tuple(k for k, _ in steps if k != "brightness") for steps in ours if len(steps) > 1]
    counts = np.unique(orders, axis=0, return_counts=True)[1]
    assert len(counts) == 6 and counts.min() > 0.8 * len(orders) / 6  # contrast, saturation, hue in any order
    assert all(steps[0][0] == "brightness" for steps in ours if any(k == "brightness" for k, _ in steps))


def test_zoom_out_distribution_and_fill() -> None:
    image, size = textured(60, 80), 64
    whole = np.array([[0, 0, 80, 60]], np.float32)
    ours = draws(SSDTransform(size, zoom_out=1.0, min_ious=(None,)), image, whole, 200)  # photometric on
    theirs = draws(chain(size, zoom_out=1.0, min_ious=(None,)), image, whole, 200)
    mine, old = box_stats(ours, size), box_stats(theirs, size)
    for name in ("area", "cx", "cy", "fill"):
        assert_same_distribution(mine[name], old[name], name)
    for out, boxes, keep in ours:
        assert keep.tolist() == [0]
        pixels = (out * 255).round().permute(1, 2, 0).numpy()
        x0, y0, x1, y1 = boxes[0].tolist()
        assert all(abs(v - round(v)) < 1e-3 for v in (x0, y0, x1, y1))  # the image lands on whole pixels
        outside = np.ones((size, size), bool)
        outside[round(y0) : round(y1), round(x0) : round(x1)] = False
        assert (pixels[outside] == MEAN_PIXEL).all()  # the fill is not distorted


def test_boxes_cover_their_pixels() -> None:
    image = np.full((120, 160, 3), 128, np.uint8)
    image[40:100, 30:90] = (230, 20, 20)
    box = np.array([[30.0, 40.0, 90.0, 100.0]])
    for zoom_out in (0.0, 1.0):
        transform = SSDTransform(96, photometric=False, zoom_out=zoom_out)
        kept = 0
        for seed in range(40):
            transform.set_random_seed(seed)
            out, boxes, keep = transform(image, box)
            if not len(keep):
                continue
            kept += 1
            red = (out[0] - out[1]).numpy() > 0.4
            ys, xs = np.nonzero(red)
            region = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            np.testing.assert_allclose(boxes[0].numpy(), region, atol=1.0, err_msg=f"seed {seed}, zoom {zoom_out}")
        assert kept > 20


def test_flip_rate_and_flip() -> None:
    image, size = textured(48, 64), 32
    plain = train_transform(size, augment=False)(image, np.zeros((0, 4)))[0]
    transform = SSDTransform(size, photometric=False, zoom_out=0.0, min_ious=(None,))
    transform.set_random_seed(3)
    flips = 0
    for _ in range(300):
        out, _, _ = transform(image, np.zeros((0, 4)))
        flipped = torch.equal(out, plain.flip(-1))
        assert flipped or torch.equal(out, plain)
        flips += flipped
    assert 120 < flips < 180  # p = 0.5; 300 draws: 150 +- 8.7


def test_photometric_steps_equal_albumentations() -> None:
    image = textured(40, 50)
    theirs = {
        "brightness": lambda img, a: albucore.multiply_add(img, 1.0, a, inplace=False),
        "contrast": fpixel.adjust_contrast_torchvision,
        "saturation": fpixel.adjust_saturation_torchvision,
        "hue": fpixel.adjust_hue_torchvision,
    }
    orders = [["contrast", "saturation", "hue"], ["hue", "contrast", "saturation"], ["saturation", "hue", "contrast"]]
    amounts = {"brightness": 21.7, "contrast": 1.37, "saturation": 0.62, "hue": -0.043}
    for order in orders:
        for first in ([], ["brightness"]):
            steps = [(kind, amounts[kind]) for kind in first + order]
            want = image
            for kind, amount in steps:
                want = theirs[kind](want, amount)
            np.testing.assert_array_equal(distort(image, steps), want, err_msg=str(steps))


def test_photometric_distribution_matches_the_chain() -> None:
    image, size = textured(60, 80), 48
    plain = dict(zoom_out=0.0, min_ious=(None,), flip=0.0)
    ours = draws(SSDTransform(size, **plain), image, np.zeros((0, 4)), 400)  # type: ignore[arg-type]
    theirs = draws(chain(size, **plain), image, np.zeros((0, 4)), 400)  # type: ignore[arg-type]

    def stats(samples: list[tuple]) -> dict[str, np.ndarray]:
        pixels = torch.stack([s[0] for s in samples])  # [N, 3, H, W]
        return {
            "mean": pixels.mean((1, 2, 3)).numpy(),
            "contrast": pixels.std((2, 3)).mean(1).numpy(),
            "saturation": (pixels.amax(1) - pixels.amin(1)).mean((1, 2)).numpy(),
            "red": pixels[:, 0].mean((1, 2)).numpy(),
        }

    mine, old = stats(ours), stats(theirs)
    for name in mine:
        assert_same_distribution(mine[name], old[name], name)
    assert (np.abs(mine["mean"] - mine["mean"][0]) > 0.01).mean() > 0.5  # it does distort


def test_ssd_transform_seeds_and_workers() -> None:
    image = textured(64, 64)
    transform = train_transform(32)
    transform.set_random_seed(5)
    first = [transform(image, SSD_BOXES) for _ in range(3)]
    transform.set_random_seed(5)
    again = [transform(image, SSD_BOXES) for _ in range(3)]
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    class Same(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> torch.Tensor:
            return transform(image, SSD_BOXES)[0]

    torch.manual_seed(0)
    batches = list(DataLoader(Same(), batch_size=1, num_workers=2))
    assert not torch.equal(batches[0], batches[1])  # worker 0 and worker 1 took their first sample each


def test_ssd_transform_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="zoom_out and flip are probabilities"):
        SSDTransform(64, zoom_out=1.5)
    with pytest.raises(ValueError, match="image_size must be a positive number of pixels"):
        train_transform(0)


# ---------------------------------------------------------------- segmentation


def seg_chain(crop: int, scale_range: tuple[float, float] = (0.5, 2.0)) -> SegmentationTransform:
    """DeepLab's chain as segmentation_train_transform built it before RandomScaleCrop."""
    low, high = scale_range
    return SegmentationTransform(
        [
            A.RandomScale(
                scale_limit=(low - 1, high - 1),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            ),
            A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_CONSTANT, fill=MEAN_PIXEL, fill_mask=255),
            A.RandomCrop(crop, crop),
            A.HorizontalFlip(p=0.5),
        ]
    )


def striped(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes 0, 3, 7, 9, 12 in vertical stripes of uneven widths; the image's color tells the class."""
    edges = np.array([0.1, 0.35, 0.45, 0.8]) * width
    index = np.searchsorted(edges, np.arange(width) + 0.5)[None, :].repeat(height, axis=0)
    colors = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30], [30, 200, 200]], np.uint8)
    return colors[index], np.array([0, 3, 7, 9, 12])[index]  # int64 labels, as the datasets pass them


def test_center_crop_equals_the_albumentations_chain() -> None:
    for height, width, crop in [(40, 50, 48), (70, 90, 64), (64, 64, 64), (30, 100, 64)]:
        image, mask = striped(height, width)
        image = (image.astype(int) + textured(height, width)).clip(0, 255).astype(np.uint8)
        pad = A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_CONSTANT, fill=MEAN_PIXEL, fill_mask=255)
        want_image, want_mask = SegmentationTransform([pad, A.CenterCrop(crop, crop)])(image, mask)
        out_image, out_mask = segmentation_train_transform(crop, augment=False)(image, mask)
        assert torch.equal(out_image, want_image) and torch.equal(out_mask, want_mask)


def test_masks_keep_their_values() -> None:
    image, mask = striped(70, 90)
    transform = segmentation_train_transform(64)
    transform.set_random_seed(0)
    for _ in range(40):
        _, out = transform(image, mask)
        assert out.dtype == torch.int64 and set(out.unique().tolist()) <= {0, 3, 7, 9, 12, 255}


def scale_crop_stats(transform: Callable, image: np.ndarray, mask: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per draw, from the mask (source column index) and the image's green ramp: the scale, where the crop starts,
    how much is padding, where the image lands and whether it was flipped."""
    transform.set_random_seed(0)  # type: ignore[attr-defined]
    stats: dict[str, list[float]] = {k: [] for k in ("scale", "x0", "ignored", "left", "top", "flipped", "y0")}
    for _ in range(n):
        out, labels = transform(image, mask)
        m = labels.numpy()
        row = m[m.shape[0] // 2]
        cols = np.flatnonzero(row != 255)
        visible = row[cols]
        stats["scale"].append(len(cols) / (visible.max() - visible.min() + 1))
        stats["x0"].append(visible.min())
        stats["ignored"].append((m == 255).mean())
        stats["left"].append(cols[0])
        stats["top"].append(np.flatnonzero(m[:, cols[len(cols) // 2]] != 255)[0])
        stats["flipped"].append(float(visible[0] > visible[-1]))
        stats["y0"].append(float(out[1, 0, cols[len(cols) // 2]]))
    return {k: np.array(v, float) for k, v in stats.items()}


def test_scale_crop_matches_the_chain_in_distribution() -> None:
    ys, xs = np.mgrid[0:150, 0:200]
    image = np.stack([xs, ys * 255 // 149, np.full_like(xs, 90)], axis=2).astype(np.uint8)
    for (height, width), n in (((150, 200), 1000), ((40, 50), 400)):  # crops of a larger image; a padded one
        picture, mask = np.ascontiguousarray(image[:height, :width]), xs[:height, :width]
        ours = scale_crop_stats(RandomScaleCrop(64), picture, mask, n)
        theirs = scale_crop_stats(seg_chain(64), picture, mask, n)
        for name in ours:
            assert_same_distribution(ours[name], theirs[name], f"{name} ({height}x{width})")
        assert 0.4 < ours["flipped"].mean() < 0.6


def test_scale_crop_keeps_image_and_mask_aligned() -> None:
    image, mask = striped(70, 90)
    colors = {0: (200, 30, 30), 3: (30, 200, 30), 7: (30, 30, 200), 9: (200, 200, 30), 12: (30, 200, 200)}
    colors[255] = MEAN_PIXEL  # padding
    transform = segmentation_train_transform(64)
    transform.set_random_seed(1)
    for _ in range(30):
        out, labels = transform(image, mask)
        pixels, m = (out.permute(1, 2, 0).numpy() * 255).round(), labels.numpy()
        padded = np.pad(m, 2, constant_values=-1)  # interior: a 5x5 neighbourhood of one value
        interior = (np.lib.stride_tricks.sliding_window_view(padded, (5, 5)) == m[..., None, None]).all((-1, -2))
        for value, color in colors.items():
            where = interior & (m == value)
            np.testing.assert_allclose(pixels[where], np.broadcast_to(color, (int(where.sum()), 3)), atol=1)


def test_scale_crop_seeds_and_workers() -> None:
    image, mask = striped(50, 60)
    transform = segmentation_train_transform(32)
    transform.set_random_seed(4)
    first = transform(image, mask)
    transform.set_random_seed(4)
    again = transform(image, mask)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])

    class Same(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> torch.Tensor:
            return transform(image, mask)[1]

    torch.manual_seed(0)
    batches = list(DataLoader(Same(), batch_size=1, num_workers=2))
    assert not torch.equal(batches[0], batches[1])


def test_scale_crop_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="scale_range must be"):
        RandomScaleCrop(64, (2.0, 1.0))
    with pytest.raises(ValueError, match="flip is a probability"):
        RandomScaleCrop(64, flip=2.0)
    with pytest.raises(ValueError, match="does not match the image"):
        RandomScaleCrop(64)(np.zeros((10, 12, 3), np.uint8), np.zeros((12, 10), np.uint8))


# ---------------------------------------------------------------- reading JPEGs


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"progressive": True},
        {"subsampling": 0, "quality": 97},
        {"subsampling": 1},
        {"quality": 20},
        {"optimize": True},
        {"mode": "L"},
        {"mode": "L", "progressive": True},
    ],
)
def test_read_image_decodes_jpegs_as_pillow_does(tmp_path: Path, options: dict) -> None:
    options = dict(options)
    mode = options.pop("mode", "RGB")
    picture = Image.fromarray(textured(61, 83)).convert(mode)
    picture.save(tmp_path / "a.jpg", **options)
    data = (tmp_path / "a.jpg").read_bytes()
    out = read_image(tmp_path / "a.jpg")
    assert out.shape == (61, 83, 3) and out.dtype == np.uint8 and out.flags.writeable
    np.testing.assert_array_equal(out, pillow_rgb(data))


def test_read_image_decodes_photos_as_pillow_does(trees: DataTrees) -> None:
    """coco128's photographs (or the stand-in's pictures, without them)."""
    for path in sorted((trees.coco128 / "images" / "train2017").glob("*.jpg"))[:12]:
        np.testing.assert_array_equal(read_image(path), pillow_rgb(path.read_bytes()), err_msg=str(path))


def test_read_image_fails_on_truncated_jpegs(tmp_path: Path) -> None:
    Image.fromarray(textured(61, 83)).save(tmp_path / "whole.jpg", quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    for cut in (len(data) // 2, len(data) - 2):  # without its end-of-image marker too
        (tmp_path / "cut.jpg").write_bytes(data[:cut])
        with pytest.raises(ImageReadError, match=r"cannot read image .*cut\.jpg.*truncated"):
            read_image(tmp_path / "cut.jpg")
    (tmp_path / "png.jpg").write_bytes(
        (lambda b: (Image.fromarray(textured(5, 6)).save(b, "PNG"), b.getvalue())[1])(io.BytesIO())
    )
    np.testing.assert_array_equal(read_image(tmp_path / "png.jpg"), textured(5, 6))  # a PNG named .jpg: Pillow's way
