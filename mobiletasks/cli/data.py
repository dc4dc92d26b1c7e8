"""``mobiletasks data synth --task detection|segmentation --format coco|voc --out DIR [--num-images N] ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..data.synth import read_info, write_detection_dataset
from ..data.synth_segmentation import write_segmentation_dataset

# task -> (the formats it writes, the function that writes them); classification, attributes to come
_SYNTH_TASKS: dict[str, tuple[tuple[str, ...], Callable[..., Path]]] = {
    "detection": (("coco", "voc"), write_detection_dataset),
    "segmentation": (("coco", "voc"), write_segmentation_dataset),
}


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
    synth.add_argument("--format", required=True, choices=formats, help="layout: coco or voc (both tasks)")
    synth.add_argument("--out", required=True, type=Path, help="dataset folder (new, empty, or generated before)")
    synth.add_argument("--num-images", type=int, default=200, help="images in train and val together (default 200)")
    synth.add_argument("--num-val", type=int, default=None, help="images in the val split (default: 20%%)")
    synth.add_argument("--image-size", type=int, default=320, help="image side in pixels (default 320)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    formats_of_task, write = _SYNTH_TASKS[args.task]
    if args.format not in formats_of_task:
        synth.error(f"--task {args.task} writes --format {' or '.join(formats_of_task)}, not {args.format!r}")
    try:
        out = write(
            args.out,
            format=args.format,
            num_images=args.num_images,
            num_val=args.num_val,
            image_size=args.image_size,
            seed=args.seed,
            progress=not args.quiet,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"mobiletasks data synth: error: {err}", file=sys.stderr)
        return 2

    info = read_info(out) or {}
    images, objects = info.get("images", {}), info.get("objects", {})
    print(f"wrote the synthetic {args.task} dataset ({args.format}, seed {args.seed}) to {out}")
    for split in images:
        print(f"  {split:<5} {images[split]:>6} images  {objects.get(split, 0):>7} objects")
    print(f"  classes: {', '.join(info.get('classes', []))}")
    return 0
