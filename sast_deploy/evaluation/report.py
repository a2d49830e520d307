"""Reports of a sweep (or any folder of runs): the paper's Table II and IV analogues, robustness,
calibration and diagnostics, as markdown and CSV, with plots (DESIGN §5).

Across seeds every number is given as mean ± std (sample std), median [q25, q75], and per seed.
Nothing is filtered or chosen: every finished run under the folder is in the tables.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from ..data.corruptions import CORRUPTIONS
from ..errors import SastError
from ..jsonio import write_json
from .activity import HEADLINE
from .activity_report import activity_rows, activity_table, activity_value
from .plots import accuracy_vs_rho, accuracy_vs_synops, gap_strip, robustness_curves
from .protocol import MODES, evaluate_run
from .records import RunRecord, by_group, find_runs, group_label, is_posthoc, varying_settings
from .stats import summarize

METRICS = (("surrogate_acc", "surrogate"), ("hard_acc", "hard"), ("transfer_gap", "gap"))


def fmt(v, digits: int = 3) -> str:
    """A number for a table: fixed point, scientific when tiny or huge, '-' when missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    a = abs(v)
    return f"{v:.{digits}g}" if a and (a < 1e-3 or a >= 1e4) else f"{v:.{digits}f}"


def mean_std(s: dict, digits: int = 3) -> str:
    return f"{fmt(s['mean'], digits)} ± {fmt(s['std'], digits)}"


def median_iqr(s: dict, digits: int = 3) -> str:
    return f"{fmt(s['median'], digits)} [{fmt(s['q25'], digits)}, {fmt(s['q75'], digits)}]"


def _per_seed(runs: list[RunRecord], values) -> str:
    return "; ".join(f"s{r.seed}={fmt(v)}" for r, v in zip(runs, values))


# -- tables (lists of flat dicts: one CSV row each) ----------------------------------------------
def table2(records) -> list[dict]:
    """Accuracy and transfer gap per method and rho, long format (one row per metric)."""
    rows = []
    for (method, rho), runs in by_group(records).items():
        for key, name in METRICS:
            vals = [r.summary[key] for r in runs]
            rows.append({"label": group_label(method, rho), "method": method, "rho": rho, "metric": name,
                         **summarize(vals), "per_seed": _per_seed(runs, vals)})
    return rows


def runs_table(records) -> list[dict]:
    """One row per run: the raw per-seed values."""
    keys = ("surrogate_acc", "hard_acc", "transfer_gap", "time_per_epoch_s", "peak_mem_mb", "B1", "M_theta_hat",
            "gamma_hat", "samples")
    return [{"label": r.label, "method": r.method, "rho": r.rho, "seed": r.seed, "dir": os.fspath(r.dir),
             **{k: r.summary.get(k) for k in keys}, "lambdas": r.summary.get("lambdas"),
             **{k: activity_value(r, k) for k in HEADLINE}} for r in records]


def paired_gaps(records) -> list[dict]:
    """Each method's gap minus the baseline's gap on the same seed (training methods only)."""
    base = {r.seed: r.summary["transfer_gap"] for r in records if r.method == "baseline"}
    rows = []
    for (method, rho), runs in by_group(records).items():
        if method == "baseline" or is_posthoc(method):
            continue
        pairs = [(r.seed, r.summary["transfer_gap"] - base[r.seed]) for r in runs if r.seed in base]
        if pairs:
            diffs = [d for _, d in pairs]
            rows.append({"label": group_label(method, rho), "method": method, "rho": rho, "paired_seeds": len(pairs),
                         "median_delta_gap": summarize(diffs)["median"],
                         "seeds_smaller_gap": sum(d < 0 for d in diffs), "seeds_equal_gap": sum(d == 0 for d in diffs),
                         "seeds_larger_gap": sum(d > 0 for d in diffs),
                         "per_seed": "; ".join(f"s{s}={d:+.3f}" for s, d in pairs)})
    return rows


def table4(records) -> list[dict]:
    """Cost per method: time per epoch and peak memory, and their ratio to the baseline's mean."""
    groups = {g: runs for g, runs in by_group(records).items() if not is_posthoc(g[0])}
    base = groups.get(("baseline", 0.0), [])
    ref = {k: summarize([r.summary.get(k) for r in base])["mean"] if base else math.nan
           for k in ("time_per_epoch_s", "peak_mem_mb")}
    rows = []
    for (method, rho), runs in groups.items():
        row = {"label": group_label(method, rho), "method": method, "rho": rho, "n": len(runs)}
        for k in ("time_per_epoch_s", "peak_mem_mb"):
            s = summarize([r.summary.get(k) for r in runs])
            row.update({f"{k}_mean": s["mean"], f"{k}_std": s["std"], f"{k}_median": s["median"],
                        f"{k}_factor": s["mean"] / ref[k] if ref[k] else math.nan})
        rows.append(row)
    return rows


def calibration_table(records) -> list[dict]:
    """Per calibrated run: the lambdas chosen on val and the hard accuracy they give on val and test."""
    rows = []
    for r in records:
        c = r.calibration
        if not c:
            continue
        t = c["test"]
        rows.append({"label": r.label, "rho": r.rho, "seed": r.seed, "selected_on": c["split"],
                     "lambda_global": c["global"]["lambdas"], "lambda_per_layer": c["per-layer"]["lambdas"],
                     "val_uncalibrated": c["uncalibrated_val_hard_acc"], "val_global": c["global"]["val_hard_acc"],
                     "val_per_layer": c["per-layer"]["val_hard_acc"], "test_surrogate": t["surrogate_acc"],
                     "test_uncalibrated": t["uncalibrated_hard_acc"], "test_global": t["global_hard_acc"],
                     "test_per_layer": t["per-layer_hard_acc"], "copy_uses": c["method"]})
    return rows


def bn_reestimation_table(records) -> list[dict]:
    """Per BN re-estimated copy: how far the training-time statistics were from hard mode's (per
    BatchNorm layer) and the test accuracies before and after."""
    rows = []
    for r in records:
        b = r.bn_recalibration
        if not b:
            continue
        t, key = b["test"], f"{b['mode']}_vs_running"
        rows.append({"label": r.label, "rho": r.rho, "seed": r.seed, "samples": b["samples"],
                     "shift_sigma": [round(layer[key]["shift_sigma"], 4) for layer in b["layers"]],
                     "std_ratio": [round(layer[key]["std_ratio"], 4) for layer in b["layers"]],
                     "test_surrogate": t["surrogate_acc"], "test_hard_before": t["source_hard_acc"],
                     "test_hard_after": t["hard_acc"], "test_surrogate_after": t["reestimated_surrogate_acc"]})
    return rows


def robustness_table(records) -> list[dict]:
    """One row per run, corruption and mode: mean and AUC of the curve and the accuracy at each p."""
    rows = []
    for r in records:
        rob = (r.evaluation or {}).get("robustness")
        if not rob:
            continue
        for kind, curve in rob["curves"].items():
            for mode in MODES:
                c = curve[mode]
                rows.append({"label": r.label, "method": r.method, "rho": r.rho, "seed": r.seed, "corruption": kind,
                             "family": curve["family"], "mode": mode, "mean": c["mean"], "auc": c["auc"],
                             **{f"acc_p{p:g}": a for p, a in zip(rob["severities"], c["acc"])}})
    return rows


def diagnostics_table(records) -> list[dict]:
    """One row per run with diagnostics: the scalars the report aggregates."""
    rows = []
    for r in records:
        d = (r.evaluation or {}).get("diagnostics")
        if not d:
            continue
        row = {"label": r.label, "method": r.method, "rho": r.rho, "seed": r.seed, "samples": d["samples"],
               **d["constants"], "loss": d["loss"],
               **{f"sam_gap_r{k}": v for k, v in d["sam_gap"].items()}}
        for key in ("grad_w_norm", "grad_x_norm", "sigma_min_JJt"):
            row.update({f"{key}_{s}": d[key][s] for s in ("mean", "std", "median", "q25", "q75")})
        row.update({"beta_hat_secant": d["secant"]["beta_hat"], "beta_bound": d["beta_bound"]["beta"],
                    "beta_bound_radius": d["beta_bound"]["radius"]})
        rows.append(row)
    return rows


# -- markdown ------------------------------------------------------------------------------------
def _md(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _row_group(row: dict) -> tuple[str, float]:
    return row["method"], row["rho"]


def _intro(folder: Path, records) -> list[str]:
    def names(key):
        return ", ".join(sorted({str(r.summary.get(key)) for r in records}))
    runs = f"{len(records)} finished run{'s' if len(records) != 1 else ''}"
    out = [f"# sast-deploy report: {folder}", "",
           f"{runs}; dataset {names('dataset')}; split {names('split')}. Transfer gap = surrogate accuracy - "
           "hard accuracy (Definition II.6: same weights, thresholds, leak, reset and binning; only sigma -> H). "
           "Post-hoc rows are labelled: the hard accuracy of '+ calibration' uses calibrated thresholds, that of "
           "'+ BN re-estimation' BatchNorm statistics re-estimated in hard mode. Across seeds: "
           "mean ± std (sample std), median [q25, q75]; per-seed values below and in runs.csv.", ""]
    varying = varying_settings(records)
    if varying:
        out += [f"**The runs differ in {', '.join(varying)}: the rows below pool them.** For one row per setting, "
                f"use `sast-deploy report FOLDER --by {','.join(varying)}`.", ""]
    missing = [str(r.dir) for r in records if r.evaluation is None]
    if missing and len(missing) == len(records):
        out += ["All runs are without a current evaluation.json: no robustness or diagnostics tables.", ""]
    elif missing:
        out += [f"Not in the robustness and diagnostics tables ({len(missing)} runs without a current "
                "evaluation.json; run `sast-deploy evaluate --run RUN --robustness --diagnostics`): "
                + ", ".join(missing), ""]
    return out


def _accuracy_section(tables: dict) -> list[str]:
    by: dict[tuple, dict] = {}
    for row in tables["table2"]:
        by.setdefault((row["method"], row["rho"]), {})[row["metric"]] = row
    header = ["method", "seeds"] + [f"{m} {k}" for _, m in METRICS for k in ("mean ± std", "median [IQR]")]
    body = [[group_label(*g), m["gap"]["n"]]
            + [c for _, name in METRICS for c in (mean_std(m[name]), median_iqr(m[name]))] for g, m in by.items()]
    out = ["## Accuracy and transfer gap (Table II analogue)", "", _md(header, body), ""]
    if tables["paired_gaps"]:
        out += ["### Gap against the baseline, paired by seed", "",
                "Delta gap = method's gap - baseline's gap on the same seed; negative means a smaller gap.", "",
                _md(["method", "paired seeds", "median delta gap", "smaller / equal / larger", "per seed"],
                    [[row["label"], row["paired_seeds"], f"{row['median_delta_gap']:+.3f}",
                      f"{row['seeds_smaller_gap']} / {row['seeds_equal_gap']} / {row['seeds_larger_gap']}",
                      row["per_seed"]] for row in tables["paired_gaps"]]), ""]
    return out + ["### Per-seed values", "",
                  _md(["method", "seed", "surrogate", "hard", "gap"],
                      [[row["label"], row["seed"], fmt(row["surrogate_acc"]), fmt(row["hard_acc"]),
                        f"{row['transfer_gap']:+.3f}"] for row in tables["runs"]]), ""]


def _cost_section(rows: list[dict]) -> list[str]:
    def cell(row, key, digits=3):
        return f"{fmt(row[f'{key}_mean'], digits)} ± {fmt(row[f'{key}_std'], digits)}"
    body = [[row["label"], row["n"], cell(row, "time_per_epoch_s"), fmt(row["time_per_epoch_s_factor"], 2),
             cell(row, "peak_mem_mb", 1), fmt(row["peak_mem_mb_factor"], 2)] for row in rows]
    return ["## Cost (Table IV analogue)", "",
            "Time per training epoch and peak memory (CPU: the process's peak RSS; GPU: allocator peak); "
            "factor = method mean / baseline mean.", "",
            _md(["method", "seeds", "time/epoch (s)", "x baseline", "peak memory (MB)", "x baseline"], body), ""]


def _calibration_section(rows: list[dict]) -> list[str]:
    def trio(row, split):
        return " / ".join(fmt(row[f"{split}_{m}"]) for m in ("uncalibrated", "global", "per_layer"))
    body = [[row["label"], row["seed"], row["lambda_global"], row["lambda_per_layer"], trio(row, "val"),
             trio(row, "test"), fmt(row["test_surrogate"])] for row in rows]
    return ["## Threshold calibration", "",
            "Weights frozen; thresholds scaled by lambda chosen on the validation split by hard accuracy "
            "(global lambda from {0.5, ..., 1.5}, then per-layer coordinate search), applied once to test.", "",
            _md(["row", "seed", "lambda global", "lambda per layer", "val hard: none / global / per-layer",
                 "test hard: none / global / per-layer", "test surrogate"], body), ""]


def _bn_section(rows: list[dict]) -> list[str]:
    body = [[row["label"], row["seed"], row["samples"], row["shift_sigma"], row["std_ratio"], fmt(row["test_surrogate"]),
             f"{fmt(row['test_hard_before'])} -> {fmt(row['test_hard_after'])}", fmt(row["test_surrogate_after"])]
            for row in rows]
    return ["## BatchNorm re-estimation", "",
            "Weights frozen, labels unused: every BatchNorm layer's running mean and variance re-estimated from "
            "hard-mode forward passes over the training split (docs/transfer-gap.md). Shift and std ratio: how far "
            "the training-time statistics were from the hard-mode ones, per BatchNorm layer (median over channels "
            "of |mean shift| / sigma and of sigma_hard / sigma).", "",
            _md(["row", "seed", "train recordings", "mean shift (sigma)", "std ratio", "test surrogate",
                 "test hard: before -> after", "test surrogate after"], body), ""]


def _robustness_sections(rows: list[dict]) -> list[str]:
    kinds = [k for k in CORRUPTIONS if any(row["corruption"] == k for row in rows)]
    severities = sorted({float(k[len("acc_p"):]) for row in rows for k in row if k.startswith("acc_p")})
    cols = [(k, m) for k in kinds for m in MODES]
    out = []
    for stat, title in (("mean", "mean accuracy over severities"), ("auc", "area under the accuracy-severity curve")):
        body = [[group_label(*g), len({row["seed"] for row in grp})]
                + [mean_std(summarize([row[stat] for row in grp if (row["corruption"], row["mode"]) == c]))
                   for c in cols] for g, grp in by_group(rows, _row_group).items()]
        out += [f"## Robustness: {title}", "",
                f"Severities p = {', '.join(f'{p:g}' for p in severities)}; family 1 = voxel-drop, family 2 = "
                "time-jitter and bin-drop; identical corrupted inputs for every method; mean ± std over seeds.", "",
                _md(["method", "seeds"] + [f"{k} {m}" for k, m in cols], body), ""]
    return out


def _diagnostics_section(rows: list[dict]) -> list[str]:
    radii = sorted({k[len("sam_gap_r"):] for row in rows for k in row if k.startswith("sam_gap_r")}, key=float)
    columns = ([("gamma_hat", "gamma_hat"), ("M_theta_hat", "M_theta_hat")]
               + [(f"sam_gap_r{r}", f"SAM gap r={r}") for r in radii]
               + [("grad_w_norm_median", "median grad_w l"), ("grad_x_norm_median", "median grad_x l"),
                  ("sigma_min_JJt_median", "median sigma_min(JJ^T)"), ("beta_hat_secant", "secant beta_hat"),
                  ("beta_bound", "bound beta")])
    body = [[group_label(*g), len(grp)] + [fmt(summarize([row.get(k) for row in grp])["median"]) for k, _ in columns]
            for g, grp in by_group(rows, _row_group).items()]
    return ["## Theory diagnostics", "",
            f"Surrogate mode, float64, {rows[0]['samples']} held-out examples; median over seeds (per-seed values "
            "and per-example spreads in diagnostics.csv). Secant beta_hat: max over random directions and radii; "
            f"bound beta: our conservative bound on the ball of radius {fmt(rows[0]['beta_bound_radius'])} "
            "(docs/theory.md), in the spirit of the paper's Appendix A.", "",
            _md(["method", "seeds"] + [name for _, name in columns], body), ""]


def _activity_section(rows: list[dict]) -> list[str]:
    return ["## Activity (hard mode, per inference)", "",
            "Spikes of all LIF layers and effective synaptic operations (ACs on spikes + MACs on graded "
            "values: a nonzero input times a nonzero weight, on the folded network) per test recording, "
            "NeuroBench's definitions (docs/activity.md); activation sparsity = 1 - spike rate. mean ± std over "
            "seeds; x baseline = ratio of means; per-seed values, operation counts and footprint in activity.csv.",
            "", _md(*activity_table(rows)), ""]


def markdown(folder: Path, records, tables: dict, plots: dict) -> str:
    """report.md: every table that has rows, then the plots."""
    parts = _intro(folder, records) + _accuracy_section(tables) + _cost_section(tables["table4"])
    if tables["activity"]:
        parts += _activity_section(tables["activity"])
    if tables["calibration"]:
        parts += _calibration_section(tables["calibration"])
    if tables["bn_reestimation"]:
        parts += _bn_section(tables["bn_reestimation"])
    if tables["robustness"]:
        parts += _robustness_sections(tables["robustness"])
    if tables["diagnostics"]:
        parts += _diagnostics_section(tables["diagnostics"])
    if plots:
        parts += ["## Plots", ""] + [f"![{name}](plots/{Path(p).name})" for name, p in plots.items()] + [""]
    return "\n".join(parts)


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def write_report(folder, out=None) -> dict:
    """Write report.md, the CSV tables, report.json and plots/*.png for the runs under `folder`
    (default output folder: FOLDER/report). Returns {name: path}."""
    folder = Path(folder)
    records = find_runs(folder)
    if not records:
        raise SastError(f"{folder}: no finished runs (folders with summary.json and model.safetensors) under it; "
                        "run `sast-deploy sweep --out` or `sast-deploy train --out` there first")
    out = Path(out) if out is not None else folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    tables = {"table2": table2(records), "runs": runs_table(records), "paired_gaps": paired_gaps(records),
              "table4": table4(records), "calibration": calibration_table(records),
              "bn_reestimation": bn_reestimation_table(records),
              "robustness": robustness_table(records), "diagnostics": diagnostics_table(records),
              "activity": activity_rows(records)}
    paths = {}
    for name, rows in tables.items():
        if rows:
            paths[name] = out / f"{name}.csv"
            _write_csv(paths[name], rows)
    plots = {}
    if any(r.method in ("baseline", "sast") for r in records):
        plots["accuracy_vs_rho"] = accuracy_vs_rho(records, out / "plots" / "accuracy_vs_rho.png")
    if any(r.method in ("baseline", "sast") and r.evaluation and "robustness" in r.evaluation for r in records):
        plots["robustness"] = robustness_curves(records, out / "plots" / "robustness.png")
    plots["gap_strip"] = gap_strip(records, out / "plots" / "gap_strip.png")
    if tables["activity"]:
        plots["accuracy_vs_synops"] = accuracy_vs_synops(tables["activity"], out / "plots" / "accuracy_vs_synops.png")
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(markdown(folder, records, tables, plots))
    paths["json"] = out / "report.json"
    write_json(paths["json"], tables)
    return {**paths, **{f"plot_{k}": v for k, v in plots.items()}}


def evaluate_and_report(folder, progress: bool = True, **options) -> dict:
    """Evaluate every finished run under `folder` whose evaluation.json is missing or older than its
    summary.json (robustness grid, and diagnostics for trained runs; `options` go to `evaluate_run`),
    then write the report into FOLDER/report (the demo's last step). Returns the paths written."""
    for r in find_runs(folder):
        if r.evaluation is None:
            evaluate_run(r.dir, robustness=True, diagnostics=not is_posthoc(r.method), progress=progress, **options)
    return write_report(folder)
