"""The package's layers (docs/architecture.md): no module imports a layer above its own, or another module's
private names. Lazy imports inside functions count too: they are imports all the same."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mobiletasks"

# rank of each top-level unit: a module may import its own unit and units of a lower rank
LAYERS: dict[str, int] = {
    "common": 0,
    "compat": 0,
    "preprocessing": 1,
    "contracts": 1,
    "registry": 1,
    "weights": 1,
    "optimize": 1,
    "summary": 1,
    "backbones": 2,
    "factory": 3,  # create_backbone and create_model: look builders up and return backbones
    "heads": 3,
    "models": 4,
    "evaluation": 4,
    "data": 5,
    "tasks": 6,
    "deploy": 7,
    "cli": 8,
    "__init__": 9,
    "__main__": 9,
}
# the root modules of rank 1 are one unit: the core that every layer stands on
CORE = {name for name, rank in LAYERS.items() if rank == 1}
# inside mobiletasks.data: the core modules, then the transforms, then the datasets by task, then their users
DATA_LAYERS: dict[str, int] = {
    **dict.fromkeys(("__init__",), 9),
    **dict.fromkeys(("base", "collate", "files", "io", "samplers", "skips"), 0),
    "transforms": 1,
    "detection": 2,
    "classification": 2,
    "segmentation": 3,  # reads VOC's and COCO's annotation files through data.detection
    "synthetic": 4,  # its data modules are the COCO, VOC, ImageFolder and CelebA ones over generated files
    "check": 4,
    "inference": 4,
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = ("mobiletasks", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str, list[str]]]:
    """``(line, absolute module, imported names)`` of every import of the package in a file."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "mobiletasks":
                found.append((node.lineno, target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "mobiletasks"]
    return found


def unit(module: str) -> tuple[str, str | None]:
    """The layer of a module and, inside ``mobiletasks.data``, its data unit."""
    parts = module.split(".")[1:] or ["__init__"]
    if parts[0] == "data":
        return "data", (parts[1] if len(parts) > 1 else "__init__")
    return parts[0], None


def violations(path: Path, root: Path = PACKAGE) -> list[str]:
    """What is wrong with the imports of one file: an upward import, or a private name of another module."""
    source = module_name(path, root)
    layer, data_unit = unit(source)
    problems = []
    for line, target, names in imports(path, root):
        where = f"{path.relative_to(root.parent)}:{line}"
        to_layer, to_data_unit = unit(target)
        if to_layer not in LAYERS:
            problems.append(f"{where}: {target} belongs to no layer; add it to LAYERS and docs/architecture.md")
            continue
        same = to_layer == layer or (layer in CORE and to_layer in CORE)
        if not same and LAYERS[to_layer] >= LAYERS[layer]:
            problems.append(f"{where}: {source} ({layer}) imports {target} ({to_layer}), a layer not below it")
        if layer == to_layer == "data" and data_unit != to_data_unit:
            assert data_unit is not None and to_data_unit is not None
            rank, to_rank = DATA_LAYERS.get(data_unit, -1), DATA_LAYERS.get(to_data_unit, 99)
            if to_rank > rank or (to_rank == rank and rank != 0):  # the core modules of rank 0 are one unit
                problems.append(f"{where}: data.{data_unit} imports data.{to_data_unit}, which is not below it")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private and target != source:
            problems.append(f"{where}: imports private names {private} of {target}")
        package_of = source.rpartition(".")[0] if path.name != "__init__.py" else source
        hidden = [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
        if hidden and not target.startswith(package_of + "."):
            problems.append(f"{where}: imports {target}, a private module of another package")
    return problems


def test_no_module_imports_upward_or_private_names() -> None:
    problems = [p for path in sorted(PACKAGE.rglob("*.py")) for p in violations(path)]
    assert not problems, "\n".join(problems)


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert units - {"__pycache__"} <= set(LAYERS), units - set(LAYERS)
    data = {p.stem if p.is_file() else p.name for p in (PACKAGE / "data").iterdir() if p.suffix == ".py" or p.is_dir()}
    assert data - {"__pycache__"} <= set(DATA_LAYERS), data - set(DATA_LAYERS)


@pytest.mark.parametrize(
    ("file", "source", "message"),
    [
        ("backbones/bad.py", "from ..models import detection\n", "a layer not below it"),
        ("common.py", "import mobiletasks.data\n", "a layer not below it"),
        ("heads/bad.py", "def f():\n    from mobiletasks.tasks import BaseTask\n", "a layer not below it"),
        ("models/bad.py", "from ..heads.ssd import _private\n", "private names"),
        ("data/io.py", "from .detection.coco import COCODetection\n", "not below it"),
        ("tasks/bad.py", "from ..backbones._mobilenet import Tap\n", "private module"),
        ("models/bad.py", "from ..evaluation import coco\n", "a layer not below it"),
    ],
)
def test_the_check_finds_what_it_must(tmp_path: Path, file: str, source: str, message: str) -> None:
    root = tmp_path / "mobiletasks"
    path = root / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    assert any(message in p for p in violations(path, root)), violations(path, root)


def test_the_check_allows_what_it_must(tmp_path: Path) -> None:
    root = tmp_path / "mobiletasks"
    allowed = {
        "models/good.py": "from ..heads.ssd import SSDHead\nfrom ..common import PathLike\nfrom .detection import x\n",
        "backbones/mobilenet_v2.py": "from ._mobilenet import Tap\n",
        "data/segmentation/datasets.py": "from ..detection.voc import VOC_CLASSES\nfrom ..files import find_files\n",
        "factory.py": "from .registry import x\nfrom .weights import y\n",
        "cli/infer.py": "from ..tasks import BaseTask\nfrom ..deploy import onnx\n",
    }
    for file, source in allowed.items():
        path = root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        assert violations(path, root) == [], (file, violations(path, root))
