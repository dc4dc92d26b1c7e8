"""``model_summary`` and the ``mobiletasks summary`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torchvision

from mobiletasks import create_model, list_models, model_summary
from mobiletasks.cli import main
from mobiletasks.summary import resized_to


@pytest.mark.parametrize(
    "name", ["mobilenet_v2", "mobilenet_v3_large", "resnet18", "shufflenet_v2_x1_0", "squeezenet1_1"]
)
def test_counter_agrees_with_torchvision_metadata(name: str) -> None:
    """torchvision publishes params and GFLOPS (its MACs) for its weights: our counter must agree."""
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    s = model_summary(torchvision.models.get_model(name), 224)
    assert s.params == meta["num_params"]
    assert s.macs / 1e9 == pytest.approx(meta["_ops"], abs=0.0015)


def test_input_size_and_training_mode_restored() -> None:
    model = create_model("mobilenet_v1").train()
    s = model_summary(model, (128, 160))
    assert s.input_size == (128, 160) and model.training
    with pytest.raises(ValueError, match="input_size"):
        model_summary(model, 0)


@pytest.mark.parametrize("name", list_models())
def test_summary_json_for_every_model(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", name, "--json", "--input-size", "160"]) == 0
    printed = json.loads(capsys.readouterr().out)
    resizes = resized_to(create_model(name)) is not None  # a detector is built for the size asked
    assert printed["kwargs"] == ({"size": 160} if resizes else {})
    expected = model_summary(create_model(name, **printed["kwargs"]), 160)
    assert printed["params"] == expected.params and printed["macs"] == expected.macs
    assert isinstance(printed["params"], int) and isinstance(printed["macs"], int)


def test_key_value_arguments_are_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["summary", "mobilenet_v1", "--input-size", "160", "width_mult=0.5", "num_classes=120", "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["kwargs"] == {"width_mult": 0.5, "num_classes": 120}
    assert printed["macs"] == model_summary(create_model("mobilenet_v1", width_mult=0.5, num_classes=120), 160).macs


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "mobilenet_v2"]) == 0
    out = capsys.readouterr().out
    assert "3,504,872" in out and "3.47M" in out and "300.8M" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "nonet"], "unknown model 'nonet'; known: attribute_classifier, classifier, deeplabv3"),
        (["summary", "mobilenet_v2", "width"], "expected KEY=VALUE"),
        (["summary", "mobilenet_v2", "colour=red"], "unexpected keyword argument 'colour'"),
        (["summary", "mobilenet_v2", "output_stride=12"], "output_stride must be one of"),
    ],
)
def test_errors_are_clear(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "mobilenet_v2" in printed["models"] and "torchvision/resnet18" in printed["backbones"]


def test_console_script() -> None:
    """The installed ``mobiletasks`` script (beside this Python, or on PATH) and ``python -m mobiletasks``."""
    script = Path(sys.executable).with_name("mobiletasks")
    script_cmd = str(script) if script.exists() else shutil.which("mobiletasks")
    assert script_cmd, "the console script is not installed: pip install -e ."
    args = ["summary", "mobilenet_v1", "--input-size", "128", "--json"]
    for cmd in ([script_cmd, *args], [sys.executable, "-m", "mobiletasks", *args]):
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        assert round(json.loads(out)["macs"] / 1e6) == 186  # V1 Table 7, 1.0 MobileNet-128


def test_a_detector_is_counted_at_the_size_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """The SSD detectors resize every image to their ``size``: a count at another size would be mislabelled."""
    model = create_model("ssdlite_mobilenet_v2", num_classes=80)
    with pytest.raises(ValueError, match=r"resizes every image to 320x320.*size=640"):
        model_summary(model, 640)
    assert main(["summary", "ssdlite_mobilenet_v2", "--input-size", "640", "num_classes=80", "--json"]) == 0
    at_640 = json.loads(capsys.readouterr().out)
    assert at_640["kwargs"]["size"] == 640 and at_640["input_size"] == [640, 640]
    at_320 = model_summary(model, 320).macs
    assert 3.8 < at_640["macs"] / at_320 < 4.2  # four times the pixels
