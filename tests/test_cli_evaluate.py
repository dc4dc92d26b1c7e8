"""``mobiletasks evaluate``: pycocotools' numbers for a results file, in-process and as a command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval_coco import annotations_file, perturbed_results, pycocotools_stats, requires_coco128, tiny_coco

from mobiletasks.cli import main
from mobiletasks.evaluation.coco import STAT_NAMES

Perturbed = tuple[Path, Path, dict[str, float]]


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory: pytest.TempPathFactory) -> Perturbed:
    """val2017's annotations, a perturbed results file, and pycocotools' stats of it."""
    annotations = annotations_file("val2017")
    results = tmp_path_factory.mktemp("evaluate") / "results.json"
    results.write_text(json.dumps(perturbed_results(annotations, seed=1)))
    return annotations, results, pycocotools_stats(annotations, results)


@requires_coco128
def test_json_equals_pycocotools(perturbed: Perturbed, capsys: pytest.CaptureFixture[str]) -> None:
    annotations, results, expected = perturbed
    assert main(["evaluate", "--annotations", str(annotations), "--results", str(results), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed)[: len(STAT_NAMES)] == list(STAT_NAMES)  # then ap/<category>, as pycocotools per category
    assert all(key.startswith("ap/") for key in list(printed)[len(STAT_NAMES) :])
    assert printed == expected
    assert 0.2 < printed["map"] < 0.9


@requires_coco128
def test_python_m_mobiletasks(perturbed: Perturbed) -> None:
    annotations, results, expected = perturbed
    args = ["evaluate", "--annotations", str(annotations), "--results", str(results), "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "mobiletasks", *args], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out) == expected


@requires_coco128
def test_table(perturbed: Perturbed, capsys: pytest.CaptureFixture[str]) -> None:
    annotations, results, expected = perturbed
    assert main(["evaluate", "--annotations", str(annotations), "--results", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[: len(STAT_NAMES)]] == list(STAT_NAMES)
    assert lines[0].split()[1] == f"{expected['map']:.4f}" and "IoU=0.50:0.95" in lines[0]
    assert lines[1].split()[1] == f"{expected['map_50']:.4f}" and "IoU=0.50 " in lines[1]
    # then a blank line, a heading, and "ap/<category>  AP" per category with ground truth (names may hold spaces)
    assert lines[len(STAT_NAMES)] == "" and lines[len(STAT_NAMES) + 1].startswith("per category, AP @ IoU=0.50:0.95")
    per_category = dict(line.rsplit(None, 1) for line in lines[len(STAT_NAMES) + 2 :])
    assert per_category == {k: f"{v:.4f}" for k, v in expected.items() if k.startswith("ap/")}


@pytest.mark.parametrize(
    ("results", "message"),
    [
        (None, r"results file .*missing\.json does not exist"),
        ("{oops", r"results file .*results\.json is not valid json"),
        ('[{"image_id": 77, "category_id": 5, "bbox": [0, 0, 1, 1], "score": 1}]', r"names image_id 77 \(int\), which"),
        ('[{"image_id": 1, "category_id": 6, "bbox": [0, 0, 1, 1], "score": 1}]', r"names category_id 6 \(int\)"),
    ],
)
def test_bad_results_file(
    results: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = tmp_path / "gt.json"
    annotations.write_text(json.dumps(tiny_coco().dataset))
    path = tmp_path / ("missing.json" if results is None else "results.json")
    if results is not None:
        path.write_text(results)
    assert main(["evaluate", "--annotations", str(annotations), "--results", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("mobiletasks evaluate: error: ")
    assert "Traceback" not in captured.err
    assert re.search(message, captured.err), captured.err


def test_bad_annotations_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "results.json").write_text("[]")
    argv = ["evaluate", "--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "results.json")]
    assert main(argv) == 2
    assert re.search(r"annotations file .*gt\.json does not exist", capsys.readouterr().err)


def test_missing_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--annotations", "gt.json"])
    assert exc.value.code == 2
    assert "--results" in capsys.readouterr().err
