"""Collect babbling data: Ornstein-Uhlenbeck joint-velocity babbling in the kinematic
simulation (paper IV: 100-step trajectories, dt 0.05; --protocol design, the default:
OU theta 0.15, sigma 0.2 with dt, from the task's home, whole-vector speed cap;
--protocol paper, as the paper's reference code and `uvs benchmark`'s default: sigma 1
without a time step, from [0, .5, 0, -.5, 0, .5, 0], each joint clipped to 1.22 rad/s,
joints masked before their limits), written as a rosbag2 bag (MCAP) with /joint_states,
/task_state and the trajectory boundaries. The bag is written under a temporary name
and renamed when complete, so an interrupted run never leaves a bag that looks
complete."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from uvs_bringup.verbs._common import TASKS, emit, fail, positive_int, progress_bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, required=True, help="servo task (sets x)")
    parser.add_argument("--samples", type=positive_int, required=True,
                        help="number of (q, x) samples (paper: 100000 single, 200000 multi)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="bag directory to write")
    parser.add_argument("--robot", default="gen3",
                        help="robot name under config/robots or a YAML path (default gen3)")
    parser.add_argument("--protocol", choices=("design", "paper"), default="design",
                        help="babbling conventions, as uvs benchmark --protocol: design "
                             "(default; DESIGN.md's summary) or paper (the reference code's, "
                             "much wider: sigma 1 without dt, per-joint clip, joint masking)")
    parser.add_argument("--horizon", type=positive_int, default=100,
                        help="steps per trajectory before resetting to the start (default 100)")
    parser.add_argument("--dt", type=float, default=0.05, help="time step, s (default 0.05)")
    parser.add_argument("--theta", type=float,
                        help="OU mean reversion (default: the protocol's, 0.15)")
    parser.add_argument("--sigma", type=float,
                        help="OU noise scale (default: the protocol's, paper 1.0, design 0.2)")
    parser.add_argument("--envelope", choices=("off", "box", "robot"), default="off",
                        help="babble inside the robot YAML's safety envelope, as the driver "
                             "enforces it on a real arm: robot = box and table, box = box "
                             "only, off = joint limits only (default)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def run(args: argparse.Namespace) -> int:
    from uvs_core.babble import babble
    from uvs_core.dataset import DatasetError, file_hash, write_bag
    from uvs_core.evaluation import protocol
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    if args.out.exists() and not args.overwrite:
        return fail(f"{args.out} exists; pass --overwrite to replace it")
    try:
        robot = load_robot(args.robot)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    task = make_task(args.task, robot)
    if not (args.dt > 0 and args.dt < 10):
        return fail(f"--dt must be in (0, 10) s, got {args.dt}")
    options = protocol(args.task, args.protocol).babble_options(robot.n)
    options.update(horizon=args.horizon, seed=args.seed, dt=args.dt)
    if args.theta is not None:
        options["theta"] = args.theta
    if args.sigma is not None:
        options["sigma"] = args.sigma
    if args.envelope != "off":
        options["envelope"] = (robot.envelope if args.envelope == "robot"
                               else robot.envelope.without_table())
    if not (options["sigma"] >= 0 and options["theta"] >= 0):
        return fail(f"--sigma and --theta must be >= 0, got {options['sigma']}, "
                    f"{options['theta']}")
    start = time.perf_counter()
    with progress_bar("babbling", args.samples, "samples") as update:
        dataset = babble(task, args.samples, progress=update, **options)
    babble_seconds = time.perf_counter() - start
    try:
        with progress_bar("writing bag", len(dataset), "samples") as update:
            path = write_bag(args.out, dataset, progress=update, overwrite=args.overwrite)
    except DatasetError as exc:
        return fail(str(exc))
    seconds = time.perf_counter() - start
    trajectories = int(dataset.traj.max()) + 1
    result = {
        "path": str(path),
        "task": args.task,
        "robot": robot.name,
        "samples": len(dataset),
        "trajectories": trajectories,
        "seed": args.seed,
        "horizon": args.horizon,
        "dt": args.dt,
        "protocol": args.protocol,
        "theta": options["theta"],
        "sigma": options["sigma"],
        "ou_dt": options["ou_dt"],
        "start": None if options["start"] is None else [float(v) for v in options["start"]],
        "babble_seconds": round(babble_seconds, 3),
        "seconds": round(seconds, 3),
        "data_hash": file_hash(path),
    }
    emit(result, args.json, [
        f"wrote {len(dataset):,} samples ({trajectories:,} trajectories) of {args.task} "
        f"on {robot.name} to {path} in {seconds:.1f} s",
    ])
    return 0
