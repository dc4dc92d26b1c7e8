"""``mobiletasks evaluate --annotations GT.json --results RESULTS.json [--json] [--plots DIR]``: COCO box mAP of a
results file, per-category AP, and optionally the per-category precision-recall curves as PNG and CSV."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..evaluation.coco import CATEGORY_AP_DESCRIPTION, STAT_DESCRIPTIONS, evaluate_results


def main(argv: list[str]) -> int:
    """COCO box mAP (pycocotools) of a detection results file, on every image of the annotations file: the twelve
    COCOeval stats, then the AP (IoU=0.50:0.95) of each category with ground truth."""
    parser = argparse.ArgumentParser(prog="mobiletasks evaluate", description=main.__doc__)
    parser.add_argument("--annotations", required=True, help="COCO annotations json (e.g. instances_val2017.json)")
    parser.add_argument(
        "--results", required=True, help="COCO results json: a list of {image_id, category_id, bbox, score}"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one flat JSON object {map: ..., map_50: ..., ap/<category>: ...}"
    )
    parser.add_argument(
        "--plots",
        metavar="DIR",
        help="also write pr_curve_<stem>.png and pr_curve_<stem>.csv into DIR (created if missing), <stem> being "
        "the results file's name without its extension (val_results.json: pr_curve_val_results.png): per category "
        "with ground truth, precision at 101 recall points averaged over IoU 0.50:0.95 (the CSV rows; their mean is "
        "the category's AP) and at IoU 0.50 (dashed)",
    )
    args = parser.parse_args(argv)
    if args.plots is not None and (not args.plots.strip() or Path(args.plots).is_file()):
        what = "is a file" if args.plots.strip() else "is empty"
        message = f"--plots {args.plots!r} {what}: give a folder (created if missing)"
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    try:
        evaluation = evaluate_results(args.annotations, args.results)
    except (FileNotFoundError, ValueError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    metrics = evaluation.metrics()
    if args.plots is not None:
        from ..evaluation.plots import save_figures

        try:
            written = save_figures(evaluation, args.plots, Path(args.results).stem)
        except OSError as err:
            print(f"{parser.prog}: error: cannot write the plots into {args.plots}: {err}", file=sys.stderr)
            return 2
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
        if not written:
            print(f"{parser.prog}: no category has ground truth: no plot written", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
        return 0
    for name, value in evaluation.stats.items():
        print(f"{name:<11} {value:7.4f}   {STAT_DESCRIPTIONS[name]}")
    per_category = evaluation.category_aps()
    if per_category:
        width = max(len(key) for key in per_category)
        print(f"\nper category, {CATEGORY_AP_DESCRIPTION}:")
        for key, value in per_category.items():
            print(f"{key:<{width}} {value:7.4f}")
    return 0
