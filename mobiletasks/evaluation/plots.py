"""Pictures of the evaluation results: per-class precision-recall curves, confusion matrices, per-attribute AP bars.

Every evaluator of the package has ``figures()`` and ``tables()``, valid after ``compute()``: the same numbers as
a ``matplotlib.figure.Figure`` and as CSV rows, under the same keys (``"pr_curve"``, ``"confusion_matrix"``,
``"attribute_ap"``). They use what ``compute()`` gathered, so under ``torch.distributed`` every process holds the
pictures of the whole split and no collective call is needed (:mod:`mobiletasks.evaluation.distributed`).
:func:`save_figures` writes ``<key>_<split>.png`` and ``<key>_<split>.csv`` into a folder.

The figures are built on ``matplotlib.figure.Figure`` with the Agg canvas: no ``pyplot``, so no global state and
no GUI backend. matplotlib is imported inside the functions, so that ``import mobiletasks`` does not import it.
Large label sets stay readable: one small panel per class in a grid for PR curves, no per-cell numbers above
:data:`ANNOTATE_MAX` classes in a confusion matrix, and tick labels that shrink with the class count. An
80-class PR figure or a 200-class confusion matrix is built and written as PNG in about two seconds on one CPU
core (measured: 1.8 to 2.6 s and 1.3 to 2.8 s on a shared 2-core machine).
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mobiletasks.common import PathLike, replace_atomically

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ANNOTATE_MAX",
    "CONFUSION_CORNER",
    "Curve",
    "HasFigures",
    "Row",
    "attribute_ap_figure",
    "attribute_ap_table",
    "confusion_matrix_figure",
    "confusion_matrix_table",
    "new_figure",
    "pr_curve_figure",
    "pr_curve_table",
    "row_normalized",
    "save_figures",
    "unique_names",
]

Row = list[str | float]
ANNOTATE_MAX = 30  # a confusion matrix of at most this many classes has its shares written in the cells
CONFUSION_CORNER = "ground truth \\ prediction"  # the first cell of a confusion-matrix CSV: rows \ columns
_DPI = 100


@runtime_checkable
class HasFigures(Protocol):
    """What :func:`save_figures` takes: an evaluator (or a results record) after ``compute()``."""

    def figures(self) -> dict[str, Figure]: ...
    def tables(self) -> dict[str, list[Row]]: ...


@dataclass(frozen=True)
class Curve:
    """One class's precision-recall curve as plotted.

    Attributes:
        name: the class, in the panel title and the CSV's ``class`` column.
        recall: [N] float in [0, 1], non-decreasing.
        precision: [N] float in [0, 1], one per recall point.
        ap: the class's AP as logged (in the panel title).
        step: draw as a step curve whose value ``precision[i]`` holds on ``(recall[i-1], recall[i]]``
            (matplotlib's ``drawstyle="steps-pre"``; VOC's envelope, whose area is its AP), else as a line.
        dashed: an optional second curve ``(recall, precision)`` drawn dashed (COCO: IoU=0.50); plotted, not in
            the CSV.
    """

    name: str
    recall: npt.NDArray[np.float64]
    precision: npt.NDArray[np.float64]
    ap: float
    step: bool = False
    dashed: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None


def unique_names(names: Sequence[str], ids: Sequence[object]) -> list[str]:
    """``names`` with ``_<id>`` appended to every name that occurs more than once (COCO category names need not be
    unique; metric keys must be).

    Example:
        >>> unique_names(["car", "sign", "car"], [3, 7, 12])
        ['car_3', 'sign', 'car_12']
    """
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [f"{n}_{i}" if counts[n] > 1 else n for n, i in zip(names, ids, strict=True)]


def new_figure(width: float, height: float) -> Figure:
    """An empty ``Figure`` of ``width`` x ``height`` inches at 100 dpi on the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def _grid(count: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid of ``count`` panels: ceil(sqrt(count)) columns."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / columns)), columns


def pr_curve_figure(curves: Sequence[Curve], title: str) -> Figure:
    """Small multiples: one panel per curve (precision against recall, both axes 0..1, the AP in the title), in a
    grid of ceil(sqrt(K)) columns, 2.2 inches a panel (4 for a single curve); only the outer panels carry tick
    labels, and ``title`` is wrapped to the figure's width.

    Axes are not shared (sharing 80 axes makes matplotlib quadratic: 8 to 14 s) and limits are fixed, so an
    80-class figure builds and renders in about two seconds. ``ValueError`` for no curve: there is nothing to plot.
    """
    if not curves:
        raise ValueError("pr_curve_figure got no curve; the evaluators return {} from figures() instead")
    rows, columns = _grid(len(curves))
    small = len(curves) > 16
    panel = 2.2 if len(curves) > 1 else 4.0
    left, right, bottom = 0.65, 0.15, 0.55  # inches
    title_size = 10 if small else 11
    width = left + panel * columns + right
    lines = textwrap.wrap(title, width=max(20, int((width - 0.3) * 72 / (0.55 * title_size))))
    top = 0.25 + 0.22 * len(lines) * title_size / 10
    height = top + panel * rows + bottom
    figure = new_figure(width, height)
    axes = figure.subplots(rows, columns, squeeze=False)
    ticks = [0.0, 0.5, 1.0]
    for k, ax in enumerate(axes.flat):
        if k >= len(curves):
            ax.set_visible(False)
            continue
        curve = curves[k]
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.03)
        ax.set_autoscale_on(False)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.grid(True, linewidth=0.3, alpha=0.5)
        if curve.dashed is not None:
            ax.plot(curve.dashed[0], curve.dashed[1], linestyle="--", linewidth=0.9, color="tab:orange")
        ax.plot(
            curve.recall,
            curve.precision,
            linewidth=1.2,
            color="tab:blue",
            drawstyle="steps-pre" if curve.step else "default",
        )
        ax.set_title(f"{curve.name}  AP {curve.ap:.3f}", fontsize=7 if small else 10)
        bottom_row = k + columns >= len(curves)
        ax.tick_params(labelsize=6 if small else 8, labelbottom=bottom_row, labelleft=k % columns == 0)
        if bottom_row:
            ax.set_xlabel("recall", fontsize=7 if small else 9)
        if k % columns == 0:
            ax.set_ylabel("precision", fontsize=7 if small else 9)
    figure.suptitle("\n".join(lines), fontsize=title_size, y=1.0 - 0.1 / height, va="top")
    figure.subplots_adjust(
        left=left / width,
        right=1.0 - right / width,
        bottom=bottom / height,
        top=1.0 - (top + 0.1) / height,
        wspace=0.15,
        hspace=0.4 if small else 0.3,
    )
    return figure


def pr_curve_table(curves: Sequence[Curve]) -> list[Row]:
    """Header ``["class", "recall", "precision"]``, then one row per plotted point of each curve (not the dashed
    ones), in the curves' order."""
    rows: list[Row] = [["class", "recall", "precision"]]
    for curve in curves:
        rows += [[curve.name, float(r), float(p)] for r, p in zip(curve.recall, curve.precision, strict=True)]
    return rows


def row_normalized(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A confusion matrix [K, K] (rows: ground truth) divided by its row sums: each row the shares of a class's
    pixels or images predicted as each class (the diagonal: the recall of each class). Rows without any ground
    truth are 0.

    Example:
        >>> row_normalized([[3, 1], [0, 0]]).tolist()
        [[0.75, 0.25], [0.0, 0.0]]
    """
    matrix = np.asarray(counts, dtype=np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def confusion_matrix_figure(counts: npt.ArrayLike, class_names: Sequence[str], title: str) -> Figure:
    """The confusion matrix ``counts`` [K, K] (rows: ground truth, columns: prediction) normalized per row
    (:func:`row_normalized`), as an image on 0..1 with a colorbar and the class names on both axes.

    The figure grows with K (0.3 inch a class up to :data:`ANNOTATE_MAX` classes, whose shares are then written in
    the cells, two decimals without the leading zero; 0.15 inch a class above, at most 36 inches) and the tick
    labels shrink to fit. ``ValueError`` if ``counts`` is not square or does not match ``class_names``.
    """
    matrix = np.asarray(counts)
    k = len(class_names)
    if matrix.shape != (k, k):
        raise ValueError(
            f"confusion matrix has shape {matrix.shape} for {k} class names; pass a [K, K] matrix and one name "
            "per class"
        )
    shares = row_normalized(matrix)
    annotate = k <= ANNOTATE_MAX
    cell = 0.3 if annotate else 0.15  # inches
    side = min(36.0, max(4.0, cell * k))  # inches, of the matrix itself
    # a class's row is side / k inches high: its label takes at most 80% of it, 3 to 10 points
    fontsize = max(3.0, min(10.0, 0.8 * side / k * 72))
    # room for the longest name (a character is about 0.6 font sizes wide) and the axis label
    margin = 0.6 + 0.6 * fontsize / 72 * max(len(n) for n in class_names)
    figure = new_figure(margin + side + 1.3, margin + side + 0.6)
    width, height = figure.get_size_inches()
    ax = figure.add_axes((margin / width, margin / height, side / width, side / height))
    colorbar_ax = figure.add_axes(((margin + side + 0.2) / width, margin / height, 0.2 / width, side / height))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    colorbar = figure.colorbar(image, cax=colorbar_ax)
    colorbar.set_label("share of the ground-truth row (diagonal: recall)")
    positions = np.arange(k)
    ax.set_xticks(positions, list(class_names), rotation=90, fontsize=fontsize)
    ax.set_yticks(positions, list(class_names), fontsize=fontsize)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    if annotate:
        # ".73" is about 1.8 font sizes wide: fit it in 85% of a cell
        _annotate(ax, shares, min(8.0, 0.85 * cell * 72 / 1.8))
    return figure


def _annotate(ax: Axes, shares: npt.NDArray[np.float64], fontsize: float) -> None:
    for (i, j), share in np.ndenumerate(shares):
        if share >= 0.005:  # what rounds to .00 is left blank
            color = "white" if share > 0.5 else "black"
            text = f"{share:.2f}".removeprefix("0")
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=color)


def confusion_matrix_table(counts: npt.ArrayLike, class_names: Sequence[str]) -> list[Row]:
    """Header ``[CONFUSION_CORNER, *class_names]``, then per ground-truth class ``[name, *counts]``: the raw counts
    (ints), not normalized, so a reader can recompute IoU = diag / (row + column - diag) or accuracy = trace / sum.

    Example:
        >>> confusion_matrix_table([[3, 1], [0, 2]], ["cat", "dog"])
        [['ground truth \\\\ prediction', 'cat', 'dog'], ['cat', 3, 1], ['dog', 0, 2]]
    """
    matrix: list[list[int]] = np.asarray(counts).astype(np.int64).tolist()
    rows: list[Row] = [[CONFUSION_CORNER, *class_names]]
    rows += [[name, *counts_of_name] for name, counts_of_name in zip(class_names, matrix, strict=True)]
    return rows


def attribute_ap_figure(aps: dict[str, float], mean: float, undefined: int) -> Figure:
    """Horizontal bars of each attribute's AP (``aps``: name -> AP, the defined ones), highest on top, with the mean
    AP ``mean`` as a vertical line; the title says how many attributes (``undefined``) had no AP."""
    if not aps:
        raise ValueError("attribute_ap_figure got no AP; the evaluators return {} from figures() instead")
    order = sorted(aps, key=lambda name: aps[name])  # bottom to top
    height = min(36.0, max(3.0, 1.2 + 0.2 * len(order)))
    figure = new_figure(7.0, height)
    ax = figure.add_axes((0.3, 0.6 / height, 0.65, 1.0 - 1.2 / height))
    positions = np.arange(len(order))
    ax.barh(positions, [aps[n] for n in order], height=0.7, color="tab:blue")
    ax.axvline(mean, color="tab:red", linewidth=1.2, label=f"mAP {mean:.3f}")
    per_bar = (height - 1.2) / len(order) * 72  # points
    ax.set_yticks(positions, order, fontsize=max(3.0, min(9.0, 0.7 * per_bar)))
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("average precision")
    left_out = f"; {undefined} without a positive image left out" if undefined else ""
    ax.set_title(f"AP per attribute{left_out}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return figure


def attribute_ap_table(aps: dict[str, float]) -> list[Row]:
    """Header ``["attribute", "ap"]``, then one row per attribute, highest AP first (the bars from the top)."""
    rows: list[Row] = [["attribute", "ap"]]
    rows += [[name, aps[name]] for name in sorted(aps, key=lambda n: -aps[n])]
    return rows


def save_figures(evaluator: HasFigures, directory: PathLike, split: str) -> list[Path]:
    """Write ``<key>_<split>.png`` and ``<key>_<split>.csv`` for every key of ``evaluator.figures()`` and
    ``evaluator.tables()`` into ``directory`` (created if missing); return the paths written, PNG then CSV per key.

    Call it after ``evaluator.compute()`` (on one process under ``torch.distributed``: every process holds the whole
    split). Each file is written to a temporary file in ``directory`` and moved into place with ``os.replace``, so a
    reader never sees half a file. The figures are cleared afterwards (they hold no pyplot state to close).
    ``ValueError`` for a ``split`` that is not a plain file-name part.
    """
    if not split or any(c in split for c in "/\\") or split in (".", ".."):
        raise ValueError(f"split is {split!r}; pass a plain name such as 'val' or 'test' (it names the files)")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    figures, tables = evaluator.figures(), evaluator.tables()
    written: list[Path] = []
    try:
        for key in dict.fromkeys([*figures, *tables]):
            if key in figures:
                png = folder / f"{key}_{split}.png"
                replace_atomically(png, partial(_write_png, figures[key]))
                written.append(png)
            if key in tables:
                table = folder / f"{key}_{split}.csv"
                replace_atomically(table, partial(_write_csv, tables[key]))
                written.append(table)
    finally:
        for figure in figures.values():
            figure.clear()
    return written


def _write_png(figure: Figure, path: str) -> None:
    figure.savefig(path, format="png", dpi=_DPI)


def _write_csv(rows: list[Row], path: str) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
