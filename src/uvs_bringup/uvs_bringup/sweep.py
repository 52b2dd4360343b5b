"""`uvs sweep`: benchmarks over a grid of estimator parameters, seeds and robots.

A grid point is one (robot, estimator, parameter combination, seed); each point is one
benchmark job (``uvs_bringup.benchmark.run_benchmark`` with that estimator alone, run
inline in whichever process or Ray task the executor gives it) writing its usual files
under ``OUT/points/<id>/``. The sweep merges the points into ``OUT/sweep.json`` (every
point's success and training figures), ``OUT/sweep.md`` (a table) and
``OUT/fig_sweep.png`` (success against the swept parameter, one line per robot /
estimator / other parameter values, mean over seeds with their standard deviation).

Grid keys (docs/sweeps.md): ``KEY`` applies to every estimator of the sweep whose
parameters include KEY, ``EST.KEY`` to estimator EST only; an estimator that takes none
of the keys gets one point per robot and seed. Seeds are the data and training seed
(``BenchmarkConfig.seed``); the target seeds of each point are the benchmark's.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "uvs-sweep/1"
#: benchmark options a sweep passes to every point (None: the benchmark's default)
BENCH_OPTIONS = ("targets", "target_seeds", "samples", "epochs", "steps", "joint_limits",
                 "protocol", "quick")


@dataclass
class SweepSpec:
    """What to sweep. grid: key ('lr' or 'nk_tanh.lr') -> values; seeds: data/training
    seeds; robots: names under config/robots or YAML/URDF paths."""

    task: str
    out: Path
    estimators: tuple[str, ...]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    robots: tuple[str, ...] = ("gen3",)
    quick: bool = False
    targets: int | None = None
    target_seeds: int | None = None
    samples: int | None = None
    epochs: int | None = None
    steps: int | None = None
    joint_limits: str | None = None
    protocol: str = "paper"
    executor: str = "local"
    workers: int = 1
    address: str | None = None
    command: str = ""


@dataclass(frozen=True)
class Point:
    """One benchmark job of the sweep."""

    index: int
    robot: str
    estimator: str
    params: tuple[tuple[str, Any], ...]
    seed: int

    @property
    def id(self) -> str:
        robot = Path(self.robot).stem if ("/" in self.robot or "." in self.robot) \
            else self.robot
        parts = [robot, self.estimator] + [f"{k}={v}" for k, v in self.params] \
            + [f"seed{self.seed}"]
        return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "_".join(parts))


# ------------------------------------------------------------------ the grid
def parse_values(text: str) -> list[Any]:
    """'1e-3,3e-3' -> [0.001, 0.003]: comma-separated, each parsed as JSON, else text."""
    values = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            values.append(json.loads(item))
        except json.JSONDecodeError:
            values.append(item)
    return values


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """['lr=1e-3,3e-3', 'nk_tanh.hidden=50,100'] -> {'lr': [...], 'nk_tanh.hidden': [...]}."""
    grid: dict[str, list[Any]] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        values = parse_values(text)
        if not sep or not key or not values:
            raise ValueError(f"--grid {item!r}: expected KEY=V1,V2,... or EST.KEY=V1,...")
        if key in grid:
            raise ValueError(f"--grid {key} given twice")
        if len(set(map(json.dumps, values))) != len(values):
            raise ValueError(f"--grid {key}: repeated value in {values}")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' or '0-2' -> (0, 1, 2)."""
    seeds: list[int] = []
    for item in (s.strip() for s in str(text).split(",")):
        if not item:
            continue
        lo, dash, hi = item.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if dash else [int(item)]
        except ValueError:
            raise ValueError(f"seeds {text!r}: expected integers like 0,1 or 0-3") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {text!r}: expected distinct integers >= 0")
    return tuple(seeds)


def points(spec: SweepSpec) -> list[Point]:
    """Every grid point, in grid order (robots, estimators, parameter values, seeds).
    ValueError for an unknown estimator or a grid key no estimator of the sweep takes."""
    from uvs_bringup.benchmark import _task
    from uvs_core.estimators import estimator_class

    used: set[str] = set()
    out: list[Point] = []
    for robot in spec.robots:
        task = _task(spec.task, robot)
        for est in spec.estimators:
            accepted = estimator_class(est).default_params(task)
            keys = []
            for key in spec.grid:
                owner, dot, name = key.rpartition(".")
                if dot and owner != est:
                    continue
                if name in accepted:
                    keys.append((key, name))
                    used.add(key)
                elif dot:
                    raise ValueError(f"--grid {key}: {est} has no parameter {name!r}; "
                                     f"valid: {sorted(accepted)}")
            for values in itertools.product(*(spec.grid[k] for k, _ in keys)):
                params = tuple((name, v) for (_, name), v in zip(keys, values))
                for seed in spec.seeds:
                    out.append(Point(len(out), robot, est, params, seed))
    for key in spec.grid:
        owner = key.rpartition(".")[0]
        if owner and owner not in spec.estimators:
            raise ValueError(f"--grid {key}: {owner} is not among the sweep's estimators")
        if key not in used:
            raise ValueError(f"--grid {key}: no estimator of {','.join(spec.estimators)} "
                             "takes this parameter")
    return out


# ------------------------------------------------------------------ a point
def _point_job(spec: dict, point: dict) -> dict:
    """Run one grid point's benchmark (in a worker or a Ray task); its summary."""
    from uvs_bringup.benchmark import BenchmarkConfig, run_benchmark

    est = point["estimator"]
    params = dict(point["params"])
    out = Path(spec["out"]) / "points" / point["id"]
    cfg = BenchmarkConfig(
        task=spec["task"], out=out, estimators=(est,), targets=spec["targets"],
        seeds=spec["target_seeds"], samples=spec["samples"], epochs=spec["epochs"],
        steps=spec["steps"], joint_limits=spec["joint_limits"], protocol=spec["protocol"],
        quick=spec["quick"], robot=point["robot"], seed=point["seed"],
        params={est: params} if params else {}, workers=1,
        command=f"uvs sweep point {point['id']}")
    t0 = time.perf_counter()
    results = run_benchmark(cfg, show_progress=False)
    s = results["estimators"][est]
    tr = s["training"] or {}
    return {**point, "params": params, "dir": f"points/{point['id']}",
            "success": s["success"]["total"],
            "success_bins": [b["success"] for b in s["success"]["bins"]],
            "seed_std": s["success"].get("seed_std"),
            "trajectories": s["trajectories"],
            "val_loss": tr.get("val_loss"),
            "jacobian_frobenius_mean": tr.get("jacobian_frobenius_mean"),
            "fit_seconds": tr.get("fit_seconds"),
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------ the sweep
def run_sweep(spec: SweepSpec, show_progress: bool = True,
              log: Callable[[str], None] | None = None) -> dict:
    """Run every grid point through the executor; write OUT/sweep.json, sweep.md,
    fig_sweep.png and OUT/points/<id>/. ValueError for a bad grid, ExecutorError when
    the executor cannot run."""
    from uvs_bringup.benchmark_report import machine_info, write_json
    from uvs_bringup.executors import ExecutorSpec, open_executor
    from uvs_bringup.verbs._common import progress_bar

    say = log or (lambda message: None)
    t0 = time.perf_counter()
    executor = ExecutorSpec(spec.executor, spec.workers, spec.address)
    grid_points = points(spec)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = {k: getattr(spec, k) for k in BENCH_OPTIONS}
    shared.update(task=spec.task, out=str(out.resolve()))
    jobs = [(_point_job, (shared, {"index": p.index, "id": p.id, "robot": p.robot,
                                   "estimator": p.estimator, "params": list(p.params),
                                   "seed": p.seed}))
            for p in grid_points]
    say(f"sweep: {len(jobs)} points on {spec.executor}"
        + (f" ({spec.address})" if spec.address else f" ({spec.workers} worker(s))"))
    done: list[dict] = []
    with open_executor(executor, jobs=len(jobs)) as ex, \
            progress_bar("sweep", len(jobs), "point", enabled=show_progress) as update:

        def finished(result: dict) -> None:
            done.append(result)
            update(len(done))

        ex.run_jobs(jobs, finished)
    done.sort(key=lambda r: r["index"])
    results = {
        "schema": SCHEMA,
        "task": spec.task,
        "command": spec.command,
        "spec": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()
                 if k != "command"},
        "points": done,
        "machine": machine_info(),
        "timing": {"total_seconds": time.perf_counter() - t0,
                   "point_seconds": float(sum(r["seconds"] for r in done))},
        "files": {"results": "sweep.json", "table": "sweep.md", "figure": "fig_sweep.png"},
    }
    make_sweep_figure(results, out / "fig_sweep.png")
    (out / "sweep.md").write_text(render_sweep(results), encoding="utf-8")
    write_json(out / "sweep.json", results)
    return results


def swept_key(results: dict) -> str:
    """The figure's x axis: the first grid key with more than one value, else 'seed'."""
    grid = results["spec"]["grid"]
    for key, values in grid.items():
        if len(values) > 1:
            return key.rpartition(".")[2]
    return "seed"


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def render_sweep(results: dict) -> str:
    """sweep.md: one row per point and the mean over seeds per parameter combination."""
    s = results["spec"]
    lines = [f"# uvs sweep: {results['task']}", "", f"Command: `{results['command']}`", "",
             f"{len(results['points'])} points (robots {', '.join(s['robots'])}; estimators "
             f"{', '.join(s['estimators'])}; grid {json.dumps(s['grid'])}; seeds "
             f"{', '.join(map(str, s['seeds']))}) on {s['executor']}"
             + (f" at {s['address']}" if s.get("address") else "")
             + f", {results['timing']['total_seconds']:.1f} s. Success (%) averaged over "
             "the benchmark's thresholds; each point's files are under points/<id>/.", "",
             "| robot | estimator | parameters | mean success | std over seeds | seeds |",
             "|---|---|---|---|---|---|"]
    for (robot, est, params), rows in _groups(results["points"]).items():
        vals = np.array([r["success"] for r in rows], dtype=float)
        std = float(vals.std(ddof=1)) if vals.size > 1 else None
        lines.append(f"| {robot} | {est} | {params or '–'} | {vals.mean():.2f} | "
                     f"{_fmt(std)} | {vals.size} |")
    lines += ["", "| point | success | held-out mean F | fit (s) | point (s) |",
              "|---|---|---|---|---|"]
    for r in results["points"]:
        lines.append(f"| {r['id']} | {r['success']:.2f} | "
                     f"{_fmt(r['jacobian_frobenius_mean'], 4)} | {_fmt(r['fit_seconds'], 1)} "
                     f"| {r['seconds']:.1f} |")
    lines += ["", "![success against the swept parameter](fig_sweep.png)", ""]
    return "\n".join(lines)


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        groups.setdefault((r["robot"], r["estimator"], params), []).append(r)
    return groups


def make_sweep_figure(results: dict, path: Path) -> None:
    """fig_sweep.png: mean success over seeds (error bars: std) against the swept
    parameter; one line per robot / estimator / other parameters; an estimator without
    the parameter is a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = swept_key(results)
    lines: dict[tuple, dict[Any, list[float]]] = {}
    flat: dict[tuple, list[float]] = {}
    for r in results["points"]:
        others = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != key)
        label = (r["robot"], r["estimator"], others)
        x = r["seed"] if key == "seed" else r["params"].get(key)
        if key != "seed" and key not in r["params"]:
            flat.setdefault(label, []).append(r["success"])
        else:
            lines.setdefault(label, {}).setdefault(x, []).append(r["success"])
    xs = sorted({x for d in lines.values() for x in d}, key=lambda v: (str(type(v)), v))
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    pos = {x: (x if numeric else i) for i, x in enumerate(xs)}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, by_x) in enumerate(lines.items()):
        keys = sorted(by_x, key=lambda v: pos[v])
        mean = [float(np.mean(by_x[x])) for x in keys]
        std = [float(np.std(by_x[x], ddof=1)) if len(by_x[x]) > 1 else 0.0 for x in keys]
        ax.errorbar([pos[x] for x in keys], mean, yerr=std, marker="o", capsize=3,
                    color=f"C{i % 10}", label=" / ".join(p for p in label if p))
    for i, (label, vals) in enumerate(flat.items(), start=len(lines)):
        ax.axhline(float(np.mean(vals)), ls="--", lw=1, color=f"C{i % 10}",
                   label=" / ".join(p for p in label if p) + f" (no {key})")
    if numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_xlabel(key)
    ax.set_ylabel("success (%), mean over seeds ± std")
    ax.set_title(f"uvs sweep: {results['task']}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def load_spec_file(path: Path) -> dict[str, Any]:
    """A YAML sweep spec -> the SweepSpec fields it sets (see docs/sweeps.md)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    allowed = {f for f in SweepSpec.__dataclass_fields__ if f not in ("out", "command")}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; valid: {sorted(allowed)}")
    fields: dict[str, Any] = dict(data)
    if "estimators" in fields:
        e = fields["estimators"]
        fields["estimators"] = tuple(e.split(",") if isinstance(e, str) else e)
    if "robots" in fields:
        r = fields["robots"]
        fields["robots"] = tuple(r.split(",") if isinstance(r, str) else r)
    if "seeds" in fields:
        s = fields["seeds"]
        fields["seeds"] = parse_seeds(",".join(map(str, s)) if isinstance(s, list) else s)
    if "grid" in fields:
        grid = fields["grid"]
        if not isinstance(grid, dict):
            raise ValueError(f"{path}: grid: expected a mapping KEY: [values]")
        fields["grid"] = {str(k): (list(v) if isinstance(v, list) else parse_values(str(v)))
                          for k, v in grid.items()}
    return fields


__all__ = ["SCHEMA", "Point", "SweepSpec", "load_spec_file", "make_sweep_figure",
           "parse_grid", "parse_seeds", "parse_values", "points", "render_sweep", "run_sweep"]
