"""``ClassificationWriter``: predictions.json (top-k, attributes) and the contact sheet, driven directly with a fake
trainer and module over several batches, an empty one included."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from mobiletasks.tasks.writers.classification import PADDING, THUMBNAIL, ClassificationWriter, caption_cell

NAMES = ["circle", "square", "triangle"]


def make_batch(colors: list[tuple[float, float, float]], start: int) -> tuple[Tensor, dict[str, Any]]:
    """Solid-color 32 px images, so each cell of the sheet can be recognized."""
    images = torch.tensor(colors, dtype=torch.float32).view(-1, 3, 1, 1).expand(-1, 3, 32, 32).contiguous()
    files = [f"img{start + i}.jpg" for i in range(len(colors))]
    return images, {"file_name": files, "index": torch.arange(start, start + len(colors))}


def run(writer: ClassificationWriter, trainer: Any, module: Any, batches: list[tuple[Tensor, Any, Tensor]]) -> None:
    writer.on_predict_epoch_start(trainer, module)
    for i, (images, targets, prediction) in enumerate(batches):
        writer.write_on_batch_end(trainer, module, prediction, None, (images, targets), i, 0)
    writer.on_predict_epoch_end(trainer, module)


def read_sheet(path: Path) -> np.ndarray:
    with Image.open(path) as sheet:
        return np.array(sheet.convert("RGB"))


RED, GREEN, BLUE, GRAY = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.5, 0.5)


def two_batches(probabilities: Tensor) -> list[tuple[Tensor, Any, Tensor]]:
    first, second = make_batch([RED, GREEN, BLUE], 0), make_batch([GRAY, RED], 3)
    empty = (torch.zeros(0, 3, 0, 0), {"file_name": [], "index": torch.zeros(0, dtype=torch.long)})
    return [(*first, probabilities[:3]), (*empty, probabilities[:0]), (*second, probabilities[3:])]


def test_single_label_json_and_contact_sheet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    probabilities = torch.tensor(
        [[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.05, 0.15, 0.8], [0.3, 0.3001, 0.3999], [0.9, 0.06, 0.04]]
    )
    trainer = SimpleNamespace(datamodule=SimpleNamespace(class_names=NAMES))
    module = SimpleNamespace(multi_label=False)
    writer = ClassificationWriter(str(tmp_path), top_k=5, max_images=4, columns=3)  # top_k clamped to 3
    with caplog.at_level("INFO"):
        run(writer, trainer, module, two_batches(probabilities))

    results = json.loads((tmp_path / "predictions.json").read_text())
    assert [r["file_name"] for r in results] == [f"img{i}.jpg" for i in range(5)]
    for result, p in zip(results, probabilities, strict=True):
        order = p.argsort(descending=True).tolist()
        assert [t["label"] for t in result["top_k"]] == order
        assert [t["name"] for t in result["top_k"]] == [NAMES[c] for c in order]
        assert [t["score"] for t in result["top_k"]] == pytest.approx(p[order].tolist(), abs=1e-4)
    assert str(tmp_path / "contact_sheet.png") in caplog.text

    sheet = read_sheet(tmp_path / "contact_sheet.png")
    cell_height = caption_cell(torch.zeros(3, 32, 32), "x").shape[1]
    assert sheet.shape == (2 * (cell_height + PADDING) + PADDING, 3 * (THUMBNAIL + PADDING) + PADDING, 3)
    assert sheet.std() > 20  # not blank
    # cells in order: red, green, blue, then the gray of the second batch; the fifth image is beyond max_images
    step_y, step_x, middle = cell_height + PADDING, THUMBNAIL + PADDING, PADDING + THUMBNAIL // 2
    centers = [sheet[middle + r * step_y, middle + c * step_x] for r, c in [(0, 0), (0, 1), (0, 2), (1, 0)]]
    assert [tuple(int(v) for v in c) for c in centers] == [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)]
    caption = sheet[PADDING + THUMBNAIL : PADDING + cell_height, PADDING : PADDING + THUMBNAIL]
    assert (caption < 100).any() and (caption == 255).any()  # dark text on white
    assert (sheet[PADDING + cell_height + PADDING :, 2 * (THUMBNAIL + PADDING) :] == 255).all()  # empty last cells


def test_multi_label_probabilities_and_positives(tmp_path: Path) -> None:
    probabilities = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4], [0.6, 0.7, 0.8], [0.0, 1.0, 0.49], [1, 1, 1.0]])
    trainer = SimpleNamespace(datamodule=SimpleNamespace(class_names=["smiling", "bald"]))  # the third is unnamed
    module = SimpleNamespace(multi_label=True)
    run(ClassificationWriter(str(tmp_path), threshold=0.5, columns=8), trainer, module, two_batches(probabilities))

    results = json.loads((tmp_path / "predictions.json").read_text())
    names = ["smiling", "bald", "2"]
    assert [r["positive"] for r in results] == [
        ["smiling", "2"],  # 0.5 is at the threshold: positive
        [],
        ["smiling", "bald", "2"],
        ["bald"],
        ["smiling", "bald", "2"],
    ]
    for result, p in zip(results, probabilities, strict=True):
        assert list(result["probabilities"]) == names
        assert list(result["probabilities"].values()) == pytest.approx(p.tolist(), abs=1e-4)
    sheet = read_sheet(tmp_path / "contact_sheet.png")
    cell_height = caption_cell(torch.zeros(3, 32, 32), "x").shape[1]
    assert sheet.shape == (cell_height + 2 * PADDING, 5 * (THUMBNAIL + PADDING) + PADDING, 3)  # one row of 5


def test_missing_class_names_and_no_sheet(tmp_path: Path) -> None:
    images, targets = make_batch([RED, GREEN], 0)
    probabilities = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    writer = ClassificationWriter(str(tmp_path), top_k=1, max_images=0)
    run(writer, SimpleNamespace(), SimpleNamespace(multi_label=False), [(images, targets, probabilities)])
    results = json.loads((tmp_path / "predictions.json").read_text())
    assert [r["top_k"] for r in results] == [
        [{"label": 1, "name": "1", "score": 0.8}],
        [{"label": 0, "name": "0", "score": 0.6}],
    ]
    assert not (tmp_path / "contact_sheet.png").exists()


def test_caption_is_cut_to_fit_but_keeps_the_score() -> None:
    cell = caption_cell(torch.ones(3, 20, 20), "an extremely long class name that cannot fit " * 3, "0.93")
    assert cell.shape[2] == THUMBNAIL and cell.dtype == torch.uint8
    strip = cell[:, THUMBNAIL:]
    assert (strip[:, :, -2:] == 255).all()  # the text stops before the right edge...
    assert (strip[:, :, -20:-2] < 100).any()  # ...but reaches near it: the score is drawn after the cut name


def test_writer_errors(tmp_path: Path) -> None:
    images, targets = make_batch([RED, GREEN], 0)
    writer = ClassificationWriter(str(tmp_path))
    with pytest.raises(ValueError, match=r"batch 3 is \(3, 2\) for 2 images; predict_step must return"):
        writer.write_on_batch_end(None, None, torch.zeros(3, 2), None, (images, targets), 3, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold is 2"):
        ClassificationWriter(threshold=2)
    with pytest.raises(ValueError, match="top_k is 0"):
        ClassificationWriter(top_k=0)
