"""The measured trade-off of the shipped defenses, for every job's privacy report.

`measured_tradeoff.json` beside this module is written by `benchmarks/privacy_bench.py --write-tradeoff`: per sweep
(epochs, paired seeds, crypto mode, date) and per table and defense setting, the median test-AUC drop against the
undefended run of the same seed, the worst leak AUC of either label-inference attack in any seed, and ε where the
defense has one. The active party's report lists it with the job's own setting marked, and draws it as
privacy_tradeoff.png (leak AUC against AUC drop), so whoever reads the report sees what the chosen defense costs and
buys, as measured, beside the alternatives.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MEASURED = Path(__file__).with_name("measured_tradeoff.json")
PLOT = "privacy_tradeoff.png"


def load_measured(path: Path = MEASURED) -> list[dict[str, Any]]:
    """The sweeps the bench recorded (empty if none was)."""
    if not path.exists():
        return []
    return json.loads(path.read_text()).get("sweeps", [])


def matches(row: dict[str, Any], defense: dict[str, Any]) -> bool:
    """Whether a measured setting is the defense a job used (its name and every parameter the bench varied)."""
    if row["defense"] != defense.get("defense", "none"):
        return False
    return all(defense.get(key) == value for key, value in (row.get("params") or {}).items())


def tradeoff_for_report(defense: dict[str, Any], path: Path = MEASURED) -> list[dict[str, Any]]:
    """Every measured setting, each marked `this_job` when it is the job's defense."""
    rows = []
    for sweep in load_measured(path):
        for row in sweep["summary"]:
            rows.append({"epochs": sweep["epochs"], "seeds": len(sweep["seeds"]), "crypto": sweep["crypto"],
                         "measured": sweep.get("measured"), **{k: row[k] for k in
                         ("table", "setting", "defense", "params", "median_drop", "worst_leak", "epsilon")},
                         "this_job": matches(row, defense)})
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    first = rows[0]
    lines = [f"## Measured trade-off of the shipped defenses (benchmarks/privacy_bench.py, {first['crypto']} split "
             f"learning, {first['seeds']} paired seeds)", "",
             "| table | epochs | defense | median AUC drop | worst leak AUC | ε |", "|---|---|---|---|---|---|"]
    for r in rows:
        mark = " **(this job)**" if r["this_job"] else ""
        epsilon = f"{r['epsilon']:.1f}" if r["epsilon"] else "none"
        lines.append(f"| {r['table']} | {r['epochs']} | {r['setting']}{mark} | {r['median_drop']:+.4f} | "
                     f"{r['worst_leak']:.3f} | {epsilon} |")
    return lines + [""]


def write_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Leak AUC against AUC drop per table and epochs, the job's own setting circled; None without measurements."""
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vfl.data.atomic import atomic_write
    panels = sorted(dict.fromkeys((r["table"], r["epochs"]) for r in rows), key=lambda p: (p[1], p[0]))
    columns = min(2, len(panels))
    lines = -(-len(panels) // columns)
    figure = Figure(figsize=(6.5 * columns, 4.8 * lines))
    FigureCanvasAgg(figure)
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    colors = {"none": "black", "dp": "tab:blue", "max_norm": "tab:orange", "marvell": "tab:green"}
    for ax, (table, epochs) in zip(axes, panels):
        for r in (r for r in rows if (r["table"], r["epochs"]) == (table, epochs)):
            ax.plot(r["median_drop"], r["worst_leak"], "o", color=colors.get(r["defense"], "grey"),
                    markersize=11 if r["this_job"] else 5, markerfacecolor="none" if r["this_job"] else None)
            text = r["setting"] + (f", ε={r['epsilon']:.1f}" if r["epsilon"] else "")
            ax.annotate(text, (r["median_drop"], r["worst_leak"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(0.60, color="grey", linestyle=":", linewidth=0.8)
        ax.axvline(0.01, color="grey", linestyle=":", linewidth=0.8)
        ax.set(xlabel="test AUC drop against undefended (median, paired seeds)", ylabel="worst leak AUC (any seed)",
               title=f"{table}, {epochs} epochs")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
