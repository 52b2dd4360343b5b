"""Collect babbling data: Ornstein-Uhlenbeck joint-velocity babbling from the home pose in
the kinematic simulation (paper IV: 100-step trajectories, theta 0.15, sigma 0.2,
dt 0.05), written as a rosbag2 bag (MCAP) with /joint_states, /task_state and the
trajectory boundaries. The bag is written under a temporary name and renamed when
complete, so an interrupted run never leaves a bag that looks complete."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from uvs_bringup.verbs._common import emit, fail, progress_bar

TASKS = ("single_point", "multi_point", "visual_servo")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, required=True, help="servo task (sets x)")
    parser.add_argument("--samples", type=_positive_int, required=True,
                        help="number of (q, x) samples (paper: 100000 single, 200000 multi)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="bag directory to write")
    parser.add_argument("--robot", default="gen3",
                        help="robot name under config/robots or a YAML path (default gen3)")
    parser.add_argument("--horizon", type=_positive_int, default=100,
                        help="steps per trajectory before resetting to home (default 100)")
    parser.add_argument("--dt", type=float, default=0.05, help="time step, s (default 0.05)")
    parser.add_argument("--theta", type=float, default=0.15, help="OU mean reversion")
    parser.add_argument("--sigma", type=float, default=0.2, help="OU noise scale")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def run(args: argparse.Namespace) -> int:
    from uvs_core.babble import babble
    from uvs_core.dataset import DatasetError, file_hash, write_bag
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    if args.out.exists() and not args.overwrite:
        return fail(f"{args.out} exists; pass --overwrite to replace it")
    try:
        robot = load_robot(args.robot)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    task = make_task(args.task, robot)

    start = time.perf_counter()
    with progress_bar("babbling", args.samples, "samples") as update:
        dataset = babble(task, args.samples, horizon=args.horizon, seed=args.seed, dt=args.dt,
                         theta=args.theta, sigma=args.sigma, progress=update)
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
        "babble_seconds": round(babble_seconds, 3),
        "seconds": round(seconds, 3),
        "data_hash": file_hash(path),
    }
    emit(result, args.json, [
        f"wrote {len(dataset):,} samples ({trajectories:,} trajectories) of {args.task} "
        f"on {robot.name} to {path} in {seconds:.1f} s",
    ])
    return 0
