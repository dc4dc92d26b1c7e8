"""The figures of ``docs/benchmarks.md``: what the benchmark scripts' ``--plot`` shares.

Latency against MAdds (one point per model measured in a run, ours and the peers marked apart, each labelled) and
learning curves (validation metrics, and the training loss on a second axis, against the step) read from a run's
``metrics.csv``. Matplotlib's object API on the Agg canvas: no pyplot, no display, no global state; files are
written whole or not at all.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
DPI = 100
SIZE = (7.0, 4.5)  # inches: 700x450 pixels at DPI, a few tens of KB as PNG
OURS, PEER, LOSS = "tab:blue", "tab:orange", "0.45"
_TEXT = {False: "#174a6e", True: "#8a4a00"}  # a point's label: its marker's colour, darker (ours, peer)
LOOK: dict[Any, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
}
_DEFAULT = Path("<default>")  # --plot given without a path


@contextmanager
def look() -> Iterator[None]:
    """The common look, for building a figure (matplotlib reads most of these when an artist is made)."""
    with matplotlib.rc_context(LOOK):
        yield


def new_figure(width: float = SIZE[0], height: float = SIZE[1]) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` (format from its suffix) through a temporary file in the same folder, so that
    the path holds the old file or the new one, never half of one. A PNG is written with a 256-colour palette:
    a line chart has few colours, and the file is half the size or less."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if path.suffix.lower() == ".png":
                canvas = FigureCanvasAgg(figure)
                canvas.draw()
                image = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
                image.quantize(256, dither=Image.Dither.NONE).save(f, format="PNG", optimize=True, dpi=(DPI, DPI))
            else:
                figure.savefig(f, format=path.suffix[1:], dpi=DPI)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- command line


def add_plot_arguments(parser: argparse.ArgumentParser, *, from_metrics: bool = False) -> None:
    """``--plot [PATH]`` and, for the scripts that train, ``--from-metrics PATH [PATH ...]``."""
    parser.add_argument(
        "--plot",
        nargs="?",
        const=_DEFAULT,
        type=Path,
        metavar="PATH",
        help=f"draw the figure (PNG, SVG or PDF by the suffix; default {IMAGES.relative_to(ROOT)}/<script>_*.png)",
    )
    if from_metrics:
        parser.add_argument(
            "--from-metrics",
            nargs="+",
            type=Path,
            metavar="PATH",
            help="plot the learning curves of existing runs (metrics.csv files or run folders: the newest "
            "metrics.csv below each) instead of training; implies --plot",
        )


def figure_path(
    parser: argparse.ArgumentParser, plot: Path | None, default_name: str, *, always: bool = False
) -> Path | None:
    """Where ``--plot`` asked the figure to go: None without ``--plot`` (unless ``always``: the run is for the
    figure), ``docs/images/<default_name>`` for a bare ``--plot``. A suffix matplotlib cannot write is a usage
    error, reported before anything is measured."""
    if plot is None and not always:
        return None
    path = IMAGES / default_name if plot is None or plot is _DEFAULT else plot
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        kind = path.suffix or "a file without suffix"
        parser.error(f"--plot {path}: matplotlib cannot write {kind}; end the path in .png, .svg or .pdf")
    return path


# -- latency against MAdds


def latency_note(rounds: int, iters: int, setting: str = "") -> str:
    """The run's circumstances for under a latency figure's title: ``setting``, the machine, torch's threads and
    version, the rounds, and the load average when the run ended (other jobs on the cores slow it)."""
    threads = torch.get_num_threads()
    return (
        f"{setting}{', ' if setting else ''}CPU {platform.machine()}, {threads} thread{'s' * (threads > 1)}, "
        f"torch {torch.__version__}, median of {rounds} rounds x {iters}, load average {os.getloadavg()[0]:.1f}"
    )


@dataclass(frozen=True)
class Point:
    """One model's median latency in a run. ``label`` is written next to the point; ``peer`` marks the model
    compared against (torchvision's, timm's, or the reference network of the run); ``opt`` one after
    ``mobiletasks.optimize_for_inference`` (filled marker; hollow: as built)."""

    label: str
    madds: float  # millions, one image
    ms: float
    peer: bool = False
    opt: bool = False


def latency_figure(
    points: Sequence[Point], *, title: str, note: str, ours: str = "mobiletasks", peer: str = "torchvision / timm"
) -> Figure:
    """Latency against MAdds, one marker per point: circles ours, squares the peers (legend names ``ours`` and
    ``peer``), filled after ``optimize_for_inference``. ``note`` (machine, threads, rounds) goes under the title."""
    with look():
        figure = new_figure()
        ax = figure.add_subplot()
        for is_peer, opt in sorted({(p.peer, p.opt) for p in points}):
            group = [p for p in points if (p.peer, p.opt) == (is_peer, opt)]
            color = PEER if is_peer else OURS
            ax.scatter(
                [p.madds for p in group],
                [p.ms for p in group],
                marker="s" if is_peer else "o",
                s=36,
                facecolors=color if opt else "white",
                edgecolors=color,
                linewidths=1.5,
                zorder=3,
                label=f"{peer if is_peer else ours}" + (" +opt" if opt else ", as built"),
            )
        xs, ys = [p.madds for p in points], [p.ms for p in points]
        # a decade or more: log axes, on which equal ratios are equal distances
        if min(xs) > 0 and max(xs) / min(xs) > 8:
            _log_axis(ax, "x")
            ax.set_xlim(min(xs) / 1.8, max(xs) * 2.5)
        else:
            ax.set_xlim(0, max(xs) * 1.5)
        if min(ys) > 0 and max(ys) / min(ys) > 8:
            _log_axis(ax, "y")
            ax.set_ylim(min(ys) / 1.4, max(ys) * 1.4)
        else:
            ax.set_ylim(0, max(ys) * 1.15)
        ax.set_xlabel("MAdds (millions, one image)")
        ax.set_ylabel("latency (ms, batch 1, median)")
        figure.suptitle(title)
        ax.set_title(note, fontsize=8, color="0.35")
        ax.legend(loc="upper left")
        place_labels(ax, [(p.madds, p.ms, p.label, _TEXT[p.peer]) for p in points])
    return figure


def _log_axis(ax: Axes, which: str) -> None:
    """A log scale on ``ax``'s x or y axis, ticked at 1, 2 and 5 times the powers of ten, written as plain numbers."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


# offsets (points) tried in turn for a label: beside its marker, then above or below with a leader line
_NEAR = [(7, 0), (-7, 0), (0, 9), (0, -9), (6, 7), (6, -7), (-6, 7), (-6, -7)]
_FAR = [(dx, dy) for dy in (16, -16, 26, -26, 36, -36, 48, -48) for dx in (18, -18, 40, -40)]


def place_labels(ax: Axes, points: Sequence[tuple[float, float, str, str]], fontsize: float = 7.5) -> None:
    """Write each label (x, y, text, colour) next to its point where it overlaps no other label, no marker and no
    legend, and stays inside the axes (greedy, in display coordinates); the least overlapping place where none is
    free. Freezes the figure's layout first, so that the coordinates measured are those drawn."""
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    figure.draw_without_rendering()
    figure.set_layout_engine("none")
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    r = 5.0  # a marker's half-width in pixels
    taken = [Bbox.from_bounds(x - r, y - r, 2 * r, 2 * r) for x, y in ax.transData.transform([p[:2] for p in points])]
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    for x, y, text, color in sorted(points, key=lambda p: (p[0], -p[1])):
        best: tuple[float, Annotation, Bbox] | None = None
        for dx, dy in _NEAR + _FAR:
            far = (dx, dy) not in _NEAR
            annotation = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="center" if dy == 0 or far else "bottom" if dy > 0 else "top",
                fontsize=fontsize,
                color=color,
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkA": 1, "shrinkB": 4} if far else None,
            )
            annotation.update_positions(renderer)
            box = Text.get_window_extent(annotation, renderer).padded(2)  # the text alone, not its leader line
            cost = sum(_overlap(box, other) for other in taken) + 10 * (box.width * box.height - _overlap(box, frame))
            cost += 50 * far  # prefer a label next to its point
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, annotation, box)
            else:
                annotation.remove()
            if cost == 0:
                break
        assert best is not None
        taken.append(best[2])


def _overlap(a: Bbox, b: Bbox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


# -- learning curves from metrics.csv


def find_metrics(path: Path) -> Path:
    """``path`` itself if it is a file, else the newest ``metrics.csv`` anywhere below it (a run folder holds one
    ``version_N`` a run, and a logger may nest its files deeper)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder; pass a metrics.csv or the run folder holding it")
    found = sorted(path.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"no metrics.csv below {path}: was the run logged with lightning's CSVLogger (the configs' logger)?"
        )
    return found[-1]


def read_series(metrics: Path) -> dict[str, list[tuple[int, int, float]]]:
    """Every column of a Lightning ``metrics.csv`` as (step, epoch, value) rows, the empty cells left out."""
    series: dict[str, list[tuple[int, int, float]]] = {}
    with metrics.open(newline="") as f:
        for row in csv.DictReader(f):
            step, epoch = int(row["step"]), int(row.get("epoch") or 0)
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((step, epoch, float(value)))
    return series


def best(metrics: Path, key: str) -> float:
    """The highest value of ``key`` in a run's ``metrics.csv``."""
    series = read_series(metrics)
    if key not in series:
        raise ValueError(
            f"{metrics} has no {key!r} values (it logged {', '.join(series) or 'nothing'}): a run of another task, "
            "or one stopped before its first validation?"
        )
    return max(v for _, _, v in series[key])


def run_name(metrics: Path) -> str:
    """``quickstart/version_0`` for ``.../runs/quickstart/version_0/metrics.csv``."""
    parts = metrics.parent.parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(metrics)


def learning_figure(
    runs: Sequence[tuple[str, Path]], metrics: Mapping[str, str], *, title: str, loss: str = "train/loss"
) -> Figure:
    """One panel per run (its title and ``metrics.csv``): the validation metrics of ``metrics`` (column -> legend
    label) that the file has, each point at the step it was measured after, with its value (the best one's only
    where there are more than 6); the training loss on the right axis, as logged (light) and as a running mean of
    9 logs; epochs on the top axis; one legend below the panels."""
    with look():
        figure = new_figure(max(SIZE[0], 4.2 * len(runs)), SIZE[1] if len(runs) == 1 else 4.2)
        axes = figure.subplots(1, len(runs), squeeze=False)[0]
        handles: dict[str, Artist] = {}
        for ax, (name, path) in zip(axes, runs, strict=True):
            for handle in _learning_panel(ax, name, path, metrics, loss):
                handles.setdefault(str(handle.get_label()), handle)
        order = [*metrics.values()]  # the metrics in the caller's order, the loss last
        shown = sorted(handles, key=lambda label: order.index(label) if label in order else len(order))
        figure.legend(handles=[handles[label] for label in shown], loc="outside lower center", ncols=len(shown))
        if title:
            figure.suptitle(title)
    return figure


def _learning_panel(ax: Axes, name: str, path: Path, metrics: Mapping[str, str], loss: str) -> list[Artist]:
    series = read_series(path)
    present = [key for key in metrics if key in series]
    if not present:
        raise ValueError(f"{path} has none of the columns {', '.join(metrics)}: is it a run of this task?")
    handles: list[Artist] = []
    colors = dict(zip(metrics, ("tab:blue", "tab:green", "tab:purple", "tab:red", "tab:brown"), strict=False))
    for rank, key in enumerate(present):
        color = colors.get(key, "black")
        steps, _, values = zip(*series[key], strict=True)
        (line,) = ax.plot(steps, values, "o-", color=color, ms=4, lw=1.5, label=metrics[key], zorder=3)
        handles.append(line)
        best_index = max(range(len(values)), key=values.__getitem__)
        shown = range(len(values)) if rank == 0 and len(values) <= 6 else [best_index]
        for i in shown:
            ax.annotate(
                f"{values[i]:.3f}",
                (steps[i], values[i]),
                xytext=(0, 6),
                textcoords="offset points",
                ha="right" if i == len(values) - 1 and i else "center",
                va="bottom",
                fontsize=7.5,
                color=color,
            )
    ax.set_ylim(0, max(v for key in present for _, _, v in series[key]) * 1.25)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation score")
    ax.set_title(name, fontsize=9)
    if loss in series:
        steps, epochs, values = zip(*series[loss], strict=True)
        twin = ax.twinx()
        twin.grid(False)
        twin.plot(steps, values, color=LOSS, lw=0.6, alpha=0.35)
        (mean,) = twin.plot(steps, _running_mean(values, 9), color=LOSS, lw=1.2, label=f"{loss} (right axis)")
        handles.append(mean)
        twin.set_ylim(0, max(values) * 1.05)
        twin.set_ylabel("training loss", color=LOSS)
        ax.set_zorder(twin.get_zorder() + 1)  # the scores over the loss
        ax.patch.set_visible(False)
        per_epoch = (max(steps) + 1) / (max(epochs) + 1)

        def to_epoch(step: np.ndarray) -> np.ndarray:  # the step logged last in an epoch is per_epoch - 1
            return (np.asarray(step) + 1) / per_epoch

        def to_step(epoch: np.ndarray) -> np.ndarray:
            return np.asarray(epoch) * per_epoch - 1

        ax.secondary_xaxis("top", functions=(to_epoch, to_step)).set_xlabel("epoch", fontsize=8)
    ax.set_xlim(left=0)
    return handles


def _running_mean(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out
