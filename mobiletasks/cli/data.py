"""``mobiletasks data synth --task detection|segmentation|classification|attributes --out DIR [--format F] ...``
and ``mobiletasks data check coco|voc ... | --config CFG [overrides]`` (:mod:`mobiletasks.data.check`)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.synthetic import (
    read_info,
    write_attributes_dataset,
    write_classification_dataset,
    write_detection_dataset,
    write_segmentation_dataset,
)

# task -> (the formats it writes, the default first; the function that writes them)
_SYNTH_TASKS: dict[str, tuple[tuple[str, ...], Callable[..., Path]]] = {
    "detection": (("coco", "voc"), write_detection_dataset),
    "segmentation": (("voc", "coco"), write_segmentation_dataset),
    "classification": (("folder",), write_classification_dataset),
    "attributes": (("celeba",), write_attributes_dataset),
}


def _default(function: Callable[..., Path], argument: str) -> Any:
    return inspect.signature(function).parameters[argument].default


def main(argv: list[str]) -> int:
    """Datasets: ``synth`` writes the synthetic shapes dataset of a task, ``check`` reads every file of one."""
    if argv[:1] == ["check"]:
        return check_main(argv[1:])
    parser = argparse.ArgumentParser(prog="mobiletasks data", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{synth,check}")
    commands.add_parser("check", help="read every file of a dataset and report what is wrong")
    synth = commands.add_parser(
        "synth",
        help="write the synthetic shapes dataset",
        description="Write the seeded synthetic shapes dataset (colored shapes on textured backgrounds) in the "
        "official layout of a format. The same seed gives the same dataset.",
    )
    synth.add_argument("--task", required=True, choices=list(_SYNTH_TASKS), help="the task the dataset is for")
    formats = sorted({f for fs, _ in _SYNTH_TASKS.values() for f in fs})
    layouts = "; ".join(f"{task}: {' or '.join(fs)}" for task, (fs, _) in _SYNTH_TASKS.items())
    synth.add_argument("--format", choices=formats, help=f"layout ({layouts}); default: the first one of the task")
    synth.add_argument("--out", required=True, type=Path, help="dataset folder (new, empty, or generated before)")
    synth.add_argument("--num-images", type=int, default=200, help="images in train and val together (default 200)")
    synth.add_argument("--num-val", type=int, default=None, help="images in the val split (default: 20%%)")
    sizes = ", ".join(f"{task} {_default(write, 'image_size')}" for task, (_, write) in _SYNTH_TASKS.items())
    synth.add_argument("--image-size", type=int, default=None, help=f"image side in pixels (default: {sizes})")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    formats_of_task, write = _SYNTH_TASKS[args.task]
    format = args.format or formats_of_task[0]
    if format not in formats_of_task:
        synth.error(f"--task {args.task} writes --format {' or '.join(formats_of_task)}, not {format!r}")
    image_size = _default(write, "image_size") if args.image_size is None else args.image_size
    try:
        out = write(
            args.out,
            format=format,
            num_images=args.num_images,
            num_val=args.num_val,
            image_size=image_size,
            seed=args.seed,
            progress=not args.quiet,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"mobiletasks data synth: error: {err}", file=sys.stderr)
        return 2

    info = read_info(out) or {}
    images, objects, classes = info.get("images", {}), info.get("objects", {}), info.get("classes", [])
    print(f"wrote the synthetic {args.task} dataset ({format}, seed {args.seed}) to {out}")
    for split in images:
        if args.task == "classification":  # one shape per image: the images of each class
            counts = ", ".join(f"{name} {sum(1 for _ in (out / split / name).glob('*.jpg'))}" for name in classes)
            print(f"  {split:<5} {images[split]:>6} images  ({counts})")
        else:
            print(f"  {split:<5} {images[split]:>6} images  {objects.get(split, 0):>7} objects")
    print(f"  {'attributes' if args.task == 'attributes' else 'classes'}: {', '.join(classes)}")
    return 0


def check_main(argv: list[str]) -> int:
    """Read every image, mask and annotation of a dataset before training and print a table of what is wrong:
    missing, unreadable or truncated files, sizes that disagree with the annotations, converted or rotated images,
    boxes out of bounds, masks with values outside the class set or of the wrong size, binary 0/255 masks.
    Exits 1 when there is an error, 0 otherwise (warnings included)."""
    parser = argparse.ArgumentParser(
        prog="mobiletasks data check",
        usage="mobiletasks data check {coco,voc} ... | --config CFG [--data.init_args.KEY VALUE ...]",
        description=check_main.__doc__,
        epilog="Arguments after --config CFG that start with --data. override the config, as for fit.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if argv[:1] not in (["coco"], ["voc"]):
        parser.add_argument(
            "--config", type=Path, required=True, help="a mobiletasks YAML config: its data, every split"
        )
        args, overrides = parser.parse_known_args(argv)
        bad = [a for a in overrides if a.startswith("-") and not a.startswith(("--data.", "--data=")) and a != "--data"]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)} (only --data.* overrides follow --config)")
        args.source = None
    else:
        sources = parser.add_subparsers(dest="source", required=True, metavar="{coco,voc}")
        coco = sources.add_parser("coco", help="a COCO split: an image folder and its instances json")
        coco.add_argument("--images", required=True, type=Path, help="the folder of the split's images")
        coco.add_argument("--annotations", required=True, type=Path, help="the split's instances json")
        voc = sources.add_parser("voc", help="a Pascal VOC split: its boxes (ImageSets/Main) and masks (Segmentation)")
        voc.add_argument("--root", required=True, type=Path, help="the VOCdevkit folder, holding VOC<year>/")
        voc.add_argument("--split", required=True, help="the image set list: train, val, trainval, train_aug, ...")
        voc.add_argument("--year", default="2012", help="the VOC<year> folder (default 2012)")
        voc.add_argument("--classes", help="comma-separated class names (default the 20 VOC classes)")
        for sub in (coco, voc):
            sub.add_argument("--quiet", action="store_true", help="no progress bar")
        args, overrides = parser.parse_args(argv), []

    from ..data.check import check_coco, check_datamodule, check_voc

    progress = not args.quiet
    try:
        if args.source == "coco":
            report = check_coco(args.images, args.annotations, progress)
            what = f"COCO {args.annotations} with images in {args.images}"
        elif args.source == "voc":
            classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
            report = check_voc(args.root, args.split, args.year, classes, progress)
            what = f"VOC{args.year} {args.split} in {args.root}"
        else:
            report = check_datamodule(config_datamodule(args.config, overrides), progress)
            what = f"the data of {args.config}"
    except (ValueError, FileNotFoundError, OSError) as err:  # a config that cannot be read
        print(f"mobiletasks data check: error: {err}", file=sys.stderr)
        return 2
    print(f"mobiletasks data check: {what}")
    print(report.table())
    return 1 if report.count("error") else 0


def config_datamodule(config: Path, overrides: list[str]) -> Any:
    """The data module a ``fit --config CONFIG [overrides]`` would build (nothing else is built)."""
    if not config.is_file():
        raise FileNotFoundError(
            f"config {config} does not exist; pass a YAML file such as configs/detection/quickstart.yaml"
        )
    from .lightning import MobileTasksCLI

    class ConfigReader(MobileTasksCLI):
        def instantiate_classes(self) -> None:  # parse only
            pass

    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it is given args beside sys.argv
    try:
        reader = ConfigReader(
            run=False, args=["--config", str(config), *overrides], save_config_callback=None, subclass_mode_model=True
        )
    except SystemExit as err:  # jsonargparse has printed why
        raise ValueError(f"config {config} could not be parsed (see above)") from err
    finally:
        sys.argv = argv
    data = reader.config["data"]
    module, _, name = str(data["class_path"]).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    init_args = data.get("init_args")
    return cls(**(init_args.as_dict() if init_args is not None else {}))
