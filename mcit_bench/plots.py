"""PNG plots for the leaderboard (optional dependency: ``pip install mcit-bench[plots]``).

- one accuracy-matrix heatmap per run (stages x tasks in that run's training order, missing cells grey);
- per setting, the per-stage curves A_t, FGT_t and FWD_t of every row: mean over the row's runs with
  a ± sample-std band (stage t is "after the t-th task" whatever the order, so curves of different
  orders share the x axis; null points, e.g. FGT_1, are left out).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no GUI, no global state).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

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


def heatmap(run: Any, path: Path, title: str) -> None:
    """Accuracy matrix of one run: rows = stages (0 = zero-shot), columns = tasks in training order."""
    R = np.asarray(run.matrix, dtype=float)
    T = R.shape[1]
    fig = _figure(1.2 + 1.05 * T, 1.0 + 0.55 * (T + 1))
    ax = fig.add_subplot(1, 1, 1)
    masked = np.ma.masked_invalid(R)
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")  # unevaluated cells grey
    image = ax.imshow(masked, vmin=0, vmax=100, cmap=cmap, aspect="auto")
    for t in range(R.shape[0]):
        for i in range(T):
            if not np.isnan(R[t, i]):
                ax.text(i, t, f"{R[t, i]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if R[t, i] < 55 else "black")
    ax.set_xticks(range(T), [f"{i + 1}. {name}" for i, name in enumerate(run.tasks)], rotation=30, ha="right",
                  fontsize=8)
    ax.set_yticks(range(T + 1), ["0 zero-shot", *(f"{t} after {run.tasks[t - 1]}" for t in range(1, T + 1))],
                  fontsize=8)
    ax.set_xlabel("evaluated task (training order)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="score (0-100)")
    fig.tight_layout()
    fig.savefig(path)


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
    for ax, (_, label, direction) in zip(axes, CURVES):
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
    fig.savefig(path)


def write_plots(board: Any, folder: str) -> list[Plot]:
    """Every heatmap and curve figure of the leaderboard into ``folder``; returns what was written."""
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
            for run in row.runs:
                name = f"{row.label} order {run.order} seed {run.seed}"
                path = out / f"heatmaps{suffix}" / f"{_slug(row.label)}-order{_slug(run.order)}-seed{run.seed}.png"
                heatmap(run, path, f"{name}: accuracy matrix")
                plots.append(Plot("heatmap", group.index, name, str(path)))
    return plots
