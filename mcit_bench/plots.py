"""PNG plots of a run and of the leaderboard (optional dependency: ``pip install mcit-bench[plots]``).

- accuracy-matrix heatmaps (stages x tasks in the run's training order, missing cells grey): one per run
  in its own folder (``plots/heatmap.png``), and for the leaderboard one figure per method, its runs as
  a grid of small heatmaps;
- the per-stage curves A_t, FGT_t and FWD_t: of one run in its folder (``plots/curves.png``), and per
  leaderboard setting of every row: mean over the row's runs with a ± sample-std band (stage t is
  "after the t-th task" whatever the order, so curves of different orders share the x axis; null
  points, e.g. FGT_1, are left out). The FGT_t and FWD_t axes span at least ``MIN_SPAN`` points
  around zero, so a difference of a few test samples does not fill the panel.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no GUI, no global state).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

# The smallest y range of the FGT_t / FWD_t panels, in score points (0-100): on the built-in default one
# test sample of a 200-record task is 0.5 points and a binomial standard error near 50% is 3.5, so a
# panel narrower than this would draw sampling noise as a trend.
MIN_SPAN = 10.0
CURVES = (("A_t", "A_t: accuracy on tasks seen so far", "higher is better"),
          ("FGT_t", "FGT_t: forgetting", "lower is better"),
          ("FWD_t", "FWD_t: forward transfer vs zero-shot", "higher is better"))


@dataclass
class Plot:
    kind: str  # "heatmap" | "curves"
    group: int
    title: str
    path: str


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("--plots needs matplotlib: pip install 'mcit-bench[plots]'") from None
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _save(fig: Any, path: Path) -> None:
    """PNG through a temporary file: a reader never sees half a figure."""
    import io

    from .rundir.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _draw_matrix(ax: Any, matrix: Any, tasks: list[str], fontsize: float, full_labels: bool) -> Any:
    """One accuracy matrix on ``ax`` (rows = stages, 0 = zero-shot; columns = tasks in training order)."""
    from matplotlib import colormaps

    R = np.asarray(matrix, dtype=float)
    T = R.shape[1]
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")  # unevaluated cells grey
    image = ax.imshow(np.ma.masked_invalid(R), vmin=0, vmax=100, cmap=cmap, aspect="auto")
    for t in range(R.shape[0]):
        for i in range(T):
            if not np.isnan(R[t, i]):
                ax.text(i, t, f"{R[t, i]:.0f}" if not full_labels else f"{R[t, i]:.1f}", ha="center",
                        va="center", fontsize=fontsize, color="white" if R[t, i] < 55 else "black")
    if full_labels:
        ax.set_xticks(range(T), [f"{i + 1}. {name}" for i, name in enumerate(tasks)], rotation=30, ha="right",
                      fontsize=8)
        ax.set_yticks(range(T + 1), ["0 zero-shot", *(f"{t} after {tasks[t - 1]}" for t in range(1, T + 1))],
                      fontsize=8)
        ax.set_xlabel("evaluated task (training order)")
    else:  # a cell of a grid: the task names, small; stage numbers only
        ax.set_xticks(range(T), tasks, rotation=40, ha="right", fontsize=5.5)
        ax.set_yticks(range(T + 1), [str(t) for t in range(T + 1)], fontsize=6)
    return image


def heatmap(run: Any, path: Path, title: str) -> None:
    """Accuracy matrix of one run: rows = stages (0 = zero-shot), columns = tasks in training order."""
    T = np.asarray(run.matrix).shape[1]
    fig = _figure(1.2 + 1.05 * T, 1.0 + 0.55 * (T + 1))
    ax = fig.add_subplot(1, 1, 1)
    image = _draw_matrix(ax, run.matrix, list(run.tasks), 8, full_labels=True)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="score (0-100)")
    fig.tight_layout()
    _save(fig, path)


def heatmap_grid(runs: list[Any], path: Path, title: str, columns: int = 6) -> None:
    """Every run of one leaderboard row in one figure: a grid of small heatmaps, one per (order, seed),
    sorted by order then seed; rows of the grid are filled left to right."""
    columns = max(1, min(columns, len(runs)))
    rows = -(-len(runs) // columns)
    T = max(np.asarray(run.matrix).shape[1] for run in runs)
    cell_w, cell_h = 0.95 + 0.33 * T, 0.9 + 0.27 * (T + 1)
    fig = _figure(cell_w * columns + 0.9, cell_h * rows + 0.6)
    image = None
    for k, run in enumerate(runs):
        ax = fig.add_subplot(rows, columns, k + 1)
        image = _draw_matrix(ax, run.matrix, list(run.tasks), 5.5, full_labels=False)
        ax.set_title(f"order {run.order} seed {run.seed}", fontsize=7)
    fig.suptitle(f"{title} (rows: stage 0 = zero-shot, t = after the t-th task; columns: training order)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    if image is not None:
        fig.colorbar(image, cax=fig.add_axes((0.945, 0.15, 0.012, 0.7)), label="score (0-100)")
    _save(fig, path)


def _min_span(ax: Any, span: float = MIN_SPAN) -> None:
    """Widen the y axis to at least ``span`` points, keeping zero in view (the no-effect line)."""
    low, high = ax.get_ylim()
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low < span:
        middle = (low + high) / 2
        low, high = middle - span / 2, middle + span / 2
        if low > 0 or high < 0:  # keep zero inside the widened range
            low, high = (0.0, span) if low > 0 else (-span, 0.0)
    ax.set_ylim(low, high)
    ax.axhline(0.0, color="0.5", linewidth=0.8, zorder=0)


def curves(group: Any, path: Path, title: str) -> None:
    """A_t / FGT_t / FWD_t per row: mean over runs with a ± std band (std needs >= 2 values)."""
    fig = _figure(14, 4.2)
    axes = [fig.add_subplot(1, 3, k + 1) for k in range(3)]
    width_max = 1
    for k, row in enumerate(group.rows):
        color = f"C{k % 10}"  # one colour per row in every panel, even where a row has no point
        for ax, (name, _, _) in zip(axes, CURVES):
            series = [[np.nan if v is None else float(v) for v in run.curves[name]] for run in row.runs]
            width = max(len(s) for s in series)
            width_max = max(width_max, width)
            stack = np.full((len(series), width), np.nan)
            for k, s in enumerate(series):
                stack[k, :len(s)] = s
            counts = (~np.isnan(stack)).sum(axis=0)
            stages = np.arange(1, width + 1)
            keep = counts > 0
            if not keep.any():
                continue
            mean = np.array([np.nanmean(stack[:, j]) if counts[j] else np.nan for j in range(width)])
            std = np.array([np.nanstd(stack[:, j], ddof=1) if counts[j] > 1 else np.nan for j in range(width)])
            style = "--" if row.reference else "-"
            ax.plot(stages[keep], mean[keep], style, marker="o", markersize=3, color=color,
                    label=row.label + (" (ref.)" if row.reference else ""))
            band = keep & ~np.isnan(std)
            if band.any():
                ax.fill_between(stages[band], (mean - std)[band], (mean + std)[band], alpha=0.18,
                                color=color, linewidth=0)
    for ax, (name, label, direction) in zip(axes, CURVES):
        if name != "A_t":
            _min_span(ax)
        ax.set_title(f"{label} ({direction})", fontsize=9)
        ax.set_xlabel("stage t (after the t-th task)")
        ax.set_xticks(range(1, width_max + 1))
        ax.set_xlim(0.5, width_max + 0.5)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score (0-100)")
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 6), fontsize=8,
               frameon=False)
    fig.suptitle(title, fontsize=10)
    rows_of_legend = -(-len(handles) // 6)
    fig.tight_layout(rect=(0, 0.05 + 0.05 * rows_of_legend, 1, 1))
    _save(fig, path)


def write_plots(board: Any, folder: str) -> list[Plot]:
    """The leaderboard's figures into ``folder``: per setting, the curves and one heatmap grid per row."""
    out = Path(folder)
    many = len(board.groups) > 1
    plots: list[Plot] = []
    for group in board.groups:
        suffix = f"-setting{group.index}" if many else ""
        (out / f"heatmaps{suffix}").mkdir(parents=True, exist_ok=True)
        path = out / f"curves{suffix}.png"
        title = "Per-stage curves, mean ± sample std over orders and seeds" + (f" (setting {group.index})" if many
                                                                               else "")
        curves(group, path, title)
        plots.append(Plot("curves", group.index, title, str(path)))
        for row in group.rows:
            runs = sorted(row.runs, key=lambda r: (len(str(r.order)), str(r.order), r.seed))
            path = out / f"heatmaps{suffix}" / f"{_slug(row.label)}.png"
            name = f"{row.label}: accuracy matrices of its {len(runs)} run(s)"
            heatmap_grid(runs, path, name)
            plots.append(Plot("heatmap", group.index, name, str(path)))
    return plots


PLOTS_FOLDER = "plots"


def write_run_plots(run_dir: Path, matrix: Any, tasks: list[str], run_curves: dict[str, list], title: str) -> str:
    """A completed run's own figures (``plots/heatmap.png``, ``plots/curves.png``); returns the console line
    saying where they are, or why there are none (matplotlib missing: the run itself is unaffected)."""
    from types import SimpleNamespace

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "plots: none (matplotlib is not installed: pip install 'mcit-bench[plots]')"
    folder = Path(run_dir) / PLOTS_FOLDER
    run = SimpleNamespace(matrix=matrix, tasks=tasks, curves=run_curves)
    heatmap(run, folder / "heatmap.png", f"{title}: accuracy matrix")
    group = SimpleNamespace(rows=[SimpleNamespace(label=title, reference=False, runs=[run])])
    curves(group, folder / "curves.png", f"{title}: per-stage curves")
    return f"plots: {folder / 'heatmap.png'}, {folder / 'curves.png'}"
