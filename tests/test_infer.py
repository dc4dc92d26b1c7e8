"""``mobiletasks infer``: a checkpoint and its ONNX export on a folder of images (nested folders, same-named files
in two of them, an unreadable file) write the same ``predictions.json`` and pictures, and the checkpoint's are
those of ``mobiletasks predict`` (the task's data module with ``predict_images`` and its writer in
``Trainer.predict``) on the same images. The tasks have random weights and BatchNorm layers (with statistics of
random images, so that outputs depend on the image); their checkpoints are saved by the Trainer of that predict
run, so ``BaseTask.deploy_record`` records the data module's class names, COCO category ids and preprocessing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from conftest import randomize
from PIL import Image

from mobiletasks.cli import main
from mobiletasks.cli.infer import PredictorModule
from mobiletasks.data import COCODetectionDataModule, ImageFolderDataModule
from mobiletasks.data.inference import InferenceDataModule, find_images
from mobiletasks.data.segmentation.datamodules import COCOSegmentationDataModule
from mobiletasks.deploy import DeployInfo
from mobiletasks.tasks import ClassificationTask, DetectionTask, SegmentationTask
from mobiletasks.tasks.writers.classification import ClassificationWriter
from mobiletasks.tasks.writers.detection import DetectionWriter
from mobiletasks.tasks.writers.segmentation import SegmentationWriter

pytest.importorskip("onnxruntime")

# the folder given to infer: nested folders, the same file name in two of them, a file that is no image
IMAGES = {"a.png": (60, 84), "cam1/0001.jpg": (48, 64), "cam2/0001.jpg": (64, 48), "cam2/deep/b.png": (40, 40)}
NAMES = sorted(IMAGES)
BROKEN = "cam1/broken.jpg"  # an image file that cannot be decoded: skipped and counted, the run goes on
BATCH = ["--batch-size", "2", "--num-workers", "0"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, (height, width) in IMAGES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        noise = rng.normal(rng.uniform(40, 215, 3), 30, (height, width, 3))  # a colour of its own, and noise
        pixels = np.clip(noise, 0, 255).astype(np.uint8)
        pixels[height // 4 : height // 2, width // 4 : width // 2] = rng.integers(0, 256, 3)  # a flat patch
        Image.fromarray(pixels).save(folder / name, quality=95)
    (folder / BROKEN).write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


@dataclass
class Run:
    """A task's checkpoint, its ONNX export and the outputs of ``predict`` on the photos."""

    ckpt: Path
    onnx: Path | None
    predicted: Path  # the output folder of Lightning predict with the task's writer


def save_run(
    task: L.LightningModule, datamodule: L.LightningDataModule, writer: Any, folder: Path, export: bool
) -> Run:
    """``mobiletasks predict``'s run (the data module's ``predict_images`` split, the task's writer), the
    checkpoint of that trainer (so the data module's metadata is recorded) and ``mobiletasks export`` of it."""
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[writer])
    trainer.predict(task, datamodule=datamodule, return_predictions=False)
    ckpt = folder / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    onnx = folder / "model.onnx" if export else None
    if onnx is not None:
        assert main(["export", "--ckpt_path", str(ckpt), "--output", str(onnx)]) == 0
    return Run(ckpt, onnx, writer.output_dir)


def calibrate_batchnorm(model: torch.nn.Module, forward: Callable[[torch.Tensor], Any]) -> torch.nn.Module:
    """``randomize``'s BatchNorm weights with the running statistics of random images, as training leaves them
    (with ``randomize``'s statistics alone, these deep networks give every image the same output)."""
    randomize(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # the mean over the batches seen
    model.train()
    with torch.no_grad():
        forward(torch.rand(8, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def infer(model: Path, *args: str) -> int:
    return main(["infer", str(model), *args])


def read(folder: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = json.loads((folder / "predictions.json").read_text())
    return results


def pictures(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> Run:
    root = tmp_path_factory.mktemp("detection")
    torch.manual_seed(0)  # the weights
    categories = [{"id": 17, "name": "dog"}, {"id": 3, "name": "cat"}]  # ids neither 1.. nor sorted in the file
    (root / "train.json").write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    datamodule = COCODetectionDataModule(
        root, train_annotations="train.json", image_size=96, batch_size=2, num_workers=0, predict_images=str(photos)
    )
    task = DetectionTask(num_classes=2, image_size=96, model_kwargs={"width_mult": 0.35}, detections_per_img=20)
    model = task.model
    calibrate_batchnorm(model, lambda x: model.head(list(model.backbone(x).values())))  # no loss: no targets
    writer = DetectionWriter(str(root / "predict"), score_threshold=0.0, max_images=None)
    return save_run(task, datamodule, writer, root, export=True)


def same_detection(a: dict[str, Any], b: dict[str, Any]) -> bool:
    close = np.allclose(a["bbox"], b["bbox"], atol=0.05) and abs(a["score"] - b["score"]) < 2e-4
    return close and (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])


def test_detection_checkpoint_onnx_and_predict_agree(
    detector: Run, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert detector.onnx is not None
    draw_all = ["--score-threshold", "0", "--max-images", "all"]
    assert infer(detector.ckpt, str(photos), "--output", str(tmp_path / "ckpt"), *BATCH, *draw_all) == 0
    out = capsys.readouterr().out  # the broken file is skipped and counted, not fatal
    assert f"predicted {len(IMAGES)} images (1 of {len(IMAGES) + 1} could not be read and have none)" in out
    assert infer(detector.onnx, str(photos), "--output", str(tmp_path / "onnx"), *BATCH, *draw_all) == 0

    predicted, from_ckpt, from_onnx = read(detector.predicted), read(tmp_path / "ckpt"), read(tmp_path / "onnx")
    assert from_ckpt == predicted  # the same task on the same batches: the same numbers
    assert {r["file_name"] for r in from_ckpt} == set(NAMES)  # relative to the folder given, nested kept
    assert {r["category_id"] for r in from_ckpt} == {3, 17}  # the recorded COCO ids, not labels + 1
    expected_pictures = [f"images/{Path(n).with_suffix('.png').as_posix()}" for n in NAMES]
    assert pictures(tmp_path / "ckpt") == pictures(detector.predicted) == expected_pictures
    assert pictures(tmp_path / "onnx") == expected_pictures

    # onnxruntime: the same detections of every image, to rounding (in any order where scores tie)
    for name in NAMES:
        eager = [r for r in from_ckpt if r["file_name"] == name]
        exported = [r for r in from_onnx if r["file_name"] == name]
        assert len(eager) == len(exported) == 20
        for e in eager:
            match = next((o for o in exported if same_detection(e, o)), None)
            assert match is not None, f"{e} is not among the ONNX detections of {name}: {exported}"
            exported.remove(match)
    best = {r["file_name"]: r["score"] for r in reversed(from_ckpt)}  # each image's best detection
    assert len(set(best.values())) == len(NAMES)  # detections that depend on the image: a real test


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> Run:
    root = tmp_path_factory.mktemp("segmentation")
    torch.manual_seed(1)  # the weights (seed 0 happens to give two images the same class histogram)
    (root / "classes.json").write_text(json.dumps({"0": "background", "1": "sky", "2": "road"}))
    datamodule = COCOSegmentationDataModule(
        root, classes_json="classes.json", crop_size=64, batch_size=2, num_workers=0, predict_images=str(photos)
    )
    task = SegmentationTask(num_classes=3, image_size=64, model_kwargs={"width_mult": 0.35, "aspp": False})
    model = calibrate_batchnorm(task.model, task.model)
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    probe = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # logits centred per class, so that the class map varies within an image
        classifier.bias -= model(probe)["out"].mean((0, 2, 3))
    writer = SegmentationWriter(str(root / "predict"), max_images=None)
    return save_run(task, datamodule, writer, root, export=True)


def masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): np.array(Image.open(p)) for p in sorted(folder.glob("masks/**/*.png"))}


def test_segmentation_checkpoint_onnx_and_predict_agree(segmenter: Run, photos: Path, tmp_path: Path) -> None:
    assert segmenter.onnx is not None
    assert infer(segmenter.ckpt, str(photos), "--output", str(tmp_path / "ckpt"), *BATCH) == 0
    assert infer(segmenter.onnx, str(photos), "--output", str(tmp_path / "onnx"), *BATCH) == 0

    predicted, from_ckpt, from_onnx = read(segmenter.predicted), read(tmp_path / "ckpt"), read(tmp_path / "onnx")
    assert from_ckpt == predicted == from_onnx  # file names, mask and overlay paths, classes found
    assert [r["file_name"] for r in from_ckpt] == NAMES
    assert {c for r in from_ckpt for c in r["classes"]} <= {"background", "sky", "road"}  # the recorded names
    want = masks(segmenter.predicted)
    mask_names = {f"masks/{Path(n).with_suffix('.png').as_posix()}": n for n in NAMES}
    assert list(want) == list(mask_names)
    assert all(mask.shape == IMAGES[mask_names[name]] for name, mask in want.items())  # each image's own size
    got_ckpt, got_onnx = masks(tmp_path / "ckpt"), masks(tmp_path / "onnx")
    assert len({v for m in want.values() for v in np.unique(m).tolist()}) > 1  # more than one class: a real test
    assert len({tuple(np.bincount(m.ravel(), minlength=3) / m.size) for m in want.values()}) == len(NAMES)
    for name, mask in want.items():
        np.testing.assert_array_equal(got_ckpt[name], mask)
        assert np.mean(got_onnx[name] != mask) <= 1e-3  # onnxruntime: a near tie of two logits may go either way
    assert pictures(tmp_path / "onnx") == pictures(segmenter.predicted)  # masks and overlays


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> Run:
    root = tmp_path_factory.mktemp("classification")
    torch.manual_seed(0)  # the weights
    for name in ("cat", "dog", "fox"):
        (root / "train" / name).mkdir(parents=True)  # the class names are the training folders'
    datamodule = ImageFolderDataModule(
        root, image_size=32, crop_fraction=0.75, batch_size=2, num_workers=0, predict_images=photos
    )
    task = ClassificationTask(num_classes=3, image_size=32, model_kwargs={"width_mult": 0.25})
    calibrate_batchnorm(task.model, task)
    writer = ClassificationWriter(str(root / "predict"))
    return save_run(task, datamodule, writer, root, export=False)


def test_classification_checkpoint_and_predict_agree(classifier: Run, photos: Path, tmp_path: Path) -> None:
    assert infer(classifier.ckpt, str(photos), "--output", str(tmp_path), *BATCH) == 0
    results = read(tmp_path)
    assert results == read(classifier.predicted)  # resized and cropped as predict does: crop_fraction recorded
    assert [r["file_name"] for r in results] == NAMES
    assert {t["name"] for r in results for t in r["top_k"]} == {"cat", "dog", "fox"}
    assert len({r["top_k"][0]["score"] for r in results}) > 1
    assert (tmp_path / "contact_sheet.png").is_file()


def test_onnx_module_returns_what_the_task_returns(classifier: Run) -> None:
    """``PredictorModule`` on a predictor that gives the task's logits: the task's probabilities, so the writer
    gets what it gets from the checkpoint (softmax; sigmoid and ``multi_label`` for attributes)."""
    task = ClassificationTask.load_from_checkpoint(classifier.ckpt).eval()

    class Logits:
        def __init__(self, task_name: str) -> None:
            self.task, self.info = task_name, DeployInfo(task_name, (32, 32), ["cat", "dog", "fox"])  # type: ignore[arg-type]

        def __call__(self, images: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return task(torch.from_numpy(images)).numpy()

    images = torch.rand(3, 3, 32, 32)
    batch = (images, {"file_name": ["a", "b", "c"]})
    with torch.no_grad():
        want = task.predict_step(batch, 0)
        logits = task(images)
    torch.testing.assert_close(PredictorModule(Logits("classification")).predict_step(batch, 0), want)
    attributes = PredictorModule(Logits("attributes"))
    assert attributes.multi_label
    torch.testing.assert_close(attributes.predict_step(batch, 0), logits.sigmoid())
    empty = (torch.zeros(0, 3, 0, 0), {"file_name": []})
    assert attributes.predict_step(empty, 0).shape == (0, 3)


def test_old_checkpoint_names_classes_by_index(
    classifier: Run, photos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = torch.load(classifier.ckpt, weights_only=True)
    del checkpoint["mobiletasks"]  # saved before the deploy record existed, by `mobiletasks fit` (LightningCLI):
    checkpoint["hyper_parameters"]["_class_path"] = "mobiletasks.tasks.ClassificationTask"
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert infer(old, str(photos / "a.png"), *BATCH) == 0
    warnings = [r.getMessage() for r in caplog.records if "does not record class names" in r.getMessage()]
    assert len(warnings) == 1 and "the crop fraction (0.875 is used)" in warnings[0]
    (result,) = read(tmp_path / "predictions")  # the default output folder
    assert result["file_name"] == "a.png"  # a file given: its name
    assert {t["name"] for t in result["top_k"]} == {"0", "1", "2"}


def test_refuses_existing_output_and_finds_no_images(
    classifier: Run, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.json").write_text("[]")
    assert infer(classifier.ckpt, str(photos), "--output", str(out), *BATCH) == 2
    assert f"{out} holds predictions.json of an earlier run; pass --overwrite" in capsys.readouterr().err
    assert read(out) == []  # untouched
    assert infer(classifier.ckpt, str(photos / "cam2"), "--output", str(out), "--overwrite", *BATCH) == 0
    assert [r["file_name"] for r in read(out)] == ["0001.jpg", "deep/b.png"]  # relative to the folder given

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    assert infer(classifier.ckpt, str(empty), "--output", str(tmp_path / "o2"), *BATCH) == 2
    assert f"no images found in {empty}" in capsys.readouterr().err
    assert infer(classifier.ckpt, str(tmp_path / "nowhere"), "--output", str(tmp_path / "o2")) == 2
    assert "nowhere is no file or folder" in capsys.readouterr().err
    assert infer(classifier.ckpt, str(photos / "*.gif"), "--output", str(tmp_path / "o2")) == 2
    assert "no images found in" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    assert infer(tmp_path / "model.pt", str(photos)) == 2
    assert "model file" in capsys.readouterr().err
    assert infer(classifier.ckpt, str(photos / BROKEN), "--output", str(tmp_path / "o3"), *BATCH) == 1
    assert "none of the 1 images could be read" in capsys.readouterr().err
    assert infer(classifier.ckpt, str(photos), "--score-threshold", "0.5", "--output", str(tmp_path / "o4")) == 2
    assert "--score-threshold applies to detection" in capsys.readouterr().err


def test_find_images_names(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photos)
    everything = sorted([*NAMES, BROKEN])
    assert [i.file_name for i in find_images(["."])] == everything
    # folders side by side: named from their common folder, so same-named files stay apart
    assert [i.file_name for i in find_images(["cam1", "cam2"])] == everything[1:]
    # a pattern: relative to its fixed start; a file: its name; each image once
    assert [i.file_name for i in find_images(["cam2/**/*.png"])] == ["deep/b.png"]
    assert [i.file_name for i in find_images(["a.png"])] == ["a.png"]
    found = find_images(["cam2/**/*.png", "a.png", "cam2/deep/b.png"])  # named from the folder holding all
    assert [i.file_name for i in found] == ["cam2/deep/b.png", "a.png"]
    # the output folder is never read, also where it lies in the folder given
    assert [i.file_name for i in find_images(["."], exclude=["cam2"])] == ["a.png", "cam1/0001.jpg", BROKEN]
    with pytest.raises(ValueError, match="no images found in cam2 outside cam2"):
        find_images(["cam2"], exclude=["cam2"])


def test_inference_data_module_of_each_task(photos: Path) -> None:
    images = find_images([photos])
    for kind, shape in (("detection", (3, 60, 84)), ("segmentation", (3, 60, 84)), ("classification", (3, 24, 24))):
        datamodule = InferenceDataModule(images, kind, ["x"], image_size=24, batch_size=2)  # type: ignore[arg-type]
        first, *_ = datamodule.predict_dataloader()
        assert tuple(first[0][0].shape) == shape  # original images; a classifier's resized and cropped
    with pytest.raises(ValueError, match="unknown task 'keypoints'"):
        InferenceDataModule(images, "keypoints")  # type: ignore[arg-type]
