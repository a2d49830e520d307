"""The report's activity rows: hard accuracy next to spikes and synaptic operations per inference
(definitions: evaluation/activity.py, docs/activity.md), per run and per method and rho.

A run's activity comes from its summary.json (the trainer counts it on the test split) or, for a
run whose summary has none (a calibrated copy, a run trained before activity was counted), from
its current evaluation.json (`sast-deploy evaluate` counts it on the evaluated split).
"""
from __future__ import annotations

import math

from .activity import HEADLINE
from .records import RunRecord, by_group, group_label
from .stats import summarize

COLUMNS = (("hard_acc", "hard accuracy"), ("spikes_per_inference", "spikes/inference"),
           ("synops_per_inference", "synops/inference"), ("activation_sparsity", "activation sparsity"))


def activity_record(r: RunRecord) -> dict | None:
    """The run's full activity record, or None where neither file has one."""
    for source in (r.summary, r.evaluation or {}):
        if source.get("activity"):
            return source["activity"]
    return None


def activity_value(r: RunRecord, key: str):
    """One headline activity value of a run (HEADLINE keys), None where it was not counted."""
    a = activity_record(r)
    return None if a is None else a[key]


def activity_rows(records: list[RunRecord]) -> list[dict]:
    """activity.csv: one row per run with an activity record: accuracy, the headline metrics, the
    operation counts, footprint, connection sparsity and every layer's spike rate."""
    rows = []
    for r in records:
        a = activity_record(r)
        if a is None:
            continue
        ops, fp = a["synops"] or {}, a["footprint_bytes"] or {}
        rows.append({"label": r.label, "method": r.method, "rho": r.rho, "seed": r.seed,
                     "hard_acc": r.summary.get("hard_acc"), "samples": a["samples"], "T": a["T"],
                     **{k: a[k] for k in HEADLINE}, "spike_rate": a["spike_rate"],
                     "synops_dense": ops.get("dense"), "effective_acs": ops.get("effective_acs"),
                     "effective_macs": ops.get("effective_macs"), "footprint_float32_bytes": fp.get("float32"),
                     "footprint_fixed_bytes": fp.get("fixed"), "connection_sparsity": a["connection_sparsity"],
                     **{f"spike_rate_layer{layer['layer']}": layer["spike_rate"] for layer in a["layers"]}})
    return rows


def _cell(s: dict, key: str) -> str:
    """mean ± std: accuracies and sparsities to 3 decimals, counts as whole numbers (1 decimal below 100)."""
    if not s["n"]:
        return "-"
    m, sd = s["mean"], s["std"]
    if key in ("hard_acc", "activation_sparsity"):
        return f"{m:.3f} ± {sd:.3f}"
    return f"{m:,.0f} ± {sd:,.0f}" if abs(m) >= 100 else f"{m:.1f} ± {sd:.1f}"


def activity_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    """(header, body) of the markdown table: per method and rho, mean ± std over seeds of each
    COLUMNS metric; spikes and synops also as the ratio of their means to the baseline's."""
    groups = by_group(rows, lambda row: (row["method"], row["rho"]))
    stats = {g: {k: summarize([row[k] for row in grp]) for k, _ in COLUMNS} for g, grp in groups.items()}
    base = stats.get(("baseline", 0.0))
    ratio_keys = HEADLINE[:2]  # spikes and synops per inference
    header = ["method", "seeds"]
    for key, name in COLUMNS:
        header += [name] + (["x baseline"] if key in ratio_keys else [])
    body = []
    for g in groups:
        cells = [group_label(*g), len(groups[g])]
        for key, _ in COLUMNS:
            cells.append(_cell(stats[g][key], key))
            if key in ratio_keys:
                ratio = stats[g][key]["mean"] / base[key]["mean"] if base and base[key]["mean"] else math.nan
                cells.append(f"{ratio:.3f}" if math.isfinite(ratio) else "-")
        body.append(cells)
    return header, body
