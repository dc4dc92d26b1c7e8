"""``mobiletasks evaluate --annotations GT.json --results RESULTS.json [--json]``: COCO box mAP of a results file."""

from __future__ import annotations

import argparse
import json
import sys

from ..evaluation.coco import STAT_DESCRIPTIONS, evaluate_results_file


def main(argv: list[str]) -> int:
    """COCO box mAP (pycocotools) of a detection results file, on every image of the annotations file."""
    parser = argparse.ArgumentParser(prog="mobiletasks evaluate", description=main.__doc__)
    parser.add_argument("--annotations", required=True, help="COCO annotations json (e.g. instances_val2017.json)")
    parser.add_argument(
        "--results", required=True, help="COCO results json: a list of {image_id, category_id, bbox, score}"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object {map: ..., map_50: ..., ...}")
    args = parser.parse_args(argv)
    try:
        stats = evaluate_results_file(args.annotations, args.results)
    except (FileNotFoundError, ValueError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(stats))
        return 0
    for name, value in stats.items():
        print(f"{name:<11} {value:7.4f}   {STAT_DESCRIPTIONS[name]}")
    return 0
