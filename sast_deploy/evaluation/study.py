"""A study over network settings (docs/transfer-gap.md: norm x pool x k): the runs under a folder
grouped by the training settings `by`, then by method and rho, as overview tables (markdown, CSV)
and plots. `sast-deploy report FOLDER --by bn,pool,k` writes it; the full report of one setting is
`sast-deploy report` on that setting's folder.

Every number is a median over seeds with the per-seed values next to it; changes against the
baseline are paired by seed within a setting. Nothing is filtered: every finished run is in a row.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import SastError
from ..jsonio import write_json
from .plots import _offsets, _save
from .records import BN_REESTIMATED, CALIBRATED, RunRecord, find_runs, group_label, group_order, split_method, \
    varying_settings
from .report import METRICS, _write_csv
from .report import _md as _table
from .stats import summarize

# (summary key, post-hoc suffix) -> colour, legend label; in drawing order
STYLES = {
    "gap": {("transfer_gap", ""): ("tab:red", "trained"),
            ("transfer_gap", CALIBRATED): ("tab:purple", "+ threshold calibration"),
            ("transfer_gap", BN_REESTIMATED): ("tab:green", "+ BN re-estimation")},
    "accuracy": {("surrogate_acc", ""): ("tab:blue", "surrogate"), ("hard_acc", ""): ("tab:orange", "hard"),
                 ("hard_acc", CALIBRATED): ("tab:purple", "hard + threshold calibration"),
                 ("hard_acc", BN_REESTIMATED): ("tab:green", "hard + BN re-estimation")},
}


def setting_label(by, values) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(by, values))


def _cells(records, by) -> dict[tuple, dict[tuple, list[RunRecord]]]:
    """{setting values: {(method, rho): runs}}, settings sorted, groups in report order."""
    out: dict[tuple, dict[tuple, list[RunRecord]]] = {}
    for r in records:
        out.setdefault(tuple(r.settings.get(k) for k in by), {}).setdefault(r.group, []).append(r)
    return {s: {g: out[s][g] for g in sorted(out[s], key=group_order)} for s in sorted(out, key=repr)}


def _seeds(runs, key) -> str:
    return " / ".join(f"{r.summary[key]:.3f}" for r in sorted(runs, key=lambda r: r.seed))


def study_rows(records, by) -> list[dict]:
    """One row per setting, method and rho: each metric's median, mean, std and per-seed values, and
    the median paired change against the same setting's baseline (same seed) of every metric."""
    rows = []
    for setting, groups in _cells(records, by).items():
        base = {r.seed: r.summary for r in groups.get(("baseline", 0.0), [])}
        extensions = sorted({e for runs in groups.values() for r in runs for e in r.summary.get("extensions", [])})
        for (method, rho), runs in groups.items():
            runs = sorted(runs, key=lambda r: r.seed)
            row = {**dict(zip(by, setting)), "setting": setting_label(by, setting),
                   "extensions": ", ".join(extensions), "label": group_label(method, rho),
                   "method": method, "rho": rho, "n": len(runs), "seeds": " / ".join(str(r.seed) for r in runs)}
            for key, name in METRICS:
                s = summarize([r.summary[key] for r in runs])
                paired = [r.summary[key] - base[r.seed][key] for r in runs if r.seed in base]
                row.update({f"{name}_median": s["median"], f"{name}_mean": s["mean"], f"{name}_std": s["std"],
                            f"{name}_per_seed": _seeds(runs, key),
                            f"{name}_delta_median": summarize(paired)["median"] if method != "baseline" else 0.0})
            times = [r.summary.get("time_per_epoch_s") for r in runs]
            row["time_per_epoch_s_median"] = summarize(times)["median"]
            rows.append(row)
    return rows


def bn_rows(records, by) -> list[dict]:
    """Per setting and BN re-estimated row: per BatchNorm layer, the median over seeds of how far the
    training-time statistics were from the hard-mode ones and from the exact surrogate-mode ones."""
    rows = []
    for setting, groups in _cells(records, by).items():
        for (method, rho), runs in groups.items():
            recs = [r.bn_recalibration for r in sorted(runs, key=lambda r: r.seed) if r.bn_recalibration]
            if not recs:
                continue
            row = {"setting": setting_label(by, setting), "label": group_label(method, rho), "n": len(recs)}
            for mode in ("hard", "surrogate"):
                for stat in ("shift_sigma", "std_ratio"):
                    per_layer = np.array([[layer[f"{mode}_vs_running"][stat] for layer in b["layers"]] for b in recs])
                    row[f"{mode}_{stat}"] = " / ".join(f"{v:.2f}" for v in np.median(per_layer, axis=0))
            rows.append(row)
    return rows


def _md(header, body) -> list[str]:
    return [_table(header, body), ""]


def _setting_cell(row) -> str:
    ext = row["extensions"]
    return row["setting"] + (f" *(practical extension: {ext})*" if ext else "")


def _wide(rows, columns, cell) -> list[list]:
    by_setting: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_setting.setdefault(_setting_cell(row), {})[row["label"]] = row
    return [[s] + [cell(cols[c]) if c in cols else "-" for c in columns] for s, cols in by_setting.items()]


def study_markdown(folder, by, rows, bn: list[dict] = ()) -> str:
    labels = list(dict.fromkeys(row["label"] for row in sorted(rows, key=lambda r: group_order((r["method"], r["rho"])))))
    trained = [l for l in labels if not any(row["label"] == l and split_method(row["method"])[1] for row in rows)]
    posthoc = [l for l in labels if l not in trained]
    gap = lambda r: f"{r['gap_median']:+.3f} ({r['gap_per_seed']})"  # noqa: E731
    acc = lambda r: f"{r['surrogate_median']:.3f} / {r['hard_median']:.3f}"  # noqa: E731
    out = [f"# sast-deploy study: {folder}", "",
           f"{len({row['setting'] for row in rows})} settings of {', '.join(by)}; "
           f"{sum(row['n'] for row in rows)} runs. Median over seeds, per-seed values in brackets (seed order "
           "as in the `seeds` column of study.csv). Transfer gap = surrogate - hard test accuracy; a post-hoc row's "
           "surrogate accuracy is its trained network's. Settings outside the paper's theory are marked "
           "*practical extension* (training-mode BatchNorm, MaxPool).", "",
           "## Transfer gap: trained networks", "", *_md(["setting", *trained], _wide(rows, trained, gap))]
    if posthoc:
        out += ["## Transfer gap after the post-hoc controls", "", *_md(["setting", *posthoc], _wide(rows, posthoc, gap))]
    out += ["## Test accuracy: surrogate / hard (medians)", "", *_md(["setting", *labels], _wide(rows, labels, acc))]
    changes = [row for row in rows if row["method"] != "baseline"]
    if changes:
        out += ["## Against the baseline of the same setting, paired by seed (medians of the differences)", "",
                *_md(["setting", "row", "seeds", "d surrogate", "d hard", "d gap", "time/epoch (s)"],
                     [[r["setting"], r["label"], r["n"], f"{r['surrogate_delta_median']:+.3f}",
                       f"{r['hard_delta_median']:+.3f}", f"{r['gap_delta_median']:+.3f}",
                       f"{r['time_per_epoch_s_median']:.2f}"] for r in changes])]
    if bn:
        out += ["## BatchNorm statistics: training-time (running) vs measured, per BatchNorm layer", "",
                "Median over seeds (of the median over channels) of |mean shift| / sigma_running and of "
                "sigma / sigma_running; layers separated by '/'. Hard: the statistics BN re-estimation sets; "
                "surrogate: the exact surrogate-mode statistics of the trained network on the same data.", "",
                *_md(["setting", "row", "seeds", "hard: shift (sigma)", "hard: std ratio", "surrogate: shift (sigma)",
                      "surrogate: std ratio"],
                     [[r["setting"], r["label"], r["n"], r["hard_shift_sigma"], r["hard_std_ratio"],
                       r["surrogate_shift_sigma"], r["surrogate_std_ratio"]] for r in bn])]
    return "\n".join(out)


def _grid(settings: list[tuple]) -> tuple[list, list]:
    """Panel rows: the values of the first key; columns: the combinations of the others."""
    rows = list(dict.fromkeys(s[0] for s in settings))
    cols = list(dict.fromkeys(s[1:] for s in settings))
    return rows, cols


def study_plot(records, by, path: Path, what: str) -> Path:
    """One panel per setting. what='gap': transfer gap vs rho for the trained runs and each post-hoc
    control; what='accuracy': surrogate and hard accuracy vs rho (hard also after each control).
    Points are seeds, lines join the medians; rho on evenly spaced grid positions shared by all panels."""
    cells = _cells(records, by)
    rhos = sorted({rho for groups in cells.values() for (_, rho) in groups})
    pos = {rho: i for i, rho in enumerate(rhos)}
    prow, pcol = _grid(list(cells))
    fig = Figure(figsize=(3.4 * len(pcol) + 1, 2.9 * len(prow) + 0.8), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(prow), len(pcol), sharex=True, sharey=True, squeeze=False))
    for ax in axes.flat:
        ax.set_visible(False)
    for setting, groups in cells.items():
        ax = axes[prow.index(setting[0]), pcol.index(setting[1:])]
        ax.set_visible(True)
        series: dict[tuple, dict[float, list[float]]] = {key: {} for key in STYLES[what]}
        for (method, rho), runs in groups.items():
            base, suffix = split_method(method)
            for key, suf in STYLES[what]:
                if base in ("baseline", "sast") and suf == suffix:
                    series[(key, suf)][rho] = [r.summary[key] for r in runs]
        series = {k: v for k, v in series.items() if v}
        for n, (style, points) in enumerate(series.items()):
            color, name = STYLES[what][style]
            shift = (n - (len(series) - 1) / 2) * 0.1
            xs = [pos[rho] + shift for rho in points]
            for x, vals in zip(xs, points.values()):
                ax.scatter(x + _offsets(len(vals), 0.025), vals, s=10, alpha=0.6, color=color, zorder=3)
            ax.plot(xs, [np.median(v) for v in points.values()], "-D", mfc="none", ms=6, color=color, label=name)
        if what == "gap":
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_title(setting_label(by, setting), fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_xticks(range(len(rhos)), [f"{r:g}" for r in rhos])
        ax.set_xlim(-0.5, len(rhos) - 0.5)
    for ax in axes[-1]:
        ax.set_xlabel("rho (0 = baseline)")
    for ax in axes[:, 0]:
        ax.set_ylabel("transfer gap (surrogate - hard)" if what == "gap" else "test accuracy", fontsize=9)
    handles = {}
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle("transfer gap per setting: seeds (points) and medians" if what == "gap"
                 else "test accuracy per setting: seeds (points) and medians", fontsize=11)
    return _save(fig, path)


def write_study(folder, out=None, by=()) -> dict:
    """study.md, study.csv (one row per setting, method and rho), study.json (those rows and the
    BatchNorm statistics rows) and plots/study_{gap,accuracy}.png for the runs under `folder`
    grouped by the training settings `by` (default output folder: FOLDER/report). Returns {name: path}."""
    folder = Path(folder)
    records = find_runs(folder)
    if not records:
        raise SastError(f"{folder}: no finished runs (folders with summary.json and model.safetensors) under it")
    known = set().union(*(r.settings for r in records))
    unknown = [k for k in by if k not in known]
    if unknown or not by:
        raise SastError(f"--by {','.join(by)}: give training settings of the runs; these differ between them: "
                        f"{', '.join(varying_settings(records)) or 'none'}")
    out = Path(out) if out is not None else folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows, bn = study_rows(records, by), bn_rows(records, by)
    paths = {"csv": out / "study.csv", "json": out / "study.json", "markdown": out / "study.md"}
    _write_csv(paths["csv"], rows)
    write_json(paths["json"], {"rows": rows, "batchnorm": bn})
    plots = {w: study_plot(records, by, out / "plots" / f"study_{w}.png", w) for w in ("gap", "accuracy")}
    md = study_markdown(folder, by, rows, bn)
    paths["markdown"].write_text(md + "\n## Plots\n\n" + "\n".join(f"![{w}](plots/{p.name})" for w, p in plots.items())
                                 + "\n")
    return {**paths, **{f"plot_study_{w}": p for w, p in plots.items()}}
