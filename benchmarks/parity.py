#!/usr/bin/env python3
"""Live against offline on the same targets: an `uvs evaluate` result beside the offline
benchmark's rollout of the same estimator, task and targets.

    uvs evaluate --estimator tj --targets 100 --out bench/live_sp_tj
    python benchmarks/parity.py bench/live_sp_tj/evaluation.json
    python benchmarks/parity.py --task multi_point --estimator nj --targets 100  # no live run
    python benchmarks/parity.py --task multi_point --estimator tj --decompose

The offline side is `uvs benchmark`'s (uvs_core.evaluation.rollout with the paper
protocol: 200 steps of 0.05 s from the start pose, gain 1, no condition checks, joints
masked before their limits) run on exactly the targets the live run servoed (its seeds
and indices; skipped targets left out), with the estimator the live graph served: the
shipped model (or --model DIR), the first-use LL-KNN, or tj / broyden. Success is
averaged over the protocol's thresholds and binned by initial distance in both.

A third row, "controller", runs the live controller's own law (uvs_core.control with
the controller node's parameters from config/controller.yaml: condition thresholds by
task, joint-limit lock, whole-vector speed cap, stopping at the convergence tolerance)
in the batched simulation, for 200 steps: what the live graph would score with no
latency, no DDS and no clock. Live against controller isolates the graph's own losses;
controller against offline the control law's. Without a live run (--task, --estimator,
--targets, --seed) the two simulated rows are printed for those targets.
Prints the rows and the gaps; --json one object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def served_estimator(task, name: str, model: str | None):
    """The estimator the live graph serves: `model`, the shipped model, one made on first
    use (LL-KNN, Broyden's first J), or tj."""
    from uvs_core.estimators import estimator_class, load_estimator, make_estimator
    from uvs_core.estimators.cache import FIRST_USE, first_use_model

    if model:
        return load_estimator(model, task=task, name=name)
    if name in FIRST_USE:
        return first_use_model(name, task,
                               lambda p: load_estimator(p, task=task, name=name))[0]
    if estimator_class(name).learned:
        from uvs_core.paths import installed_dir

        return load_estimator(installed_dir("models") / task.name / name, task=task, name=name)
    return make_estimator(name, task)


def _tolerance(task) -> float:
    """The controller's default convergence tolerance: 5 mm per point, 2 px."""
    return 0.005 * np.sqrt(task.m / 3.0) if task.units == "m" else 2.0


def _row(proto, task, initial, final) -> dict:
    from uvs_core.evaluation import binned_success

    out = binned_success(initial, final, proto.bin_edges, proto.threshold_values)
    out["converged"] = int(np.sum(final < _tolerance(task)))
    out["median_final"] = float(np.median(final))
    return out


def offline(task, est, goals: np.ndarray, variant: str = "paper") -> dict:
    """The offline protocol's success (`uvs benchmark`'s rollout) on `goals`."""
    from uvs_core.evaluation import protocol, rollout

    proto = protocol(task.name, variant)
    r = rollout(task, est, goals, **proto.rollout_options(task.robot.n))
    return _row(proto, task, r.distance[:, 0], r.distance[:, -1])


def controller_values(task_name: str) -> dict:
    """The controller node's parameter values: its defaults, then config/controller.yaml."""
    import yaml

    from uvs_control.params import SPEC
    from uvs_core.paths import installed_dir

    values = SPEC.defaults()
    loaded = yaml.safe_load((installed_dir("config") / "controller.yaml").read_text())
    values.update(loaded["controller"]["ros__parameters"])
    values["task"] = task_name
    return values


def controller_law(task, est, goals: np.ndarray, variant: str = "paper",
                   steps: int | None = None, stop: bool = True, pixel_std: float = 0.0,
                   **overrides) -> dict:
    """The live controller's law in the batched simulation from the task's home: 200
    steps of 1/rate s, the driver's speed cap, joints clipped at their limits, each
    trajectory frozen once within the tolerance (the controller then commands zero).
    overrides: controller parameters. stop=False: no freezing at the tolerance (the
    paper's rollout). pixel_std: px, the tracker's noise on the x that the estimator and
    the control law see (uvs_core.tracker_noise, seeded; camera tasks), 0: exact x."""
    from uvs_control.params import control_config
    from uvs_core.control import ServoMonitor, control_step, task_rank
    from uvs_core.evaluation import _observer, batched, protocol, task_distance
    from uvs_core.sim import Simulation
    from uvs_core.tracker_noise import TrackerNoise

    values = {**controller_values(task.name), **overrides}
    config = control_config(values)
    proto = protocol(task.name, variant)
    b = len(goals)
    tolerance = values["convergence_tolerance"] or _tolerance(task)
    sim = Simulation(task, dt=config.dt, batch=b, velocity_limits=values["max_joint_velocity"])
    x = sim.reset()
    initial = task_distance(x, goals, proto.distance)
    lower, upper = task.robot.lower[task.active], task.robot.upper[task.active]
    monitor = ServoMonitor(tolerance, stall_window=values["stall_window"],
                           stall_fraction=values["stall_fraction"], batch=b)
    prev = np.full(b, np.nan)
    est = batched(est, b)          # online estimators: one state per trajectory
    est.reset()
    observe = _observer(task, TrackerNoise(pixel_std=pixel_std), 0) if pixel_std else None
    for _ in range(steps or proto.steps):
        seen = x if observe is None else observe(x, None)
        est.update(sim.qa, seen)
        jac = np.asarray(est.estimate_batch(sim.qa, seen), dtype=float)
        qdot, info = control_step(jac, seen, goals, sim.qa, config, lower, upper,
                                  velocity_limits=task.robot.velocity_limits[task.active],
                                  prev_condition=prev, rank=task_rank(task),
                                  condition_transform=task.condition_transform,
                                  inverse_rank=task_rank(task))
        prev = info.condition
        converged, _ = monitor.update(info.error_norm)
        if stop:
            qdot[converged] = 0.0
        x = sim.step(qdot).x
    return _row(proto, task, initial, task_distance(x, goals, proto.distance))


#: From the controller's defaults to the paper's rollout, one rule at a time (cumulative):
#: label, controller_law keywords (controller parameters, and stop). The last row runs the
#: offline protocol's rules in the controller's code and so scores as `offline` does.
LADDER = (
    ("controller defaults", {}),
    ("+ per-joint speed clip", {"velocity_limit_mode": "clip"}),
    ("+ no condition check", {"cond_slowdown": np.inf, "cond_halt": np.inf}),
    ("+ no limit margin", {"joint_limit_margin": 0.0}),
    ("+ no stop at tolerance", {"stop": False}),
    ("+ joint mask, 0.5 s", {"joint_limit_policy": "mask", "joint_limit_lookahead": 0.5}),
)


def decompose(task, est, goals: np.ndarray) -> list[tuple[str, dict]]:
    """controller_law along LADDER: what each of the controller's rules costs or gains
    against the offline rollout."""
    rows, keywords = [], {}
    for label, step in LADDER:
        keywords = {**keywords, **step}
        rows.append((label, controller_law(task, est, goals, **keywords)))
    return rows


def _pairs(pairs: list[str], option: str, known=None) -> dict:
    """NAME=VALUE pairs of `option` as a dict (numbers where they parse); ValueError for
    a pair without '=' or, given `known`, a name not in it."""
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or (known is not None and name not in known):
            raise ValueError(f"{option} {pair!r}: expected NAME=VALUE"
                             + (" with a controller parameter name" if known else ""))
        try:
            out[name] = float(text)
        except ValueError:
            out[name] = text
    return out


def _overrides(pairs: list[str]) -> dict:
    """--set NAME=VALUE pairs as controller parameter values."""
    from uvs_control.params import PARAMETERS

    return _pairs(pairs, "--set", PARAMETERS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evaluation", type=Path, nargs="?",
                        help="evaluation.json of `uvs evaluate --out`")
    parser.add_argument("--model", help="model directory the live graph served (default: "
                        "the shipped one)")
    parser.add_argument("--task", default="single_point", help="without a live run")
    parser.add_argument("--estimator", default="tj", help="without a live run")
    parser.add_argument("--targets", type=int, default=100, help="without a live run")
    parser.add_argument("--seed", type=int, default=0, help="without a live run")
    parser.add_argument("--decompose", action="store_true",
                        help="also the controller's law with its rules replaced by the "
                        "paper's one at a time (per-joint clip, no condition check, no "
                        "margin, no stop, the joint mask): where a gap comes from")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a controller parameter for the controller row (repeatable), "
                        "e.g. joint_limit_policy=mask, velocity_limit_mode=clip")
    parser.add_argument("--pixel-std", type=float, default=0.0, metavar="PX",
                        help="camera tasks: the controller row also with the tracker's "
                        "pixel noise on x (the sim camera's tracker measures 0.06 px): "
                        "what a noisy x costs the estimator")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="an estimator parameter for every row (repeatable), e.g. "
                        "alpha=0.2 for broyden")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    live = None
    try:
        overrides = _overrides(args.set)
        if args.evaluation is not None:
            doc = json.loads(args.evaluation.read_text())
            live, records = doc["success"], doc["targets"]
            task_name, name = doc["task"], doc["estimator"].removesuffix(" (held)")
            robot = doc["graph_settings"].get("robot", "gen3")
            if not records:
                raise ValueError("it holds no servoed targets")
            goals = np.array([r["target"] for r in records], dtype=float)
            live["converged"] = sum(r["outcome"] == "converged" for r in records)
            live["median_final"] = float(np.median([r["final_distance"] for r in records]))
            task = make_task(task_name, load_robot(robot))
        else:
            task, name = make_task(args.task, load_robot("gen3")), args.estimator
            goals = task.sample_targets(np.random.default_rng(args.seed), args.targets)
        est = served_estimator(task, name, args.model)
        if args.param:
            if not hasattr(est, "with_params"):
                raise ValueError("--param: only broyden's parameters can be set here")
            est = est.with_params(**_pairs(args.param, "--param"))
    except (OSError, ValueError, KeyError) as exc:
        print(f"parity: {args.evaluation or args.estimator}: {exc}", file=sys.stderr)
        return 2
    try:
        law = controller_law(task, est, goals, **overrides)
    except ValueError as exc:
        print(f"parity: --set: {exc}", file=sys.stderr)
        return 2
    rows = {"offline": offline(task, est, goals), "controller": law}
    if args.pixel_std > 0:
        rows[f"controller, {args.pixel_std:g} px noise"] = controller_law(
            task, est, goals, pixel_std=args.pixel_std, **overrides)
    if live is not None:
        rows = {"live": live, **rows}
    if args.decompose:
        rows.update(decompose(task, est, goals)[1:])
    report = {"task": task.name, "estimator": name, "targets": len(goals),
              **{side: {"total": r["total"], "bins": r["bins"], "converged": r["converged"],
                        "median_final": r.get("median_final")}
                 for side, r in rows.items()}}
    if live is not None:
        report["gap"] = live["total"] - rows["offline"]["total"]
        report["gap_controller"] = live["total"] - rows["controller"]["total"]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    labels = [b["label"] for b in rows["offline"]["bins"]]
    print(f"{task.name}, {name}, {len(goals)} targets: success % averaged over thresholds, "
          f"by initial distance ({task.units}); conv.: within the controller's tolerance; "
          f"median: final distance, {task.units}")
    width = max(len(side) for side in rows)
    print(f"{'':<{width}} " + " ".join(f"{lab:>9}" for lab in labels)
          + f" {'total':>7} {'conv.':>6} {'median':>8}")
    for side, res in rows.items():
        cells = {b["label"]: b["success"] for b in res["bins"]}
        row = " ".join(f"{'-' if cells.get(lab) is None else format(cells[lab], '.2f'):>9}"
                       for lab in labels)
        print(f"{side:<{width}} {row} {res['total']:>7.2f} {res['converged']:>6} "
              f"{res['median_final']:>8.4g}")
    if live is not None:
        print(f"gap live - offline: {report['gap']:+.2f} points; live - controller: "
              f"{report['gap_controller']:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
