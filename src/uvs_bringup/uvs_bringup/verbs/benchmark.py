"""Run the paper's benchmark (section IV) in simulation: collect babbling data (or read a
bag), train every learned estimator with the protocol's settings, servo targets x seeds
trajectories with the controller node's control law, and write OUT/results.json,
OUT/report.md (Tables I/II beside the paper's numbers, Jacobian analyses), OUT/steps.npz
(per-step records) and figures like the paper's Figures 3-6.

With --moving: the tracking error (RMS, max) of every estimator on targets moving along
circles and lines, with and without the feed-forward of the target velocity (shipped
models, no training; uvs_bringup.benchmark_moving)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from uvs_bringup.verbs._common import (
    TASKS,
    command_line,
    emit,
    fail,
    log,
    parse_models,
    positive_int,
)


def _estimator_list(text: str) -> tuple[str, ...]:
    from uvs_core.estimators import estimator_names

    known = estimator_names()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown estimator(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {','.join(known)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"repeated estimator in {text!r}")
    return names


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor and --address (shared with `uvs sweep`)."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="where training and evaluation jobs run: local (default; "
                             "--workers processes) or ray (a local Ray instance of --workers "
                             "CPUs, or the cluster at --address; needs "
                             "`pip install -r requirements-ray.txt`)")
    parser.add_argument("--address",
                        help="--executor ray: the Ray cluster to join, e.g. auto or "
                             "ray://head:10001 (default: start a local instance)")


def check_executor(args: argparse.Namespace) -> str | None:
    """The error message for a bad --executor/--address combination or a missing Ray."""
    if args.address is not None and args.executor != "ray":
        return "--address needs --executor ray"
    if args.executor == "ray":
        from uvs_bringup.executors import ExecutorError, import_ray

        try:
            import_ray()
        except ExecutorError as exc:
            return str(exc)
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uvs_core.estimators import estimator_names

    parser.add_argument("--task", choices=TASKS, default="single_point",
                        help="task (default single_point; pose: success when position AND "
                             "angle are within thresholds)")
    parser.add_argument("--estimators", type=_estimator_list,
                        default=",".join(estimator_names()),
                        help="comma-separated estimators (default every registered one: "
                             + ",".join(estimator_names()) + ")")
    parser.add_argument("--targets", type=positive_int,
                        help="targets per seed (protocol 110; --quick 20)")
    parser.add_argument("--seeds", type=positive_int,
                        help="target seeds 0..S-1 (protocol 10; --quick 2)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--samples", type=positive_int,
                        help="babbling samples (protocol 100000 single, 200000 multi, "
                             "10000 visual; --quick 20000)")
    parser.add_argument("--data", type=Path, help="read this babbling bag instead of babbling")
    parser.add_argument("--epochs", type=positive_int,
                        help="training epochs (protocol 30 single, 40 multi; --quick 4)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="parallel processes for training and evaluation (default 1)")
    add_executor_arguments(parser)
    parser.add_argument("--quick", action="store_true",
                        help="little data, few epochs, 20 targets x 2 seeds (a smoke run)")
    parser.add_argument("--param", action="append", default=[], metavar="EST.KEY=VALUE",
                        help="estimator parameter, e.g. nk_tanh.secant_weight=0 (repeatable)")
    parser.add_argument("--model", action="append", default=[], metavar="EST=DIR",
                        help="evaluate this model directory for estimator EST instead of "
                             "training one, e.g. nk_tanh=models/single_point/nk_tanh "
                             "(repeatable)")
    parser.add_argument("--protocol", choices=("paper", "design"), default="paper",
                        help="paper (default): the conventions of the paper's reference code "
                             "(200 steps from [0,.5,0,-.5,0,.5,0], per-joint 1.22 rad/s clip, "
                             "joint masking, OU sigma 1 without dt); design: DESIGN.md's summary "
                             "(100 steps from zeros, whole-vector cap, OU sigma 0.2); see "
                             "docs/benchmarks.md")
    parser.add_argument("--steps", type=positive_int,
                        help="control steps per trajectory (protocol: paper 200, design 100)")
    parser.add_argument("--joint-limits", choices=("clip", "mask", "halt"),
                        help="mask: a joint 10 steps from a limit is not moved (paper's code, "
                             "default of --protocol paper); clip: the simulation clips "
                             "positions (default of --protocol design); halt: the control law "
                             "zeroes commands that would pass a limit, as the controller node")
    parser.add_argument("--robot", default="gen3",
                        help="robot: a name under config/robots, a YAML or a URDF file "
                             "(default gen3)")
    parser.add_argument("--moving", action="store_true",
                        help="moving targets: tracking error on circles and lines (radius / "
                             "length --size at --speed) for each estimator's shipped or "
                             "first-use model, with and without feed-forward")
    parser.add_argument("--size", type=float, default=0.1,
                        help="--moving: circle radius and line length, m (default 0.1)")
    parser.add_argument("--speed", type=float, default=0.05,
                        help="--moving: target speed, m/s (default 0.05)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="--moving: s left out of the error statistics (default 2)")
    parser.add_argument("--duration", type=float,
                        help="--moving: s per run (default one lap of the circle)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results in an existing output directory")
    parser.add_argument("--json", action="store_true",
                        help="print results.json's content as one JSON object last")


def run(args: argparse.Namespace) -> int:
    from uvs_bringup.benchmark import BenchmarkConfig, jsonable, parse_params, run_benchmark
    from uvs_bringup.executors import ExecutorError
    from uvs_core.dataset import DatasetError

    estimators = args.estimators
    if isinstance(estimators, str):
        estimators = _estimator_list(estimators)
    if (args.out / "results.json").exists() and not args.overwrite:
        return fail(f"{args.out / 'results.json'} exists; pass --overwrite to replace it")
    if getattr(args, "moving", False):
        if args.executor != "local":
            return fail("--executor does not apply to --moving (it runs in this process)")
        return _run_moving(args, estimators)
    problem = check_executor(args)
    if problem:
        return fail(problem)
    if args.data is not None and args.samples is not None:
        return fail("--samples and --data exclude each other")
    try:
        params = parse_params(args.param)
        models = parse_models(args.model)
    except ValueError as exc:
        return fail(str(exc))
    cfg = BenchmarkConfig(
        task=args.task, out=args.out, estimators=estimators, targets=args.targets,
        seeds=args.seeds, samples=args.samples, epochs=args.epochs, data=args.data,
        workers=args.workers, quick=args.quick, steps=args.steps,
        joint_limits=args.joint_limits, robot=args.robot, params=params,
        protocol=args.protocol, models=models, executor=args.executor, address=args.address,
        command=command_line("benchmark", "uvs benchmark " + shlex.join(_argv(args))))

    try:
        results = run_benchmark(cfg, show_progress=True, log=log)
    except (ValueError, DatasetError, OSError, ExecutorError) as exc:
        return fail(str(exc))
    ests = results["estimators"]
    lines = [f"{results['task']}: success % (averaged over thresholds), "
             f"{results['protocol']['targets'] * results['protocol']['seeds']} trajectories"]
    for name, s in ests.items():
        paper = s["paper"]["total"] if s["paper"] else None
        lines.append(f"  {name:8s} {s['success']['total']:6.2f}"
                     + (f"   (paper {paper:.2f})" if paper is not None else ""))
    lines.append(f"total {results['timing']['total_seconds']:.1f} s; "
                 f"wrote {args.out / 'results.json'}, {args.out / 'report.md'}")
    emit(jsonable(results), args.json, lines)
    return 0


_NOT_MOVING = ("targets", "seeds", "samples", "data", "epochs", "steps", "joint_limits")


def _run_moving(args: argparse.Namespace, estimators: tuple[str, ...]) -> int:
    from uvs_bringup.benchmark import jsonable
    from uvs_bringup.benchmark_moving import MovingConfig, moving_table, run_moving_benchmark
    from uvs_core.dataset import DatasetError

    for opt in _NOT_MOVING:
        if getattr(args, opt) is not None:
            return fail(f"--{opt.replace('_', '-')} does not apply to --moving (no training, "
                        "no static targets)")
    if args.param or args.protocol != "paper":
        return fail("--param and --protocol do not apply to --moving")
    for name, value in (("size", args.size), ("speed", args.speed)):
        if not value > 0:
            return fail(f"--{name} must be > 0, got {value}")
    try:
        models = parse_models(args.model)
    except ValueError as exc:
        return fail(str(exc))
    cfg = MovingConfig(task=args.task, out=args.out, estimators=estimators, size=args.size,
                       speed=args.speed, duration=args.duration, settle=args.settle,
                       quick=args.quick, robot=args.robot, models=models,
                       command=command_line("benchmark", "uvs benchmark --moving"))

    try:
        results = run_moving_benchmark(cfg, show_progress=True, log=log)
    except (ValueError, DatasetError, OSError) as exc:
        return fail(str(exc))
    p = results["protocol"]
    lines = [f"{results['task']} moving targets: tracking error (mm) after {p['settle']:g} s, "
             f"{len(p['paths'])} paths, {p['speed']:g} m/s, size {p['size']:g} m",
             *moving_table(results),
             f"total {results['timing']['total_seconds']:.1f} s; wrote "
             f"{args.out / 'results.json'}, {args.out / 'report.md'}"]
    emit(jsonable(results), args.json, lines)
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    """A command line equivalent to ``args`` (when not run from the shell)."""
    out = ["--task", args.task, "--estimators", ",".join(args.estimators)
           if not isinstance(args.estimators, str) else args.estimators, "--out", str(args.out)]
    for opt in ("targets", "seeds", "samples", "data", "epochs", "steps"):
        if getattr(args, opt) is not None:
            out += [f"--{opt}", str(getattr(args, opt))]
    out += ["--workers", str(args.workers)]
    if args.executor != "local":
        out += ["--executor", args.executor]
    if args.address is not None:
        out += ["--address", args.address]
    for item in args.param:
        out += ["--param", item]
    for item in args.model:
        out += ["--model", item]
    if args.joint_limits is not None:
        out += ["--joint-limits", args.joint_limits]
    if args.protocol != "paper":
        out += ["--protocol", args.protocol]
    for flag in ("quick", "overwrite", "json"):
        if getattr(args, flag):
            out.append(f"--{flag}")
    return out
