"""``mobiletasks data synth --task detection|segmentation|classification|attributes --out DIR [--format F] ...``."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.synth import read_info, write_detection_dataset
from ..data.synth_classification import write_attributes_dataset, write_classification_dataset
from ..data.synth_segmentation import write_segmentation_dataset

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
    """Datasets: ``synth`` writes the synthetic shapes dataset of a task."""
    parser = argparse.ArgumentParser(prog="mobiletasks data", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{synth}")
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
