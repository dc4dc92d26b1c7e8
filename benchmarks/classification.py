"""Learnability of the classification and attribute quickstarts, distillation included, on this machine.

Trains, in order, ``configs/classification/quickstart.yaml`` (5 shape classes), ``configs/attributes/
quickstart.yaml`` (the attribute teacher) and ``configs/attributes/quickstart_distill.yaml`` (a 0.25 student
of that teacher, alpha 0: no labels), each from scratch in ``--workdir``, and reports the best validation
score and the minutes each took. The student's mean AP against its teacher's is the distillation result.

    python benchmarks/classification.py --learn [--workdir runs/benchmarks] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# config -> (run name, the metric reported)
QUICKSTARTS = {
    "classification/quickstart": ("classification_quickstart", "val/top1"),
    "attributes/quickstart": ("attributes_quickstart", "val/map"),
    "attributes/quickstart_distill": ("attributes_quickstart_distill", "val/map"),
}


def best(metrics: Path, key: str) -> float:
    with metrics.open() as f:
        return max(float(row[key]) for row in csv.DictReader(f) if row.get(key))


def learn(workdir: Path) -> dict[str, float]:
    report: dict[str, float] = {}
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
        metrics = sorted((workdir / "runs" / run).glob("version_*/metrics.csv"))[-1]
        report[f"{run} best {key}"] = round(best(metrics, key), 4)
    teacher, student = (
        report[f"{run} best val/map"] for run in ("attributes_quickstart", "attributes_quickstart_distill")
    )
    report["student/teacher val/map"] = round(student / teacher, 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learn", action="store_true", help="train the three CPU quickstarts (minutes)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.learn:
        parser.error("nothing to do: pass --learn")
    args.workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    report |= learn(args.workdir)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<50} {value}")


if __name__ == "__main__":
    main()
