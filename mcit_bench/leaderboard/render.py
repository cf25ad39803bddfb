"""Rendering a leaderboard: markdown, LaTeX (booktabs) and wide CSV."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError
from .aggregate import Group, Leaderboard, Row
from .records import DASH, DECIMALS, lower_is_better
from .statistics import Paired, Stat

def fmt_stat(s: Stat, n_runs: int, pm: str = "±", dash: str = DASH) -> str:
    if s.n == 0 or s.mean is None:
        return "n/a"
    text = f"{s.mean:.{DECIMALS}f} {pm} " + (dash if s.std is None else f"{s.std:.{DECIMALS}f}")
    if s.n != n_runs:
        text += f" (n={s.n})"
    return text


def fmt_ceiling(s: Stat, pm: str = "±") -> str:
    """The ceiling's spread is over its seeds (k), never over the row's runs: one seed shows no ± at all."""
    if s.n == 0 or s.mean is None:
        return "n/a"
    if s.std is None:
        return f"{s.mean:.{DECIMALS}f} (1 seed)"
    return f"{s.mean:.{DECIMALS}f} {pm} {s.std:.{DECIMALS}f} ({s.n} seeds)"


def fmt_params(s: Stat) -> str:
    if s.mean is None:
        return "n/a"
    v = s.mean
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}K"
    return f"{v:.0f}"


def fmt_seconds(s: Stat, pm: str = "±", dash: str = DASH) -> str:
    if s.mean is None:
        return "n/a"
    return f"{s.mean:.0f} {pm} " + (dash if s.std is None else f"{s.std:.0f}")


def fmt_paired(p: Paired | None, n_runs: int, is_baseline: bool) -> str:
    """``+2.10 [-0.40, +4.60] p=0.156``: mean difference, bootstrap 95% interval, Wilcoxon p.

    A p below 0.001 prints as ``p<0.001`` (three decimals would print it as 0.000); the csv keeps six significant digits.
    """
    if is_baseline:
        return "baseline"
    if p is None or p.n == 0 or p.mean_diff is None:
        return "n/a"
    text = f"{p.mean_diff:+.{DECIMALS}f}"
    if p.ci_low is not None and p.ci_high is not None:
        text += f" [{p.ci_low:+.{DECIMALS}f}, {p.ci_high:+.{DECIMALS}f}]"
    if p.p_value is not None:
        text += " p<0.001" if p.p_value < 0.001 else f" p={p.p_value:.3f}"
    if p.n != n_runs:
        text += f" (n={p.n})"
    return text


def paired_header(board: Leaderboard, group: Group, delta: str = "Δ") -> str:
    return f"{delta}{board.paired_metric} vs {group.baseline} [95% CI] p"


def metric_header(metric: str, up: str = "↑", down: str = "↓") -> str:
    return f"{metric} {down if lower_is_better(metric) else up}"


def describe_setting(setting: dict[str, Any]) -> str:
    budget = ", ".join(f"{k}={v}" for k, v in setting["budget"].items())
    versions = ", ".join(f"{k} {v}" for k, v in setting["versions"].items())
    scorers = ", ".join(f"{t}: {s}" for t, s in setting["scorers"].items())
    checkpoint = setting.get("backbone_checkpoint")
    backbone = setting["backbone"] + (f" ({checkpoint})" if checkpoint and checkpoint != setting["backbone"] else "")
    stream = setting.get("data_stream", "report")
    preset = setting["preset"] + ("" if stream == "report" else f"`, data stream `{stream}")
    return (f"benchmark `{setting['benchmark']}`, backbone `{backbone}`, preset `{preset}`, "
            f"eval `{setting['eval_mode']}`, precision `{setting['precision']}`, devices `{setting['devices']}`; "
            f"budget: {budget}; scorers: {scorers or 'n/a'}; versions: {versions or 'n/a'}")


CONVENTIONS = (
    "Each cell: mean ± sample standard deviation (ddof=1) over the row's runs (task orders x seeds); "
    f"`{DASH}` = a single run; `(n=k)` = only k runs have this value (the others' is unavailable because a needed "
    "matrix cell was not evaluated, e.g. `joint` has no intermediate rows); `n/a` = unavailable in every run, "
    "never 0. Metrics are recomputed from each run's accuracy.csv. Per-task scores: last row of each matrix, "
    "aligned by task name. Best measured value per column marked (↑ higher is better, ↓ lower is better; ties at "
    "two decimals all marked); reference rows (bounds) are never marked. Time: train + eval seconds per run. "
    "Paired column (when the baseline has a row): the mean difference of the metric against the baseline over the "
    "(order, seed) runs both have, its 95% percentile-bootstrap interval (9999 resamples, seed 0) and the two-sided "
    "Wilcoxon signed-rank p-value (exact for small samples; zero differences dropped). Ceiling (when measured): "
    "the mean over the row's tasks of each task trained alone with the same budget and hyper-parameters "
    "(`mcit-bench ceiling`), read beside `mft`; ± over its seeds, not over the runs (every order has the same tasks)."
)


def _rel(path: str, output: str | None) -> str:
    """Image path as seen from the markdown file (relative links keep working in the repository)."""
    return os.path.relpath(path, Path(output).parent) if output else str(path)


def render(board: Leaderboard, fmt: str, plots: Sequence[Any] = (), output: str | None = None) -> str:
    if fmt == "md":
        return render_markdown(board, plots, output)
    if fmt == "latex":
        return render_latex(board)
    if fmt == "csv":
        return render_csv(board)
    raise UserError(f"--format {fmt!r}: expected md, latex or csv")


def _extra_columns(group: Group | None) -> list[str]:
    """Optional columns shown when some row has them: the single-task ceiling (read beside ``mft``) and the
    task-identification accuracy of routing / prompt selection (read beside the forgetting it explains)."""
    if group is None:
        return []
    out = []
    if any(r.ceiling.n for r in group.rows):
        out.append("ceiling")
    if any(r.task_id.n for r in group.rows):
        out.append("task id %")
    return out


def _main_columns(board: Leaderboard, group: Group) -> list[str]:
    paired = [paired_header(board, group)] if group.baseline else []
    return ["method", "runs", *(metric_header(m) for m in board.metrics), *_extra_columns(group),
            "trainable params", "time (s)", *paired]


def _main_cells(row: Row, board: Leaderboard, bold: Any, pm: str = "±", dash: str = DASH,
                group: Group | None = None) -> list[str]:
    n = len(row.runs)
    cells = [row.label + (" (ref.)" if row.reference else ""), str(n)]
    for m in board.metrics:
        text = fmt_stat(row.stats[m], n, pm, dash)
        cells.append(bold(text) if m in row.best else text)
    extra = _extra_columns(group)
    if "ceiling" in extra:
        cells.append(fmt_ceiling(row.ceiling, pm))
    if "task id %" in extra:
        cells.append(fmt_stat(row.task_id, n, pm, dash))
    cells += [fmt_params(row.params), fmt_seconds(row.seconds, pm, dash)]
    if group is not None and group.baseline:
        cells.append(fmt_paired(row.paired, n, row.label == group.baseline))
    return cells


def _task_cells(row: Row, group: Group, bold: Any, pm: str = "±", dash: str = DASH) -> list[str]:
    n = len(row.runs)
    cells = [row.label + (" (ref.)" if row.reference else "")]
    for t in group.task_names:
        text = fmt_stat(row.tasks[t], n, pm, dash)
        cells.append(bold(text) if f"task:{t}" in row.best else text)
    return cells


def _position_table(group: Group) -> list[str]:
    """Markdown: the diagonal a[t][t] by position t in the order, beside the ceiling (rows with a diagonal)."""
    rows = [r for r in group.rows if r.by_position and all(s.n for s in r.by_position)]  # joint: no a[t][t] for t < T
    if not rows:
        return []
    T = max(len(r.by_position) for r in rows)
    body = [[r.label + (" (ref.)" if r.reference else ""),
             *(f"{s.mean:.{DECIMALS}f}" for s in r.by_position), fmt_ceiling(r.ceiling)] for r in rows]
    return ["Score on each task right after learning it (a[t][t]) by its position t in the order, mean over the "
            "row's runs (mft is the mean of the row). No ±: at one position the runs hold different tasks, so the "
            "spread would be the tasks', and the means compare positions only where the orders put every task at every "
            "position (the six built-in orders do). Falling with t: "
            "learning a task costs more the more came before it.", "",
            *_md_table(["method", *(f"t={t}" for t in range(1, T + 1)), "ceiling"], body), ""]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return lines


def render_markdown(board: Leaderboard, plots: Sequence[Any] = (), output: str | None = None) -> str:
    out = ["# mcit-bench leaderboard", "",
           f"From {board.n_runs} complete run(s) under `{board.runs_dir}`"
           + (f"; {len(board.skipped)} incomplete run(s) skipped." if board.skipped else "."), "",
           CONVENTIONS, ""]
    for note in board.group_notes:
        out += [f"> **Note:** {note}", ""]

    def bold(text: str) -> str:
        return f"**{text}**"

    for group in board.groups:
        title = "Measured" if len(board.groups) == 1 else f"Measured, setting {group.index} of {len(board.groups)}"
        out += [f"## {title}", "", describe_setting(group.setting), ""]
        out += _md_table(_main_columns(board, group), [_main_cells(r, board, bold, group=group)
                                                        for r in group.rows]) + [""]
        out += ["Final score per task (last row of each run's matrix, aligned by task name):", ""]
        out += _md_table(["method", *group.task_names], [_task_cells(r, group, bold) for r in group.rows]) + [""]
        out += _position_table(group)
        for note in group.notes:
            out += [f"- Note: {note}"]
        if group.notes:
            out.append("")
        group_plots = [p for p in plots if p.group == group.index]
        for p in (p for p in group_plots if p.kind == "curves"):
            out += [f"![{p.title}]({_rel(p.path, output)})", ""]
        heatmaps = [p for p in group_plots if p.kind == "heatmap"]
        if heatmaps:  # one figure per method, its runs as a grid (a run's own heatmap is in its folder)
            out += ["Accuracy matrices, one figure per method (each run in its training order):", ""]
            for p in heatmaps:
                out += [f"![{p.title}]({_rel(p.path, output)})", ""]
    if board.skipped:
        out += ["Skipped (incomplete) runs: " + ", ".join(f"`{p}`" for p, _ in board.skipped), ""]
    if board.paper is not None:
        out += _paper_markdown(board.paper)
    return "\n".join(out).rstrip("\n") + "\n"


def _paper_rows(paper: dict[str, Any]) -> tuple[list[dict], list[dict], list[dict], list[str]]:
    entries = paper["entries"]
    verified = [e for e in entries if e["status"] == "verified"]
    rows = [e for e in verified if any(v is not None for v in (e.get("metrics") or {}).values())]
    claims = [e for e in verified if e.get("claim")]
    absent = [e for e in entries if e["status"] == "absent"]
    keys: list[str] = []
    for e in rows:
        keys += [k for k in e["metrics"] if k not in keys]
    return rows, claims, absent, keys


def _source(e: dict[str, Any]) -> str:
    return f"{e['paper']} (arXiv {e['arxiv']}), {e['source']}"


def _paper_markdown(paper: dict[str, Any]) -> list[str]:
    rows, claims, absent, keys = _paper_rows(paper)
    out = ["## Reported in papers (not measured here)", "",
           f"From `{paper['path']}`. These numbers come from the papers' own benchmarks and backbones (e.g. UCIT or "
           "CoIN with LLaVA-1.5-7B); they are not comparable with the measured rows above and are never mixed "
           "into them.", ""]
    if rows:
        header = ["method", "benchmark", "backbone", *keys, "source"]
        body = [[e["method"], str(e.get("benchmark", "")), str(e.get("backbone", "")),
                 *("n/a" if e["metrics"].get(k) is None else f"{e['metrics'][k]:.2f}" for k in keys), _source(e)]
                for e in rows]
        out += _md_table(header, body) + [""]
    else:
        out += ["No per-metric table entry could be verified from a source reachable here.", ""]
    if claims:
        out += ["Claims stated by the papers:", ""]
        out += [f"- **{e['method']}** ({e.get('benchmark', '')}, {e.get('backbone', '')}): {e['claim']} "
                f"[{_source(e)}]" for e in claims] + [""]
    if absent:
        out += ["Not filled in (could not be verified; left absent rather than guessed):", ""]
        out += [f"- {e['method']}: {_source(e)}" + (f" — {e['note']}" if e.get("note") else "") for e in absent]
        out.append("")
    return out


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"$<$", ">": r"$>$"}  # bare < > print as other glyphs in LaTeX's default font encoding


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(c, c) for c in text)


def _latex_table(caption: str, header: list[str], rows: list[list[str]]) -> list[str]:
    return [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}",
            r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
            " & ".join(header) + r" \\", r"\midrule", *(" & ".join(r) + r" \\" for r in rows),
            r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]


def render_latex(board: Leaderboard) -> str:
    pm, dash = r"$\pm$", "--"
    mark = "\0"  # prefix meaning "best": _latex_cell turns it into \textbf after escaping
    out = [f"% mcit-bench leaderboard from {board.n_runs} complete run(s) under {board.runs_dir}",
           "% requires \\usepackage{booktabs}", "% " + CONVENTIONS, ""]
    for note in board.group_notes:
        out += [f"% NOTE: {note}"]
    for group in board.groups:
        setting = latex_escape(describe_setting(group.setting).replace("`", ""))
        header = ["Method", "Runs", *(latex_escape(m) + (r" $\downarrow$" if lower_is_better(m) else r" $\uparrow$")
                                      for m in board.metrics),
                  *(latex_escape(c) for c in _extra_columns(group)), "Trainable params", "Time (s)"]
        if group.baseline:
            header.append(r"$\Delta$" + latex_escape(paired_header(board, group, delta="")))
        rows = []
        for r in group.rows:
            cells = _main_cells(r, board, lambda t: mark + t, pm="PM", dash=dash, group=group)
            rows.append([_latex_cell(c, pm) for c in cells])
        out += _latex_table(f"Measured, setting {group.index}: {setting}. Mean $\\pm$ sample std (ddof=1) "
                            f"over task orders and seeds; best in bold.", header, rows)
        task_rows = [[_latex_cell(c, pm) for c in _task_cells(r, group, lambda t: mark + t, pm="PM", dash=dash)]
                     for r in group.rows]
        out += _latex_table(f"Final score per task (setting {group.index}), aligned by task name.",
                            ["Method", *(latex_escape(t) for t in group.task_names)], task_rows)
        out += [f"% NOTE: {n}" for n in group.notes]
    if board.paper is not None:
        rows_, claims, absent, keys = _paper_rows(board.paper)
        if rows_:
            body = [[latex_escape(e["method"]), latex_escape(str(e.get("benchmark", ""))),
                     *("n/a" if e["metrics"].get(k) is None else f"{e['metrics'][k]:.2f}" for k in keys),
                     latex_escape(f"arXiv {e['arxiv']}, {e['source']}")] for e in rows_]
            out += _latex_table("Reported in papers (other benchmarks and backbones; not comparable with the "
                                "measured rows).", ["Method", "Benchmark", *(latex_escape(k) for k in keys),
                                                    "Source"], body)
        out += [f"% paper claim: {e['method']}: {e['claim']} ({_source(e)})" for e in claims]
        out += [f"% absent (not verified): {e['method']}: {_source(e)}" for e in absent]
    return "\n".join(out).rstrip("\n") + "\n"


def _latex_cell(text: str, pm: str) -> str:
    bold = text.startswith("\0")
    body = latex_escape(text.lstrip("\0")).replace(" PM ", f" {pm} ").replace("–", "--")
    return rf"\textbf{{{body}}}" if bold else body


def render_csv(board: Leaderboard) -> str:
    """Wide CSV, one line per row; numbers unformatted, empty = null; ``<col>_best`` = ``*`` when best."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    task_names: list[str] = []
    for g in board.groups:
        task_names += [t for t in g.task_names if t not in task_names]
    header = ["setting", "method", "label", "reference", "runs", "orders_seeds"]
    for m in board.metrics:
        header += [f"{m}_mean", f"{m}_std", f"{m}_n", f"{m}_best"]
    for t in task_names:
        header += [f"task:{t}_mean", f"task:{t}_std", f"task:{t}_n", f"task:{t}_best"]
    header += ["ceiling_mean", "task_id_mean"]
    header += ["trainable_parameters", "seconds_mean", "seconds_std", "setting_description"]
    header += ["paired_baseline", "paired_metric", "paired_n", "paired_mean_diff", "paired_ci_low", "paired_ci_high",
               "paired_wilcoxon_w", "paired_p"]
    writer.writerow(header)

    def num(v: float | None) -> str:
        return "" if v is None else repr(round(v, 6))

    for g in board.groups:
        for r in g.rows:
            line = [g.index, r.method, r.label, int(r.reference), len(r.runs),
                    " ".join(f"{x.order}/{x.seed}" for x in r.runs)]
            for m in board.metrics:
                s = r.stats[m]
                line += [num(s.mean), num(s.std), s.n, "*" if m in r.best else ""]
            for t in task_names:
                s = r.tasks.get(t, Stat(None, None, 0))
                line += [num(s.mean), num(s.std), s.n, "*" if f"task:{t}" in r.best else ""]
            line += [num(r.ceiling.mean), num(r.task_id.mean)]
            line += [num(r.params.mean), num(r.seconds.mean), num(r.seconds.std),
                     describe_setting(g.setting).replace("`", "")]
            p = r.paired
            line += [g.baseline or "", board.paired_metric if g.baseline else "", "" if p is None else p.n]
            values = (p.mean_diff, p.ci_low, p.ci_high, p.statistic) if p else (None,) * 4
            line += [num(v) for v in values]
            # p to 6 significant digits: six decimals would cut a small p (2/4096 = 0.00048828) short
            line.append("" if p is None or p.p_value is None else f"{p.p_value:.6g}")
            writer.writerow(line)
    return buf.getvalue()


def write_output(path: str | os.PathLike, text: str) -> None:
    from ..rundir.atomic import atomic_write_text

    atomic_write_text(path, text)