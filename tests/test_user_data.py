"""The failure kinds users hit with their own files (converter-made COCO files, string ids, odd split sizes,
binary masks, command-line settings, folders of photos), each with the right value, in every task it can reach."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from data_trees import DataTrees
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from user_data import (
    ROOT,
    binary_person_mask,
    coco_copy,
    ground_truth_results,
    needs_data,
    person_ids,
    voc_copy,
)

from mobiletasks.cli import main
from mobiletasks.data import COCODetection, COCODetectionDataModule
from mobiletasks.evaluation.coco import COCOEvaluator, evaluate_results_file, load_coco
from mobiletasks.tasks import AttributeTask, ClassificationTask, DetectionTask, SegmentationTask

CONFIGS = ROOT / "configs"
SMALL = ["--data.init_args.num_workers", "0", "--trainer.num_sanity_val_steps", "0"]


def cli(command: str, config: str, *args: str) -> int:
    return main([command, "--config", str(CONFIGS / config), *SMALL, *args])


def gt_predictions(dataset: COCODetection) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, Any]]]:
    """Every image's ground truth as a prediction (score 1) and its target."""
    preds, targets = [], []
    for record in dataset.records:
        assert record.boxes is not None and record.labels is not None
        n = len(record.boxes)
        preds.append(
            {
                "boxes": torch.from_numpy(record.boxes),
                "labels": torch.from_numpy(record.labels),
                "scores": torch.ones(n),
            }
        )
        targets.append({"image_id": record.image_id})
    return preds, targets


# ------------------------------------------------------------------ 1a: COCO files converters leave incomplete


def drop(*keys: str, where: str = "annotations") -> Any:
    def edit(data: dict[str, Any]) -> None:
        if where == "top":
            for key in keys:
                data.pop(key, None)
        for entry in data.get(where, []) if where != "top" else []:
            for key in keys:
                entry.pop(key, None)

    return edit


@needs_data
@pytest.mark.parametrize(
    "edit",
    [
        drop("area"),
        drop("iscrowd"),
        drop("id"),
        drop("info", "licenses", where="top"),
        drop("segmentation"),
        drop("width", "height", where="images"),
    ],
    ids=["no-area", "no-iscrowd", "no-annotation-id", "no-info-licenses", "no-segmentation", "no-image-size"],
)
def test_incomplete_coco_file_scores_ground_truth_as_one(tmp_path: Path, edit: Any) -> None:
    images, annotations = coco_copy(tmp_path, 4, edit)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(ground_truth_results(annotations)))
    assert evaluate_results_file(annotations, results)["map"] == pytest.approx(1.0)  # `mobiletasks evaluate`
    dataset = COCODetection(images, annotations)  # what fit's validation scores with
    evaluator = COCODetectionDataModule(tmp_path, "images", "instances.json", "images", "instances.json").evaluator()
    evaluator.update(*gt_predictions(dataset))
    assert evaluator.compute()["map"] == pytest.approx(1.0)


@needs_data
def test_annotation_ids_of_zero_are_renumbered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """pycocotools takes a match with annotation id 0 for no match: such a box could never be found."""

    def zero_ids(data: dict[str, Any]) -> None:
        for ann in data["annotations"]:
            ann["id"] = 0

    _, annotations = coco_copy(tmp_path, 4, zero_ids)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(ground_truth_results(annotations)))
    with caplog.at_level(logging.WARNING):
        assert evaluate_results_file(annotations, results)["map"] == pytest.approx(1.0)
    assert "renumbered 1.." in caplog.text
    ids = [a["id"] for a in load_coco(annotations).dataset["annotations"]]
    assert ids == list(range(1, len(ids) + 1))


@needs_data
def test_missing_area_is_cocos_area(tmp_path: Path) -> None:
    """The segmentation's area where there is one (as COCO defines it), else the box's."""
    polygon = [[10.0, 10.0, 50.0, 10.0, 10.0, 40.0]]  # a right triangle of 40 x 30: 600 pixels

    def edit(data: dict[str, Any]) -> None:
        for ann in data["annotations"]:
            ann.pop("area")
        data["annotations"][0]["segmentation"] = polygon
        data["annotations"][1].pop("segmentation")

    _, annotations = coco_copy(tmp_path, 2, edit)
    anns = load_coco(annotations).dataset["annotations"]
    image = next(im for im in json.loads(annotations.read_text())["images"] if im["id"] == anns[0]["image_id"])
    expected = float(
        mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygon, image["height"], image["width"])))
    )
    assert anns[0]["area"] == expected and abs(expected - 600) < 60
    assert anns[1]["area"] == pytest.approx(anns[1]["bbox"][2] * anns[1]["bbox"][3])


@needs_data
def test_no_info_works_with_pycocotools_that_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pycocotools 2.0.9 and 2.0.10 (which pyproject admits) read ``dataset['info']`` in ``loadRes``."""
    load_res = COCO.loadRes

    def strict_load_res(self: COCO, results: Any) -> COCO:
        _ = self.dataset["info"]  # KeyError: 'info' under 2.0.10 for a file without it
        return load_res(self, results)

    monkeypatch.setattr(COCO, "loadRes", strict_load_res)
    _, annotations = coco_copy(tmp_path, 4, drop("info", "licenses", where="top"))
    results = tmp_path / "results.json"
    results.write_text(json.dumps(ground_truth_results(annotations)))
    assert evaluate_results_file(annotations, results)["map"] == pytest.approx(1.0)
    gt = COCO()  # a user's own index of such a file, given to the evaluator
    gt.dataset = json.loads(annotations.read_text())
    gt.createIndex()
    evaluator = COCOEvaluator(gt)
    box = torch.tensor([ground_truth_results(annotations)[0]["bbox"]], dtype=torch.float32)
    box[:, 2:] += box[:, :2]
    label = evaluator.category_ids.tolist().index(ground_truth_results(annotations)[0]["category_id"])
    pred = {"boxes": box, "scores": torch.ones(1), "labels": torch.tensor([label])}
    evaluator.update([pred], [{"image_id": ground_truth_results(annotations)[0]["image_id"]}])
    assert math.isfinite(evaluator.compute()["map"])


@needs_data
def test_incomplete_coco_file_trains_and_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    coco_copy(tmp_path / "coco", 4, drop("area", "iscrowd"))
    data = ["--data.init_args.root", "coco", "--data.init_args.train_images", "images"]
    data += ["--data.init_args.train_annotations", "instances.json", "--data.init_args.val_images", "images"]
    data += ["--data.init_args.val_annotations", "instances.json", "--data.init_args.image_size", "128"]
    data += ["--data.init_args.batch_size", "2", "--trainer.fast_dev_run", "1"]
    assert cli("fit", "detection/ssdlite_mobilenet_v2_coco.yaml", *data) == 0


# ------------------------------------------------------------------ 1b: image ids that are strings


def string_ids(prefix: str) -> Any:
    def edit(data: dict[str, Any]) -> None:
        for image in data["images"]:
            image["id"] = f"{prefix}{image['id']:012d}"
        for ann in data["annotations"]:
            ann["image_id"] = f"{prefix}{ann['image_id']:012d}"

    return edit


@needs_data
@pytest.mark.parametrize("prefix", ["img_", ""])
def test_string_image_ids_end_to_end(prefix: str, tmp_path: Path) -> None:
    images, annotations = coco_copy(tmp_path, 4, string_ids(prefix))
    dataset = COCODetection(images, annotations)
    assert [r.image_id for r in dataset.records] == sorted(
        json.loads(annotations.read_text())["images"][i]["id"] for i in range(4)
    )
    evaluator = COCOEvaluator(dataset.coco)
    evaluator.update(*gt_predictions(dataset))
    assert evaluator.compute()["map"] == pytest.approx(1.0)
    assert all(isinstance(r["image_id"], str) for r in evaluator.results())  # the original ids, not ints
    results = tmp_path / "results.json"
    evaluator.write_results(results)
    assert evaluate_results_file(annotations, results)["map"] == pytest.approx(1.0)
    as_ints = [{**r, "image_id": int(r["image_id"].removeprefix(prefix))} for r in evaluator.results()]
    results.write_text(json.dumps(as_ints))
    first = min(r["image_id"] for r in as_ints)  # 139 in coco128's val2017
    with pytest.raises(ValueError, match=rf"names image_id {first} \(int\).*like '[a-z_]*{first:012d}' \(str\)"):
        evaluate_results_file(annotations, results)


@needs_data
@pytest.mark.parametrize("bad", [139.5, None, True, [139], ""], ids=["float", "null", "bool", "list", "empty"])
def test_image_ids_of_other_types_are_refused_at_setup(bad: Any, tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["images"][0]["id"] = bad

    images, annotations = coco_copy(tmp_path, 2, edit)
    with pytest.raises(
        ValueError, match=r"instances\.json: entry 0 of 'images' has id .*\((float|NoneType|bool|list|str)\)"
    ):
        COCODetection(images, annotations)


@needs_data
def test_string_ids_fit_validate_predict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The results of validation and prediction carry the file's own (string) ids."""
    monkeypatch.chdir(tmp_path)
    coco_copy(tmp_path / "coco", 4, string_ids("img_"))
    data = ["--data.init_args.root", "coco", "--data.init_args.train_images", "images"]
    data += ["--data.init_args.train_annotations", "instances.json", "--data.init_args.val_images", "images"]
    data += ["--data.init_args.val_annotations", "instances.json", "--data.init_args.image_size", "128"]
    data += ["--data.init_args.batch_size", "2"]
    steps = ["--trainer.max_steps", "1", "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_val_batches", "1"]
    assert cli("fit", "detection/ssdlite_mobilenet_v2_coco.yaml", *data, *steps) == 0
    (last,) = tmp_path.glob("runs/**/last.ckpt")
    predict = ["--ckpt_path", str(last), "--trainer.limit_predict_batches", "1"]
    assert cli("predict", "detection/ssdlite_mobilenet_v2_coco.yaml", *data, *predict) == 0
    (predictions,) = tmp_path.glob("runs/**/predictions.json")
    records = json.loads(predictions.read_text())
    assert records and all(r["image_id"].startswith("img_") for r in records)


# ------------------------------------------------------------------ 1c: a training batch of one image


@pytest.mark.parametrize(
    ("task", "images", "batch"),
    [
        (lambda: DetectionTask("ssdlite_mobilenet_v2", num_classes=3, image_size=320), [torch.rand(3, 60, 80)], None),
        (
            lambda: SegmentationTask("deeplabv3_mobilenet_v2", num_classes=3, model_kwargs={"aspp": True}),
            torch.rand(1, 3, 64, 64),
            {"mask": torch.randint(0, 3, (64, 64))},
        ),
        (
            lambda: ClassificationTask("mobilenet_v1", num_classes=3),
            torch.rand(1, 3, 32, 32),
            {"labels": torch.tensor([1])},
        ),
        (
            lambda: AttributeTask("mobilenet_v1", num_classes=3),
            torch.rand(1, 3, 32, 32),
            {"labels": torch.tensor([[1.0, 0, 1]])},
        ),
    ],
    ids=["detection", "segmentation", "classification", "attributes"],
)
def test_training_batch_of_one_image(task: Any, images: Any, batch: Any) -> None:
    """One image gives BatchNorm one value per channel on 1x1 maps: those layers use running statistics."""
    module = task().train()
    if isinstance(module, DetectionTask):
        targets: Any = [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 30.0]]), "labels": torch.tensor([1])}]
    elif isinstance(module, SegmentationTask):
        targets = [batch]
    else:
        targets = batch
    before = {n: b.clone() for n, b in module.named_buffers() if "running" in n}
    loss, _ = module.training_loss((images, targets))
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    assert module.batchnorm_guard.count > 0
    assert all(m.training for m in module.modules())  # every layer back in training mode
    changed = [n for n, b in module.named_buffers() if "running" in n and not torch.equal(b, before[n])]
    assert changed  # the other BatchNorm layers still learn their statistics


@needs_data
def test_three_images_batch_two_trains_an_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's example: the epoch's last batch holds one image (ssdlite_mobilenet_v2 at 320)."""
    monkeypatch.chdir(tmp_path)
    coco_copy(tmp_path / "coco", 3, split="train2017")
    data = ["--data.init_args.root", "coco", "--data.init_args.train_images", "images"]
    data += ["--data.init_args.train_annotations", "instances.json", "--data.init_args.val_images", "images"]
    data += ["--data.init_args.val_annotations", "instances.json", "--data.init_args.image_size", "320"]
    data += ["--data.init_args.batch_size", "2", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "0"]
    assert cli("fit", "detection/ssdlite_mobilenet_v2_coco.yaml", *data) == 0
    (last,) = tmp_path.glob("runs/**/last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 2  # both batches trained


# ------------------------------------------------------------------ 1d: a segmentation batch with no counted pixel


def test_segmentation_batch_without_counted_pixel_has_loss_zero() -> None:
    task = SegmentationTask("deeplabv3_mobilenet_v2", num_classes=3, model_kwargs={"aspp": False}).train()
    images = torch.rand(2, 3, 48, 48)
    ignored = [{"mask": torch.full((48, 48), 255)} for _ in range(2)]
    loss, _ = task.training_loss((images, ignored))
    assert float(loss) == 0.0
    loss.backward()  # a zero gradient, not NaN
    assert all(torch.isfinite(p.grad).all() for p in task.parameters() if p.grad is not None)
    logits, masks = torch.randn(2, 3, 48, 48), torch.randint(0, 3, (2, 48, 48))
    masks[:, :10] = 255
    reference = torch.nn.functional.cross_entropy(logits, masks, ignore_index=255)  # the mean, as before
    assert torch.allclose(task.loss(logits, masks), reference, atol=1e-6)


# ------------------------------------------------------------------ 1e: binary masks saved as 0/255


@needs_data
def test_binary_masks_are_refused_at_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = voc_copy(tmp_path, person_ids(), binary_person_mask)
    data = ["--data.init_args.root", str(root), "--data.init_args.train_split", "val", "--data.init_args.val_split"]
    data += ["val", "--data.init_args.classes", "[person]", "--data.init_args.crop_size", "64"]
    data += ["--data.init_args.batch_size", "2", "--trainer.fast_dev_run", "1"]
    with pytest.raises(
        ValueError, match=r"SegmentationClass hold only the values 0 and 255.*255 means 'ignore'.*mask // 255"
    ):
        cli("fit", "segmentation/deeplabv3_mobilenet_v2_voc.yaml", *data)
    assert not list(tmp_path.glob("runs/**/*.ckpt"))


@needs_data
def test_binary_masks_mapped_by_a_class_map_train_and_score_the_object(tmp_path: Path) -> None:
    from mobiletasks.data import COCOSegmentationDataModule

    root = voc_copy(tmp_path, person_ids(), binary_person_mask) / "VOC2012"
    (root / "classes.json").write_text(json.dumps({"0": "background", "255": "person"}))
    dm = COCOSegmentationDataModule(
        root,
        "JPEGImages",
        "SegmentationClass",
        "JPEGImages",
        "SegmentationClass",
        classes_json="classes.json",
        crop_size=64,
        num_workers=0,
    )
    dataset = dm.dataset("val")
    assert dm.class_names == ["background", "person"]
    sample = dataset[0]
    assert sample is not None and set(sample[1]["mask"].unique().tolist()) == {0, 1}
    evaluator = dm.evaluator("val")
    evaluator.update(sample[1]["mask"][None], sample[1]["mask"][None])
    metrics = evaluator.compute()
    assert metrics["iou/person"] == 1.0 and metrics["classes_missing"] == 0.0


def test_named_class_that_never_occurs_shows_as_missing() -> None:
    from mobiletasks.evaluation import SegmentationEvaluator, VOCEvaluator

    evaluator = SegmentationEvaluator(2, ["background", "person"])
    evaluator.update(torch.zeros(1, 8, 8, dtype=torch.long), torch.zeros(1, 8, 8, dtype=torch.long))
    metrics = evaluator.compute()
    assert metrics["iou/person"] == -1.0 and metrics["classes_missing"] == 1.0
    voc = VOCEvaluator(["person", "dog"])
    box = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}
    voc.update([{**box, "scores": torch.ones(1)}], [box])
    assert voc.compute()["ap/dog"] == -1.0 and voc.compute()["classes_missing"] == 1.0


# ------------------------------------------------------------------ 1f: settings stated for validate/test/predict


@pytest.fixture(scope="module")
def detection_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The detection quickstart trained 2 steps with nms_thresh 0.3 stated at fit; its folder (holding runs/)."""
    folder = tmp_path_factory.mktemp("detection_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        args = ["--data.init_args.num_images", "12", "--data.init_args.batch_size", "4", "--trainer.max_epochs", "1"]
        args += ["--trainer.limit_train_batches", "2", "--trainer.check_val_every_n_epoch", "1"]
        args += ["--model.init_args.nms_thresh", "0.3"]
        assert cli("fit", "detection/quickstart.yaml", *args) == 0
    return folder


def stated_settings(folder: Path, *args: str) -> dict[str, Any]:
    """The task settings a ``predict`` would run with (the CLI parsed and instantiated, nothing run)."""
    import lightning as L

    from mobiletasks.cli.lightning import MobileTasksCLI

    class Parse(MobileTasksCLI):
        def _run_subcommand(self, subcommand: str) -> None:
            pass

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        config = ["--config", str(CONFIGS / "detection/quickstart.yaml"), "--data.init_args.num_images", "12"]
        cli = Parse(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                    auto_configure_optimizers=False, args=["predict", *config, *args])  # fmt: skip
    return dict(cli.model.hparams)


def test_stated_settings_win_over_the_checkpoint(detection_run: Path) -> None:
    (last,) = detection_run.glob("runs/**/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)["hyper_parameters"]
    assert checkpoint["nms_thresh"] == 0.3 and checkpoint["score_thresh"] == 0.01
    stated = stated_settings(detection_run, "--ckpt_path", str(last), "--model.init_args.score_thresh", "0.5")
    assert stated["score_thresh"] == 0.5  # stated on the command line
    assert stated["nms_thresh"] == 0.3  # not stated: the checkpoint's
    assert stated["warmup_steps"] == 50  # stated in the config


def test_predict_runs_with_the_stated_threshold(detection_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(detection_run)
    (last,) = detection_run.glob("runs/**/last.ckpt")
    args = ["--data.init_args.num_images", "12", "--ckpt_path", str(last), "--trainer.limit_predict_batches", "2"]
    output = ["--trainer.callbacks+=mobiletasks.tasks.DetectionWriter", "--trainer.callbacks.output_dir", "low"]
    assert cli("predict", "detection/quickstart.yaml", *args, *output, "--model.init_args.score_thresh", "0.02") == 0
    scores = [r["score"] for r in json.loads((detection_run / "low" / "predictions.json").read_text())]
    assert scores and min(scores) < max(scores)  # the control: scores to cut between
    threshold = (min(scores) + max(scores)) / 2
    output[-1] = "high"
    assert (
        cli("predict", "detection/quickstart.yaml", *args, *output, "--model.init_args.score_thresh", str(threshold))
        == 0
    )
    high = [r["score"] for r in json.loads((detection_run / "high" / "predictions.json").read_text())]
    assert all(s >= threshold - 1e-4 for s in high) and len(high) < len(scores)


def test_settings_the_weights_do_not_fit_are_refused(
    detection_run: Path, trees: DataTrees, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(detection_run)
    (last,) = detection_run.glob("runs/**/last.ckpt")
    args = ["--data.init_args.num_images", "12", "--ckpt_path", str(last)]
    with pytest.raises(
        ValueError,
        match=r"does not fit the model.*model_kwargs=\{'width_mult': 1\.0\} \(the checkpoint: \{'width_mult': 0\.5\}\)",
    ):
        cli("validate", "detection/quickstart.yaml", *args, "--model.init_args.model_kwargs", "{width_mult: 1.0}")
    coco = ["--data.init_args.root", str(trees.coco128), "--data.init_args.train_images", "images/train2017"]
    coco += ["--data.init_args.val_images", "images/val2017", "--ckpt_path", str(last)]
    # 80 classes linked from the data module, 5 in the checkpoint
    with pytest.raises(ValueError, match=r"does not fit the model.*num_classes=80 \(the checkpoint: 5\)") as err:
        cli("validate", "detection/ssdlite_mobilenet_v2_coco.yaml", *coco)
    assert "warmup_steps" not in str(err.value)  # it differs too, but does not shape the weights


@needs_data
def test_validate_runs_multiscale_when_stated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    voc = ["--data.init_args.root", str(voc_copy(tmp_path, person_ids(2))), "--data.init_args.train_split", "val"]
    voc += ["--data.init_args.crop_size", "64", "--data.init_args.batch_size", "2"]
    steps = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "1"]
    assert cli("fit", "segmentation/deeplabv3_mobilenet_v2_voc.yaml", *voc, *steps) == 0
    (last,) = tmp_path.glob("runs/**/last.ckpt")
    stated = [
        "--ckpt_path",
        str(last),
        "--model.init_args.multiscale",
        "true",
        "--model.init_args.scales",
        "[0.5, 1.0]",
    ]
    with caplog.at_level(logging.INFO):
        assert (
            cli(
                "validate",
                "segmentation/deeplabv3_mobilenet_v2_voc.yaml",
                *voc,
                *stated,
                "--trainer.limit_val_batches",
                "1",
            )
            == 0
        )
    assert "multiscale=True (the checkpoint: False)" in caplog.text


# ------------------------------------------------------------------ 1g: a folder of photos with repeated names


@pytest.fixture(scope="module")
def photos(trees: DataTrees, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cam1/0001.jpg``, ``cam2/0001.jpg`` (two different photos) and ``cam2/0001.png`` (a third)."""
    folder = tmp_path_factory.mktemp("photos")
    sources = sorted((trees.coco128 / "images" / "val2017").glob("*.jpg"))[:3]
    for source, name in zip(sources, ("cam1/0001.jpg", "cam2/0001.jpg", "cam2/0001.png"), strict=True):
        (folder / name).parent.mkdir(exist_ok=True)
        Image.open(source).convert("RGB").resize((96, 72)).save(folder / name)
    return folder


def quick_fit(folder: Path, config: str, *args: str) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        assert cli("fit", config, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", *args) == 0
    (last,) = folder.glob("runs/**/last.ckpt")
    return last


def predict_photos(folder: Path, config: str, checkpoint: Path, photos: Path, *args: str) -> Path:
    out = folder / "out"
    writer = ["--trainer.callbacks.output_dir", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        assert (
            cli(
                "predict",
                config,
                "--ckpt_path",
                str(checkpoint),
                "--data.init_args.predict_images",
                str(photos),
                *writer,
                *args,
            )
            == 0
        )
    return out


def test_detection_predicts_one_picture_per_photo(detection_run: Path, photos: Path) -> None:
    (last,) = detection_run.glob("runs/**/last.ckpt")
    out = predict_photos(detection_run, "detection/quickstart.yaml", last, photos, "--data.init_args.num_images", "12")
    pictures = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.png"))
    assert pictures == ["cam1/0001.png", "cam2/0001.png", "cam2/0001.png.png"]
    assert {r["file_name"] for r in json.loads((out / "predictions.json").read_text())} == {
        "cam1/0001.jpg",
        "cam2/0001.jpg",
        "cam2/0001.png",
    }


def test_segmentation_predicts_one_mask_per_photo(tmp_path: Path, photos: Path) -> None:
    config = "segmentation/quickstart.yaml"
    data = [
        "--data.init_args.num_images",
        "10",
        "--data.init_args.image_size",
        "64",
        "--data.init_args.crop_size",
        "64",
    ]
    last = quick_fit(tmp_path, config, *data, "--data.init_args.batch_size", "2")
    out = predict_photos(tmp_path, config, last, photos, *data)
    masks = sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png"))
    assert masks == ["cam1/0001.png", "cam2/0001.png", "cam2/0001.png.png"]
    records = json.loads((out / "predictions.json").read_text())
    assert sorted(r["file_name"] for r in records) == ["cam1/0001.jpg", "cam2/0001.jpg", "cam2/0001.png"]
    assert sorted(r["mask"] for r in records) == [f"masks/{m}" for m in masks]


def test_classification_names_every_photo(tmp_path: Path, photos: Path) -> None:
    config = "classification/quickstart.yaml"
    data = [
        "--data.init_args.num_images",
        "20",
        "--data.init_args.image_size",
        "32",
        "--data.init_args.batch_size",
        "4",
    ]
    last = quick_fit(tmp_path, config, *data)
    out = predict_photos(tmp_path, config, last, photos, *data)
    records = json.loads((out / "predictions.json").read_text())
    assert sorted(r["file_name"] for r in records) == ["cam1/0001.jpg", "cam2/0001.jpg", "cam2/0001.png"]


# ------------------------------------------------------------------ 3: unreadable images never quietly leave a metric


def test_unreadable_validation_image_fails_unless_skipping_is_chosen(
    detection_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copytree(detection_run / "data" / "shapes", tmp_path / "shapes")
    val = sorted((tmp_path / "shapes" / "images" / "val").glob("*.jpg"))
    val[0].write_bytes(val[0].read_bytes()[:200])  # truncated
    monkeypatch.chdir(tmp_path)
    (last,) = detection_run.glob("runs/**/last.ckpt")
    args = ["--data.init_args.root", "shapes", "--data.init_args.num_images", "12", "--ckpt_path", str(last)]
    with pytest.raises(
        ValueError, match=rf"val: 1 of {len(val)} images could not be read.*{val[0].name}.*skip_unreadable"
    ):
        cli("validate", "detection/quickstart.yaml", *args)
    with caplog.at_level(logging.WARNING):
        assert cli("validate", "detection/quickstart.yaml", *args, "--model.init_args.skip_unreadable", "true") == 0
    assert f"scored {len(val) - 1} of {len(val)} images" in caplog.text
    with caplog.at_level(logging.WARNING):
        assert cli("predict", "detection/quickstart.yaml", *args, "--trainer.callbacks.output_dir", "out") == 0
    assert "1 images could not be read and have no prediction" in caplog.text


def test_every_split_logs_the_images_it_scored(detection_run: Path) -> None:
    (metrics,) = detection_run.glob("runs/**/metrics.csv")
    header, *rows = metrics.read_text().splitlines()
    column = header.split(",").index("val/images")
    scored = {float(row.split(",")[column]) for row in rows if row.split(",")[column]}
    assert scored == {float(len(list((detection_run / "data" / "shapes" / "images" / "val").glob("*.jpg"))))}


def test_teacher_settings_a_checkpoint_would_ignore_are_refused(tmp_path: Path) -> None:
    from mobiletasks.tasks.distill import load_teacher

    checkpoint = tmp_path / "teacher.ckpt"
    torch.save({"hyper_parameters": {"model": "mobilenet_v1", "num_classes": 3}, "state_dict": {}}, checkpoint)
    for stated in ({"weights": "other.pth"}, {"kwargs": {"width_mult": 0.5}}):
        with pytest.raises(ValueError, match=r"teacher .*teacher\.ckpt is a checkpoint.*would not be used"):
            load_teacher(str(checkpoint), **stated)  # type: ignore[arg-type]
