"""The report's figures (PNG), drawn with matplotlib's object API (no pyplot state, no display).

Every figure shows the per-seed values as points next to their median, so a reader sees the spread
rather than one summary number.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from ..data.corruptions import CORRUPTIONS
from .records import RunRecord, group_label, group_order

MODE_COLORS = {"surrogate": "tab:blue", "hard": "tab:orange"}


def _offsets(n: int, width: float = 0.16) -> np.ndarray:
    """Deterministic horizontal offsets that spread n points around their x."""
    return np.zeros(1) if n == 1 else np.linspace(-width, width, n)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _by_rho(records: list[RunRecord]) -> dict[float, list[RunRecord]]:
    """Baseline (rho = 0) and SAST runs by rho: the SAST curve."""
    out: dict[float, list[RunRecord]] = {}
    for r in records:
        if r.method in ("baseline", "sast"):
            out.setdefault(r.rho, []).append(r)
    return dict(sorted(out.items()))


def accuracy_vs_rho(records: list[RunRecord], path: Path) -> Path:
    """Left: surrogate and hard accuracy vs rho; right: transfer gap vs rho (rho = 0 is the baseline).
    Points are seeds, lines join the medians; rho sits on evenly spaced grid positions."""
    by_rho = _by_rho(records)
    rhos = list(by_rho)
    x = np.arange(len(rhos))
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_acc, ax_gap = fig.subplots(1, 2)
    for mode, shift in (("surrogate", -0.12), ("hard", 0.12)):
        key = f"{mode}_acc"
        for xi, runs in zip(x, by_rho.values()):
            vals = [r.summary[key] for r in runs]
            ax_acc.scatter(xi + shift + _offsets(len(vals), 0.06), vals, s=14, alpha=0.7, color=MODE_COLORS[mode],
                           zorder=3)
        ax_acc.plot(x + shift, [np.median([r.summary[key] for r in runs]) for runs in by_rho.values()],
                    "-D", mfc="none", ms=8, color=MODE_COLORS[mode], label=f"{mode}: seeds, median")
    for xi, runs in zip(x, by_rho.values()):
        vals = [r.summary["transfer_gap"] for r in runs]
        ax_gap.scatter(xi + _offsets(len(vals), 0.08), vals, s=16, alpha=0.8, color="tab:red", zorder=3)
    ax_gap.plot(x, [np.median([r.summary["transfer_gap"] for r in runs]) for runs in by_rho.values()],
                "-D", mfc="none", ms=8, color="tab:red", label="gap: seeds, median")
    ax_gap.axhline(0.0, color="grey", lw=0.8, ls="--")
    for ax, ylabel, title in ((ax_acc, "test accuracy", "accuracy vs rho"),
                              (ax_gap, "transfer gap (surrogate - hard)", "transfer gap vs rho")):
        ax.set_xticks(x, [f"{r:g}" for r in rhos])
        ax.set_xlim(-0.5, len(rhos) - 0.5)
        ax.set_xlabel("rho (0 = baseline; grid positions)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def robustness_curves(records: list[RunRecord], path: Path) -> Path:
    """Accuracy vs severity, one panel per corruption (rows) and mode (columns): the baseline and
    SAST at each rho, median over seeds, with the seeds as faint points."""
    by_rho = {rho: [r for r in runs if r.evaluation and "robustness" in r.evaluation]
              for rho, runs in _by_rho(records).items()}
    by_rho = {rho: runs for rho, runs in by_rho.items() if runs}
    first = next(iter(by_rho.values()))[0].evaluation["robustness"]
    kinds = sorted(first["curves"], key=lambda k: CORRUPTIONS.index(k) if k in CORRUPTIONS else len(CORRUPTIONS))
    modes = ["surrogate", "hard"]
    fig = Figure(figsize=(4.2 * len(modes), 3.2 * len(kinds)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(kinds), len(modes), sharey=True, squeeze=False))
    positive = [rho for rho in by_rho if rho > 0]
    cmap = {rho: c for rho, c in zip(positive, _colors(len(positive)))}
    for i, kind in enumerate(kinds):
        for j, mode in enumerate(modes):
            ax = axes[i, j]
            for rho, runs in by_rho.items():
                sev = runs[0].evaluation["robustness"]["severities"]
                accs = np.array([r.evaluation["robustness"]["curves"][kind][mode]["acc"] for r in runs])
                color = "black" if rho == 0 else cmap[rho]
                label = "baseline" if rho == 0 else f"SAST rho={rho:g}"
                for row in accs:
                    ax.scatter(sev, row, s=8, alpha=0.25, color=color)
                # the baseline dashed and on top, so a SAST curve that coincides with it stays visible
                ax.plot(sev, np.median(accs, axis=0), "--o" if rho == 0 else "-o", ms=3, color=color,
                        lw=2.2 if rho == 0 else 1.2, zorder=4 if rho == 0 else 3, label=label)
            ax.set_title(f"{kind}, {mode} mode", fontsize=10)
            ax.set_xlabel("severity p")
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("test accuracy")
    axes[0, -1].legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def _colors(n: int):
    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.15, 0.85, n)] if n else []


def gap_strip(records: list[RunRecord], path: Path) -> Path:
    """Transfer gap per seed for every method (points), with the median as a bar."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.group, []).append(r)
    order = sorted(groups, key=group_order)
    fig = Figure(figsize=(max(5.0, 0.75 * len(order) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    for xi, g in enumerate(order):
        vals = [r.summary["transfer_gap"] for r in groups[g]]
        ax.scatter(xi + _offsets(len(vals), 0.12), vals, s=22, alpha=0.75, color="tab:red", zorder=3)
        ax.hlines(np.median(vals), xi - 0.3, xi + 0.3, color="black", lw=2, zorder=2)
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(order)), [group_label(*g) for g in order], rotation=35, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_ylabel("transfer gap (surrogate - hard)")
    ax.set_title("transfer gap per seed (bar: median)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def accuracy_vs_synops(rows: list[dict], path: Path) -> Path:
    """Hard accuracy against effective synaptic operations (left) and spikes (right) per inference,
    one colour per method and rho: seeds as points, the group's median as an open diamond. `rows`:
    activity_report.activity_rows."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["rho"]), []).append(row)
    order = sorted(groups, key=group_order)
    colors = colormaps["tab10" if len(order) <= 10 else "tab20"]
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, xlabel in ((axes[0], "synops_per_inference", "effective synaptic operations per inference"),
                            (axes[1], "spikes_per_inference", "spikes per inference")):
        for i, g in enumerate(order):
            pts = [(r[key], r["hard_acc"]) for r in groups[g] if r[key] is not None and r["hard_acc"] is not None]
            if not pts:
                continue
            x, y = np.array(pts, dtype=np.float64).T
            color = colors(i % colors.N)
            ax.scatter(x, y, s=18, alpha=0.7, color=color, zorder=3)
            ax.scatter(np.median(x), np.median(y), s=70, marker="D", facecolors="none", edgecolors=color,
                       linewidths=1.5, zorder=4, label=group_label(*g))
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 485.8k: readable where differences are small
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("hard accuracy (test)")
    axes[0].set_title("accuracy vs synaptic operations (hard mode; x axis zoomed)", fontsize=10)
    axes[1].set_title("accuracy vs spikes (hard mode; x axis zoomed)", fontsize=10)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), title="seeds; median (diamond)",
                   title_fontsize=7)
    return _save(fig, path)
