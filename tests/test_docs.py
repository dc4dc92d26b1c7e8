"""The Python blocks of the docs run, and print what the docs say they print (``# ...`` lines)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from mobiletasks.registry import BACKBONES

ROOT = Path(__file__).resolve().parents[1]


def blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "docs/backbones.md",
        "docs/detection.md",
        "docs/segmentation.md",
        "docs/classification.md",
        "docs/data.md",
    ],
)
def test_doc_examples(doc: str) -> None:
    namespace: dict[str, object] = {}
    registered = set(BACKBONES.names())
    try:
        for i, code in enumerate(blocks(ROOT / doc)):
            expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{doc} block {i}", "exec"), namespace)
            assert out.getvalue().splitlines() == expected, f"{doc} block {i}"
    finally:
        for name in set(BACKBONES.names()) - registered:
            BACKBONES._builders.pop(name)
