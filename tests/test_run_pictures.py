"""What a run shows: the four quickstart configs log to TensorBoard and CSV in one folder, with curves of the losses,
the learning rate and the metrics, the validation pictures (read back with TensorBoard's own event reader), and the
evaluation figures after validate, whose CSV tables agree with the metrics logged."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mobiletasks.cli import main
from mobiletasks.tasks import ClassificationTask

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2"]
SMALL += ["--data.init_args.num_workers", "0"]
STEPS = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.check_val_every_n_epoch", "null"]
STEPS += ["--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0", "--trainer.log_every_n_steps", "1"]
PICTURES = 3  # at most: the quickstarts' small val splits hold 2 or more images

# config -> (data arguments, the run's folder name, the figure after validate, the metric on the progress bar)
QUICKSTARTS = {
    "detection": (["--data.init_args.num_images", "12", "--data.init_args.image_size", "96"], "quickstart", "pr_curve"),
    "segmentation": (
        ["--data.init_args.num_images", "10", "--data.init_args.image_size", "96", "--data.init_args.crop_size", "96"],
        "segmentation_quickstart",
        "confusion_matrix",
    ),
    "classification": (
        ["--data.init_args.num_images", "10", "--data.init_args.image_size", "32"],
        "classification_quickstart",
        "confusion_matrix",
    ),
    "attributes": (
        ["--data.init_args.num_images", "10", "--data.init_args.image_size", "32"],
        "attributes_quickstart",
        "attribute_ap",
    ),
}


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def metrics_csv(folder: Path) -> dict[str, float]:
    """The last value of every column of a run's metrics.csv."""
    last: dict[str, float] = {}
    with open(folder / "metrics.csv", newline="") as file:
        for row in csv.DictReader(file):
            last.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return last


def table(path: Path) -> list[list[str]]:
    with open(path, newline="") as file:
        return list(csv.reader(file))


def check_table(figure: str, rows: list[list[str]], metrics: dict[str, float]) -> None:
    """The figure's numbers give the logged metrics: the area under each class's PR curve its AP, the confusion
    matrix's diagonal the IoUs (segmentation) or top-1 (classification), the bars the attribute APs."""
    header, body = rows[0], rows[1:]
    if figure == "pr_curve":
        curves: dict[str, list[float]] = {}
        for name, _, precision in body:
            curves.setdefault(name, []).append(float(precision))
        assert curves and set(curves) == {k.removeprefix("val/ap/") for k in metrics if k.startswith("val/ap/")}
        for name, precisions in curves.items():  # 101 recall points: COCO's AP is their mean
            assert sum(precisions) / len(precisions) == pytest.approx(metrics[f"val/ap/{name}"], abs=1e-4)
    elif figure == "confusion_matrix":
        names = header[1:]
        counts = [[float(v) for v in row[1:]] for row in body]
        assert [row[0] for row in body] == names
        total = sum(map(sum, counts))
        assert total > 0
        if "val/miou" in metrics:
            for c, name in enumerate(names):
                union = sum(counts[c]) + sum(row[c] for row in counts) - counts[c][c]
                if union:
                    assert counts[c][c] / union == pytest.approx(metrics[f"val/iou/{name}"], abs=1e-6)
        else:
            assert sum(counts[c][c] for c in range(len(names))) / total == pytest.approx(metrics["val/top1"], abs=1e-6)
    else:
        assert body and {name: float(ap) for name, ap in body} == pytest.approx(
            {k.removeprefix("val/ap/"): v for k, v in metrics.items() if k.startswith("val/ap/")}, abs=1e-6
        )


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(QUICKSTARTS))
def test_quickstart_shows_curves_pictures_and_figures(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    data, name, figure = QUICKSTARTS[task]
    config = ["--config", str(ROOT / "configs" / task / "quickstart.yaml"), *SMALL, *data]
    assert main(["fit", *config, *STEPS, "--model.init_args.log_val_images", str(PICTURES)]) == 0
    fit_dir = tmp_path / "runs" / name / "version_0"
    found = events(fit_dir)
    pictures = [tag for tag in found.Tags()["images"] if tag.startswith("val/pictures/")]
    expected = min(PICTURES, int(metrics_csv(fit_dir)["val/images"]))  # the first images of the split
    assert expected >= 2 and sorted(pictures) == [f"val/pictures/{k}" for k in range(expected)]
    assert all(len(found.Images(tag)) == 1 for tag in pictures)  # one validation ran
    first = found.Images("val/pictures/0")[0]
    assert first.width > 0 and first.height > 0
    monitor = {"detection": "val/map", "segmentation": "val/miou", "classification": "val/top1"}.get(task, "val/map")
    scalars = set(found.Tags()["scalars"])
    assert {"train/loss", "train/lr", monitor} <= scalars
    assert {"train/loss", "train/lr", monitor} <= set(metrics_csv(fit_dir))  # the CSV beside, same folder
    console = capsys.readouterr()
    said = [line for line in (console.out + console.err).splitlines() if "val after epoch 0 (step 2): " in line]
    assert len(said) == 1 and f"{monitor.partition('/')[2]} " in said[0]  # the console line of the validation
    assert not (tmp_path / "runs" / name / "version_1").exists()  # one folder for both files

    last = fit_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        (last,) = tmp_path.glob(f"runs/{name}/**/last.ckpt")
    assert main(["validate", *config, "--ckpt_path", str(last)]) == 0
    (val_dir,) = [p for p in (tmp_path / "runs" / name).glob("version_*") if p != fit_dir]
    png, rows = val_dir / f"{figure}_val.png", table(val_dir / f"{figure}_val.csv")
    with Image.open(png) as image:
        assert image.format == "PNG" and min(image.size) > 100
    check_table(figure, rows, metrics_csv(val_dir))
    assert f"val/figures/{figure}" in events(val_dir).Tags()["images"]


def test_no_pictures_when_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data, name, _ = QUICKSTARTS["classification"]
    config = ["--config", str(ROOT / "configs" / "classification" / "quickstart.yaml"), *SMALL, *data]
    assert main(["fit", *config, *STEPS, "--model.init_args.log_val_images", "0"]) == 0
    tags = events(tmp_path / "runs" / name / "version_0").Tags()["images"]
    assert not [t for t in tags if t.startswith("val/pictures/")]
    assert "val/figures/confusion_matrix" in tags  # the figures do not depend on the pictures


def test_negative_picture_count_is_refused() -> None:
    with pytest.raises(ValueError, match="log_val_images is -1"):
        ClassificationTask(num_classes=3, log_val_images=-1)


def test_a_run_without_logger_writes_nothing_into_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No log folder, no figures and no results file: Lightning's log folder would be the working directory."""
    monkeypatch.chdir(tmp_path)
    data, _, _ = QUICKSTARTS["detection"]
    config = ["--config", str(ROOT / "configs" / "detection" / "quickstart.yaml"), *SMALL, *data]
    assert main(["fit", *config, *STEPS, "--trainer.logger", "false"]) == 0
    written = {p.name for p in tmp_path.iterdir() if p.is_file()}
    assert not {n for n in written if n.endswith((".json", ".png", ".csv"))}, written
    assert not list(tmp_path.glob("events.out.tfevents.*"))
