"""Learnability of the classification and attribute quickstarts, distillation included, on this machine.

Trains, in order, ``configs/classification/quickstart.yaml`` (5 shape classes), ``configs/attributes/
quickstart.yaml`` (the attribute teacher) and ``configs/attributes/quickstart_distill.yaml`` (a 0.25 student
of that teacher, alpha 0: no labels), each from scratch in ``--workdir``, and reports the best validation
score and the minutes each took. The student's mean AP against its teacher's is the distillation result.

    python benchmarks/classification.py --learn [--workdir runs/benchmarks] [--json] [--plot [PATH]]
    python benchmarks/classification.py --from-metrics runs/classification_quickstart ...   # runs already made

``--plot`` draws each run's validation score (top-1, or mean AP for the attributes) and training loss against the
step, one panel a run, to ``docs/images/classification_learning.png`` (or PATH); ``--from-metrics`` draws it from
existing runs (metrics.csv files or run folders) instead of training.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from plotting import (
    add_plot_arguments,
    best,
    figure_path,
    find_metrics,
    learning_figure,
    read_series,
    run_name,
    save_figure,
)

ROOT = Path(__file__).resolve().parents[1]
# config -> (run name, the metric reported)
QUICKSTARTS = {
    "classification/quickstart": ("classification_quickstart", "val/top1"),
    "attributes/quickstart": ("attributes_quickstart", "val/map"),
    "attributes/quickstart_distill": ("attributes_quickstart_distill", "val/map"),
}
METRICS = {"val/top1": "val top-1", "val/map": "val mean AP (attributes)"}  # plotted, column -> label


def learn(workdir: Path) -> tuple[dict[str, float], list[tuple[str, Path]]]:
    """Train the three quickstarts in turn; their minutes and best scores, and their (config, metrics.csv)."""
    report: dict[str, float] = {}
    curves: list[tuple[str, Path]] = []
    for config, (run, key) in QUICKSTARTS.items():
        start = time.perf_counter()
        path = ROOT / "configs" / f"{config}.yaml"
        # progress bars go to stderr, so that --json prints nothing but the report
        subprocess.run(
            [sys.executable, "-m", "mobiletasks", "fit", "--config", str(path)],
            cwd=workdir,
            check=True,
            stdout=sys.stderr,
        )
        report[f"{run} minutes"] = round((time.perf_counter() - start) / 60, 2)
        metrics = find_metrics(workdir / "runs" / run)
        report[f"{run} best {key}"] = round(best(metrics, key), 4)
        curves.append((f"{config}.yaml", metrics))
    teacher, student = (
        report[f"{run} best val/map"] for run in ("attributes_quickstart", "attributes_quickstart_distill")
    )
    report["student/teacher val/map"] = round(student / teacher, 3)
    return report, curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learn", action="store_true", help="train the three CPU quickstarts (minutes)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--json", action="store_true")
    add_plot_arguments(parser, from_metrics=True)
    args = parser.parse_args()
    if args.learn == bool(args.from_metrics):
        parser.error("pass --learn (train the quickstarts) or --from-metrics PATH ... (plot runs already made)")
    plot = figure_path(parser, args.plot, "classification_learning.png", always=bool(args.from_metrics))
    report: dict[str, object] = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    if args.learn:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result, curves = learn(args.workdir)
        report |= result
    else:
        curves = []
        for given in args.from_metrics:
            metrics = find_metrics(given)
            curves.append((run_name(metrics), metrics))
            columns = read_series(metrics)
            for key in (key for key in METRICS if key in columns):  # top-1 or mean AP, by the task
                report[f"{metrics} best {key}"] = round(best(metrics, key), 4)
    if plot:
        figure = learning_figure(curves, METRICS, title="Classification and attributes: learning curves (val split)")
        print(f"figure: {save_figure(figure, plot)}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<50} {value}")


if __name__ == "__main__":
    main()
