"""``uvs benchmark --moving``: tracking error on moving targets, per estimator.

Every estimator (the shipped models; llknn and broyden made on first use, as the
estimator node serves them; ``--model EST=DIR`` for another) servos B simulated
arms onto targets moving along circles and lines (``uvs_core.trajectories.
benchmark_paths``: radius / length ``size`` m at ``speed`` m/s, from the task
state at ``MOVING_START``), twice: with the feed-forward of the target velocity,
qdot = J+ (ẋ* + gain (x* - x)), and with feedback alone (the law of the static
benchmark). ``uvs_core.evaluation.tracking_rollout`` runs them, with the paper
protocol's simulation conventions (dt 0.05 s, gain 1, per-joint 1.22 rad/s clip,
joints masked before a limit). The tracking error |x* - x| after ``settle`` s
gives RMS and max per path kind.

Writes OUT/results.json, OUT/report.md, OUT/steps.npz (errors and paths per step)
and OUT/fig_moving_error.png, OUT/fig_moving_paths.png.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uvs_core.evaluation import PAPER_LABELS

__all__ = ["MovingConfig", "MOVING_START", "MOVING_TASKS", "SCHEMA", "run_moving_benchmark",
           "render_moving_report"]

SCHEMA = "uvs-benchmark-moving/1"
#: tasks whose x stacks 3-D points (the paths move every point rigidly)
MOVING_TASKS = ("single_point", "multi_point")
#: Gen3 start pose, rad: the end-effector at about (0.69, -0.03, 0.31) m, condition number
#: 2.6, so 0.1 m circles and lines around it stay well inside the workspace (the paper's
#: start, nearly straight up at z 1.22 m, leaves no room above it).
MOVING_START = (0.0, 0.6, 0.0, 1.2, 0.0, 0.8, 0.0)
MODES = ("feedforward", "feedback")
DT = 0.05


@dataclass
class MovingConfig:
    """What to run. duration None: one lap of the circle (2 pi size / speed), in steps of
    dt rounded up; quick: one circle and one line instead of three of each."""

    task: str
    out: Path
    estimators: tuple[str, ...]
    size: float = 0.1
    speed: float = 0.05
    duration: float | None = None
    settle: float = 2.0
    quick: bool = False
    robot: str = "gen3"
    models: dict[str, str] = field(default_factory=dict)
    command: str = ""

    def steps(self) -> int:
        duration = self.duration if self.duration is not None \
            else 2.0 * math.pi * self.size / self.speed
        return int(math.ceil(duration / DT - 1e-9))


def _estimator(name: str, task, models: dict[str, str], log):
    """(estimator, model path or None) as the estimator node builds it (shipped model,
    first-use cache for llknn/broyden, or models[name])."""
    from uvs_core.paths import installed_dir
    from uvs_estimation.jacobian_service import (
        EstimatorSetupError,
        ModelConfig,
        build_estimator,
    )

    try:
        return build_estimator(name, task, ModelConfig(installed_dir("models"), dict(models)),
                               log=log)
    except EstimatorSetupError as exc:
        raise ValueError(str(exc)) from None


def run_moving_benchmark(cfg: MovingConfig, show_progress: bool = True,
                         log: Callable[[str], None] | None = None) -> dict:
    """Run the moving-target benchmark; write results.json, report.md, steps.npz and the
    figures to cfg.out. Returns the results dict. ValueError for a bad configuration."""
    from uvs_bringup.benchmark import _task
    from uvs_bringup.benchmark_report import machine_info, write_json
    from uvs_bringup.verbs._common import progress_bar
    from uvs_core.evaluation import protocol, tracking_metrics, tracking_rollout
    from uvs_core.trajectories import benchmark_paths, task_targets

    say = log or (lambda message: None)
    if cfg.task not in MOVING_TASKS:
        raise ValueError(f"--moving supports tasks {', '.join(MOVING_TASKS)} (point targets "
                         f"in metres), not {cfg.task}")
    for name in cfg.models:
        if name not in cfg.estimators:
            raise ValueError(f"--model {name}=...: {name} is not among --estimators")
    if not (cfg.size > 0 and cfg.speed > 0 and cfg.settle >= 0):
        raise ValueError("size and speed must be > 0, settle >= 0")
    t_all = time.perf_counter()
    task = _task(cfg.task, cfg.robot)
    proto = protocol(cfg.task, "paper")
    start = np.asarray(MOVING_START if task.robot.n == len(MOVING_START)
                       else task.home, dtype=float)
    x0 = task.x(task.select(start))
    steps = cfg.steps()
    if cfg.settle >= steps * DT:
        raise ValueError(f"settle {cfg.settle} s is not shorter than the run "
                         f"({steps * DT:g} s)")
    times = np.arange(steps + 1) * DT
    point0 = x0[:3]
    paths = benchmark_paths(point0, cfg.size, cfg.speed, quick=cfg.quick)
    pairs = [task_targets(task, x0, p, times) for p in paths]
    targets = np.stack([a for a, _ in pairs])
    velocities = np.stack([b for _, b in pairs])
    kinds = np.array([p.kind for p in paths])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    options = {"dt": DT, "joint_limits": proto.joint_limits, "start": start,
               "velocity_cap": proto.velocity_cap, "velocity_mode": proto.velocity_mode}

    estimators: dict[str, dict] = {}
    arrays: dict[str, np.ndarray] = {"times": times, "targets": targets,
                                     "kinds": kinds.astype("U8")}
    with progress_bar("tracking", len(cfg.estimators) * len(MODES), "run",
                      enabled=show_progress) as update:
        done = 0
        for name in cfg.estimators:
            t0 = time.perf_counter()
            est, path = _estimator(name, task, cfg.models, say)
            entry: dict = {"model": None if path is None else str(path)}
            for mode in MODES:
                r = tracking_rollout(task, est, targets,
                                     velocities if mode == "feedforward" else None, **options)
                arrays[f"{name}/{mode}/error"] = r.error
                arrays[f"{name}/{mode}/x"] = r.x.astype(np.float32)
                per_kind = {}
                for kind in ("circle", "line", "all"):
                    sel = kinds == kind if kind != "all" else np.ones(kinds.size, bool)
                    per_kind[kind] = tracking_metrics(r.error[sel], DT, cfg.settle)
                per_kind["halted_steps"] = int(np.sum(r.halted))
                entry[mode] = per_kind
                done += 1
                update(done)
            entry["seconds"] = time.perf_counter() - t0
            estimators[name] = entry
            ff, fb = entry["feedforward"]["all"], entry["feedback"]["all"]
            say(f"{name}: RMS {_mm(ff['rms'])} mm with feed-forward, {_mm(fb['rms'])} mm "
                "without")

    results = {
        "schema": SCHEMA,
        "task": cfg.task,
        "units": task.units,
        "command": cfg.command,
        "protocol": {
            "robot": task.robot.name,
            "start": start.tolist(),
            "x0": x0.tolist(),
            "dt": DT,
            "steps": steps,
            "duration": steps * DT,
            "settle": cfg.settle,
            "size": cfg.size,
            "speed": cfg.speed,
            "gain": 1.0,
            "velocity_cap": proto.velocity_cap,
            "velocity_mode": proto.velocity_mode,
            "joint_limits": proto.joint_limits,
            "control_law": "uvs_core.control.control_step (x_star_dot: feed-forward)",
            "paths": [{"kind": p.kind, "axis": list(p.axis), "size": p.size,
                       "speed": p.speed, "period": p.period, "description": p.describe()}
                      for p in paths],
            "quick": cfg.quick,
        },
        "machine": machine,
        "estimators": estimators,
    }
    np.savez_compressed(out / "steps.npz", **arrays)
    results["files"] = {"results": "results.json", "steps": "steps.npz",
                        "report": "report.md",
                        "figures": make_moving_figures(results, arrays, out)}
    results["timing"] = {"total_seconds": time.perf_counter() - t_all}
    results["machine"]["load_average_end"] = list(os.getloadavg()) \
        if hasattr(os, "getloadavg") else None
    (out / "report.md").write_text(render_moving_report(results), encoding="utf-8")
    write_json(out / "results.json", results)
    return results


def _mm(value) -> str:
    return "–" if value is None else f"{1000.0 * value:.2f}"


def _names(results: dict) -> list[str]:
    from uvs_bringup.benchmark_report import table_order

    return table_order(results["estimators"])


def moving_table(results: dict) -> list[str]:
    """The markdown table: RMS and max tracking error (mm) per path kind, with the
    feed-forward, and the RMS with feedback alone."""
    lines = ["| model | circle RMS | circle max | line RMS | line max | "
             "circle RMS, no ff | line RMS, no ff |",
             "|---|---|---|---|---|---|---|"]
    for n in _names(results):
        e = results["estimators"][n]
        ff, fb = e["feedforward"], e["feedback"]
        lines.append(f"| {PAPER_LABELS.get(n, n)} | {_mm(ff['circle']['rms'])} | "
                     f"{_mm(ff['circle']['max'])} | {_mm(ff['line']['rms'])} | "
                     f"{_mm(ff['line']['max'])} | {_mm(fb['circle']['rms'])} | "
                     f"{_mm(fb['line']['rms'])} |")
    return lines


def render_moving_report(results: dict) -> str:
    """report.md of a moving-target run."""
    p = results["protocol"]
    m = results["machine"]
    lines = [
        f"# uvs benchmark --moving: {results['task']}",
        "",
        f"Command: `{results['command']}`",
        "",
        f"{len(p['paths'])} paths from x0 = "
        f"{np.array2string(np.asarray(p['x0'][:3]), precision=3)} m (the tool at q = "
        f"{p['start']} rad): " + "; ".join(path["description"] for path in p["paths"])
        + f". {p['steps']} steps of {p['dt']} s ({p['duration']:.2f} s), the arm starting on "
        f"the path; gain {p['gain']:g}, each joint clipped to {p['velocity_cap']} rad/s by "
        f"the simulation, joint limits: {p['joint_limits']}.",
        "",
        f"Tracking error |x* - x| in mm after a settling time of {p['settle']:g} s "
        "(the samples before are left out): RMS and max over the paths of each kind, with "
        "the feed-forward qdot = J+ (ẋ* + gain (x* - x)); the last two columns without it "
        "(feedback alone lags a target moving at v by about v / gain).",
        "",
        *moving_table(results),
        "",
        "## Machine",
        "",
        f"{m['cores']} cores, {m['cpu_model']}; Python {m['python']}, numpy {m['numpy']}, "
        f"torch {m['torch']}; total {results['timing']['total_seconds']:.1f} s.",
        "",
        "## Figures",
        "",
    ]
    captions = {
        "fig_moving_error.png": "tracking error over time per estimator, mean over the paths "
                                "of each kind (solid: feed-forward, dashed: feedback only)",
        "fig_moving_paths.png": "the first circle and the first line: target and each "
                                "estimator's tool path with the feed-forward",
    }
    for fig in results.get("files", {}).get("figures", []):
        lines += [f"![{captions.get(fig, fig)}]({fig})  ", f"*{captions.get(fig, fig)}*", ""]
    return "\n".join(lines) + "\n"


def make_moving_figures(results: dict, arrays: dict[str, np.ndarray], out: Path) -> list[str]:
    """fig_moving_error.png and fig_moving_paths.png in ``out``; their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uvs_core.trajectories import plane_axes

    names = _names(results)
    colors = {n: plt.cm.tab10(i) for i, n in enumerate(names)}
    times = arrays["times"]
    kinds = arrays["kinds"]
    settle = results["protocol"]["settle"]
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), squeeze=False)
    for ax, kind in zip(axes[0], ("circle", "line")):
        sel = kinds == kind
        for n in names:
            for mode, style in (("feedforward", "-"), ("feedback", "--")):
                err = arrays[f"{n}/{mode}/error"][sel]
                ax.plot(times, 1000.0 * np.maximum(err.mean(axis=0), 1e-6), style,
                        color=colors[n], lw=1.1,
                        label=PAPER_LABELS.get(n, n) if mode == "feedforward" else None)
        ax.axvline(settle, color="0.5", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("time (s)")
        ax.set_title(f"{kind}s (n={int(sel.sum())}); dashed: no feed-forward", fontsize=9)
    axes[0][0].set_ylabel("tracking error (mm)")
    axes[0][1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fig_moving_error.png", dpi=80)
    plt.close(fig)
    written.append("fig_moving_error.png")

    paths = results["protocol"]["paths"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), squeeze=False)
    targets = arrays["targets"]
    for ax, kind in zip(axes[0], ("circle", "line")):
        index = int(np.flatnonzero(kinds == kind)[0])
        axis = np.asarray(paths[index]["axis"])
        origin = targets[index, 0, :3]
        if kind == "circle":
            u, v = plane_axes(axis)

            def coords(p, u=u, v=v, origin=origin):
                d = p[..., :3] - origin
                return 1000.0 * (d @ u), 1000.0 * (d @ v)
            xlabel, ylabel = "in-plane u (mm)", "in-plane v (mm)"
        else:
            def coords(p, a=axis, origin=origin):
                d = p[..., :3] - origin
                return times, 1000.0 * (d @ a)
            xlabel, ylabel = "time (s)", "along the line (mm)"
        ax.plot(*coords(targets[index]), color="k", lw=2.0, label="target")
        for n in names:
            ax.plot(*coords(arrays[f"{n}/feedforward/x"][index].astype(float)),
                    color=colors[n], lw=1.0, label=PAPER_LABELS.get(n, n))
        if kind == "circle":
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(paths[index]["description"], fontsize=8)
    axes[0][1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fig_moving_paths.png", dpi=80)
    plt.close(fig)
    written.append("fig_moving_paths.png")
    return written
