"""The benchmark's report: results.json (JSON-ready values), report.md (Tables I/II laid out
like the paper's, the Jacobian analyses, timings, machine) and the machine description.

Split from ``uvs_bringup.benchmark`` (which re-exports these names): the run there, the
words and tables here, the plots in ``uvs_bringup.benchmark_figures``.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from uvs_core.estimators import estimator_names
from uvs_core.evaluation import PAPER_LABELS


def table_order(names) -> list[str]:
    """``names`` as table rows: the registry's order (the paper's baselines and
    methods, then the rest), with tj, the true-Jacobian reference, last; names the
    registry does not know follow in their given order."""
    ordered = [n for n in estimator_names() if n != "tj" and n in names]
    if "tj" in names:
        ordered.append("tj")
    return ordered + [n for n in names if n not in ordered]


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, load, python / numpy / torch versions."""
    from importlib import metadata

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": version("torch"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def jsonable(value):
    """A JSON-ready copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(x) for x in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, results: dict) -> None:
    """``results`` as JSON at ``path``, written whole or not at all."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(jsonable(results), indent=2, sort_keys=True) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _table(results: dict, key: str = "success") -> list[str]:
    ests = results["estimators"]
    names = table_order(ests)
    first = ests[names[0]][key]
    labels = [b["label"] for b in first["bins"]]
    total_label = f"{results['protocol']['bin_edges'][0]:.1f}+ (all)"
    has_paper = any(ests[n]["paper"] for n in names) and key == "success"
    head = "| model | " + " | ".join(labels + [total_label]) + " |"
    lines = [head, "|---" * (len(labels) + 2) + "|"]
    for n in names:
        s = ests[n][key]
        paper = ests[n]["paper"] if has_paper else None
        cells = []
        for i, b in enumerate(s["bins"]):
            cell = _fmt(b["success"])
            if paper and i < len(paper["bins"]):
                cell += f" ({paper['bins'][i]:.2f})"
            cells.append(cell)
        total = _fmt(s["total"])
        if paper:
            total += f" ({paper['total']:.2f})"
        lines.append(f"| {PAPER_LABELS.get(n, n)} | " + " | ".join(cells) + f" | **{total}** |")
    lines.append("| trajectories | " + " | ".join(str(b["n"]) for b in first["bins"])
                 + f" | {first['n']} |")
    return lines


def render_report(results: dict) -> str:
    """report.md: Tables I/II laid out like the paper's, ours (paper) per cell, and the
    Jacobian analyses, timings, machine and command."""
    p = results["protocol"]
    units = results["units"]
    ests = results["estimators"]
    names = table_order(ests)
    thr = p["thresholds"]
    dist = {"euclidean": "Euclidean distance |x* - x|"
            + (" of the stacked 12-vector" if results["task"] == "multi_point" else ""),
            "sum_of_points": "sum of the 4 points' Euclidean distances",
            "pose": "pose distance max(|p* - p|, 0.1 m/rad x angle of R* R^T): success at "
                    "threshold t when the position error < t and the angle < 10 t rad",
            "position": "position error |p* - p| alone"}
    m = results["machine"]
    t = results["timing"]
    lines = [
        f"# uvs benchmark: {results['task']}",
        "",
        f"Command: `{results['command']}`",
        "",
        f"{p['targets']} targets x {p['seeds']} seeds = {p['targets'] * p['seeds']} "
        f"trajectories of {p['steps']} steps (dt {p['dt']} s) from "
        + (f"q = {p['start']} rad" if p.get("start") else "the task's start pose")
        + f"; protocol variant '{p.get('variant', 'design')}'; control law "
        f"`uvs_core.control.control_step` (gain 1, pseudo-inverse, no condition halting), "
        + (f"each joint clipped to {p['velocity_cap']} rad/s by the simulation"
           if p.get("velocity_mode") == "clip" else
           f"{p['control']['max_joint_velocity']} rad/s whole-vector cap")
        + f"; joint limits: {p['joint_limits']}. Data: "
        f"{results['data']['samples']:,} samples ({results['data']['source']}"
        + (f", OU sigma {results['data']['sigma']}" if "sigma" in results["data"] else "")
        + f"); epochs: {p['epochs'] if p['epochs'] else 'estimator defaults'}.",
        "",
        "## Success (%)",
        "",
        f"Success averaged over thresholds {thr['start']:g}..{thr['stop']:g} {units} "
        f"(step {thr['step']:g}), binned by the initial {dist[p['distance']]} ({units}). "
        "Cells: ours (paper). The last column is all trajectories; a bin '>= e' holds "
        "initial distances beyond the paper's last edge.",
        "",
        *_table(results),
        "",
    ]
    if p.get("alt_distance"):
        lines += [
            f"Same trajectories, binned and thresholded by the {dist[p['alt_distance']]}:",
            "",
            *_table(results, "success_alt"),
            "",
        ]
    lines += [
        "Spread across seeds (std of the per-seed totals): " + ", ".join(
            f"{PAPER_LABELS.get(n, n)} {_fmt(ests[n]['success'].get('seed_std'))}"
            for n in names) + ".",
        "",
        "## Jacobian analyses",
        "",
        f"|J_hat - J*|_F per step ({units}/rad), condition number of J_hat (quantiles over "
        "all steps), share of trajectories meeting J* pinv(J_hat) > 0 at every step "
        "(steps where J* itself is singular, the straight start pose, are skipped), and the "
        "final distance split by that criterion.",
        "",
        "| model | mean F | median F | cond 5% | cond 50% | cond 95% | cond inf | PD share "
        "| final PD (mean / median) | final not PD (mean / median) | success PD / not |",
        "|---" * 11 + "|",
    ]
    for n in names:
        s = ests[n]
        q = s["condition"]["quantiles"] or {}
        pd = s["positive_definite"]
        if pd:
            pd_cells = [f"{100 * pd['share']:.1f} %",
                        f"{_fmt(pd['always']['mean'], 4)} / {_fmt(pd['always']['median'], 4)}",
                        f"{_fmt(pd['not_always']['mean'], 4)} / "
                        f"{_fmt(pd['not_always']['median'], 4)}",
                        f"{_fmt(pd['always']['success'], 1)} / "
                        f"{_fmt(pd['not_always']['success'], 1)}"]
        else:
            pd_cells = ["n/a"] * 4
        lines.append(
            f"| {PAPER_LABELS.get(n, n)} | {_fmt(s['frobenius']['mean'], 4)} | "
            f"{_fmt(s['frobenius']['median'], 4)} | {_fmt(q.get('5'), 1)} | "
            f"{_fmt(q.get('50'), 1)} | {_fmt(q.get('95'), 1)} | "
            f"{s['condition']['infinite']} | " + " | ".join(pd_cells) + " |")
    if not any(ests[n]["positive_definite"] for n in names):
        lines += ["", "The criterion needs m <= rank: J* pinv(J_hat) is m x m of rank <= 6, "
                      "so it is never definite for the 12-dimensional multi-point task "
                      "(the paper checks it on single point only)."]
    lines += [
        "",
        "## Time",
        "",
        f"Data {t['data_seconds']:.1f} s, training {t['training_seconds']:.1f} s (wall), "
        f"evaluation {t['evaluation_seconds']:.1f} s (wall), report and figures "
        f"{t.get('report_seconds', 0):.1f} s, total {t.get('total_seconds', 0):.1f} s "
        f"with {results['arguments']['workers']} worker(s)"
        + (f" on Ray ({results['arguments'].get('address') or 'a local instance'})."
           if results["arguments"].get("executor") == "ray" else "."),
        "",
        "| model | fit (s) | train total (s) | held-out mean F | evaluation (s, CPU) |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        tr = ests[n]["training"] or {}
        lines.append(f"| {PAPER_LABELS.get(n, n)} | {_fmt(tr.get('fit_seconds'), 1)} | "
                     f"{_fmt(tr.get('total_seconds'), 1)} | "
                     f"{_fmt(tr.get('jacobian_frobenius_mean'), 4)} | "
                     f"{_fmt(ests[n]['evaluation_seconds'], 1)} |")
    lines += [
        "",
        "## Machine",
        "",
        f"{m['cores']} cores, {m['cpu_model']}; {m['platform']}; Python {m['python']}, "
        f"numpy {m['numpy']}, torch {m['torch']}; load average at start "
        f"{_fmt((m.get('load_average') or [None])[0])}, at end "
        f"{_fmt((m.get('load_average_end') or [None])[0])}.",
        "",
        "## Figures",
        "",
    ]
    captions = {
        "fig_distance.png": "distance to target over steps by initial-distance bin, mean ± "
                            "standard error (paper Fig. 3)",
        "fig_frobenius.png": "|J_hat - J*|_F over steps, mean ± standard error (Fig. 4)",
        "fig_condition.png": "condition number of J_hat, log scale (Fig. 5)",
        "fig_pd.png": "final distance split by the criterion J* pinv(J_hat) > 0 (Fig. 6)",
    }
    for fig in results.get("files", {}).get("figures", []):
        lines.append(f"![{captions.get(fig, fig)}]({fig})  ")
        lines.append(f"*{captions.get(fig, fig)}*")
        lines.append("")
    return "\n".join(lines) + "\n"
