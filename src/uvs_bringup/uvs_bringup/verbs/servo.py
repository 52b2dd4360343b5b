"""Servo the arm to random reachable targets with the whole uvs node graph in one process
(driver, jacobian_estimator, controller, and for visual_servo the sim camera and hue
tracker), using the same parameter files and topic names as servo.launch.py.
--backend picks what runs the arm (sim, default; gen3: the real Kinova Gen3 at
--robot-ip), --robot the kinematic model every node loads (gen3, ur5e, a robot YAML).
Prints per target the initial and final error, steps, time and outcome."""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from pathlib import Path

from uvs_bringup.verbs._common import TASKS, fail, log, number, progress_bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uvs_core.estimators import estimator_names

    parser.add_argument("--backend", choices=("sim", "gen3"), default="sim",
                        help="what runs the arm: sim (default), the kinematic simulation of "
                        "--robot; gen3, the real Kinova Gen3 at --robot-ip")
    parser.add_argument("--robot", help="robot model every node loads: a name under "
                        "config/robots (gen3, gen3_6dof, ur5e), a robot YAML or a URDF "
                        "path (default: the parameter files', gen3)")
    parser.add_argument("--robot-ip", default="192.168.1.10",
                        help="IP address of the Gen3 (--backend gen3; default 192.168.1.10)")
    parser.add_argument("--task", choices=TASKS, default="single_point")
    parser.add_argument("--estimator", default="nk_tanh",
                        help=", ".join(estimator_names()) + " (default nk_tanh)")
    parser.add_argument("--model", type=Path, help="model directory of the learned "
                        "estimator (default: the shipped one, models/<task>/<estimator>)")
    parser.add_argument("--targets", type=number(int), default=3, help="number of targets")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random targets")
    parser.add_argument("--duration", type=number(float), default=10.0,
                        help="time limit per target, s (default 10)")
    parser.add_argument("--target-source", choices=("service", "marker"), default="service",
                        help="visual_servo: set each target with controller/set_target "
                        "(default), or move the sim camera's green target marker there and "
                        "let a second hue tracker feed the controller (the paper's set-up)")
    parser.add_argument("--record", type=Path, help="record the servo topics to this bag")
    parser.add_argument("--plot", type=Path, help="write a PNG of error against time")
    parser.add_argument("--config", type=Path, help="folder of parameter YAML files "
                        "(default: the installed uvs_bringup config)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from uvs_bringup.graph import ROBOT_DESCRIPTION, GraphOptions, config_robot
    from uvs_bringup.runner import GraphError, ServoGraph
    from uvs_core.estimators import ModelError
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    if args.record is not None and args.record.exists():
        return fail(f"{args.record} exists; choose a new bag path")
    try:
        options = GraphOptions(backend=args.backend, robot=args.robot,
                               robot_ip=args.robot_ip, task=args.task,
                               estimator=args.estimator, camera="sim",
                               target_source=args.target_source)
    except ValueError as exc:
        return fail(str(exc))
    if options.robot == ROBOT_DESCRIPTION:
        return fail("--robot robot_description: uvs servo draws its targets from the model "
                    "before the graph starts; give the URDF path (--robot my_arm.urdf), or "
                    "run `ros2 launch uvs_bringup servo.launch.py robot:=robot_description` "
                    "beside the robot driver")
    if args.config is not None and not args.config.is_dir():
        return fail(f"--config {args.config}: no such folder")
    extra = {}
    if args.model is not None:
        if not args.model.is_dir():
            return fail(f"--model {args.model}: no such model directory")
        extra = {"jacobian_estimator": {f"models.{args.estimator}": str(args.model.resolve())}}
    task = make_task(args.task, load_robot(options.robot or config_robot(args.config)))
    if args.model is None:
        try:
            cached = _first_use_model(args.estimator, task)
        except (ModelError, OSError, ValueError) as exc:
            return fail(f"cannot make the {args.estimator} model of {args.task}: {exc}")
        # A learned one's node parameter names the cache; Broyden has none: the node
        # finds the cache made here.
        if cached is not None and _learned(args.estimator):
            extra = {"jacobian_estimator": {f"models.{args.estimator}": str(cached)}}
    marker = args.target_source == "marker"
    rng = np.random.default_rng(args.seed)
    # Same draws either way: a marker at each point shows the pixel target of that seed.
    targets = task.sample_target_points(rng, args.targets) if marker \
        else task.sample_targets(rng, args.targets)
    unit = task.units

    results = []
    try:
        with ServoGraph(options, config=args.config, record=args.record,
                        extra_parameters=extra) as graph:
            for i, target in enumerate(targets, start=1):
                if marker:
                    result = graph.servo_to_marker(target, timeout=args.duration)
                else:
                    result = graph.servo_to(target, timeout=args.duration)
                results.append(result)
                if not args.json:
                    print(f"target {i}/{len(targets)}: error {result.initial_error:.4f} "
                          f"-> {result.final_error:.4f} {unit} in {result.steps} steps, "
                          f"{result.seconds:.1f} s: {result.outcome}"
                          + (f" ({result.reason})" if result.reason else ""), flush=True)
    except GraphError as exc:
        return fail(str(exc))

    if args.plot is not None:
        _plot(results, args.plot, args, unit)
    reached = sum(r.outcome == "converged" for r in results)
    summary = {
        "backend": args.backend,
        "robot": task.robot.name,
        "task": args.task,
        "estimator": args.estimator,
        "target_source": args.target_source,
        "targets": [r.summary() for r in results],
        "converged": reached,
        "units": unit,
    }
    if args.record is not None:
        summary["record"] = str(args.record)
    if args.plot is not None:
        summary["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(summary))
    else:
        finals = [r.final_error for r in results]
        print(f"summary: {task.robot.name} {args.task} with {args.estimator}: "
              f"{reached}/{len(results)} targets "
              f"converged; final error median {np.median(finals):.4f} {unit}, "
              f"max {np.max(finals):.4f} {unit}"
              + (f"; bag {args.record}" if args.record else "")
              + (f"; plot {args.plot}" if args.plot else ""))
    return 0


def _learned(name: str) -> bool:
    from uvs_core.estimators import estimator_spec

    return estimator_spec(name).learned


def _first_use_model(name: str, task) -> Path | None:
    """The cached model of an estimator made on first use (llknn, broyden) when none is
    shipped for it and the task's robot, made now with a progress bar if missing; None
    for the others."""

    from uvs_core.estimators import load_estimator
    from uvs_core.estimators.cache import FIRST_USE, first_use_model
    from uvs_core.paths import installed_dir
    from uvs_estimation.jacobian_service import ModelConfig, model_robot

    shipped = ModelConfig(installed_dir("models")).model_path(name, task.name, task.robot.name)
    if name not in FIRST_USE or (shipped.is_dir()
                                 and model_robot(shipped) in (None, task.robot.name)):
        return None

    with ExitStack() as stack:
        bar = {}

        def progress(done: int, total: int) -> None:
            # Opened on the first call (a cached model needs no bar), closed when the
            # babbling is done, before the fit's log lines.
            if "update" not in bar:
                bar["update"] = stack.enter_context(
                    progress_bar(f"babbling for {name}", total, "samples"))
            if not bar.get("closed"):
                bar["update"](done)
                if done >= total:
                    bar["closed"] = True
                    stack.close()

        _, path = first_use_model(name, task, lambda p: load_estimator(p, task, name),
                                  progress=progress, log=log)
    return path


def _plot(results, path: Path, args, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(results, start=1):
        ax.semilogy(r.times, r.errors,
                    label=f"target {i}: {r.outcome}")
    ax.set_xlabel("time since target set (s)")
    ax.set_ylabel(f"|x* - x| ({unit})")
    ax.set_title(f"uvs servo: {args.task}, {args.estimator}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
