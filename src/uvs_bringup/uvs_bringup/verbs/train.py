"""Train a Jacobian estimator on a babbling bag (from `uvs collect` or the babbler node):
keeps the best validation epoch, scores the model against the robot model's true
Jacobian on the held-out trajectories, and writes the model directory atomically
(metadata.json + weights)."""

from __future__ import annotations

import argparse
from pathlib import Path

from uvs_bringup.verbs._common import emit, fail, log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uvs_core.estimators import estimator_names

    # The registry at run time (entry points of group uvs.estimators; no torch
    # import): an installed plug-in is a valid choice.
    parser.add_argument("--estimator", required=True, choices=estimator_names(),
                        help="registered estimator: " + ", ".join(estimator_names()))
    parser.add_argument("--data", type=Path, required=True, help="babbling bag (rosbag2 dir)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--task", choices=("single_point", "multi_point", "visual_servo", "pose"),
                        help="task (default: the task recorded in the bag)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the protocol's)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--loss", choices=("mse", "huber"),
                        help="training loss of the neural estimators: mse (the paper's, "
                             "default) or huber (robust to tracker outliers)")
    parser.add_argument("--huber-delta", type=float,
                        help="--loss huber: where the loss turns linear, normalised task "
                             "units (default 0.1)")
    parser.add_argument("--robot", default="gen3", help="robot name or YAML (default gen3)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def run(args: argparse.Namespace) -> int:
    from uvs_core.dataset import DatasetError, file_hash, read_bag
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task
    from uvs_learning.training import train_model

    if args.epochs is not None and args.epochs <= 0:
        return fail(f"--epochs must be positive, got {args.epochs}")
    if args.out.exists() and not args.overwrite:
        return fail(f"{args.out} exists; pass --overwrite to replace it")
    try:
        dataset = read_bag(args.data)
    except DatasetError as exc:
        return fail(str(exc))
    task_name = args.task or dataset.task
    if task_name != dataset.task:
        return fail(f"{args.data} holds {dataset.task} data, not {task_name}")
    try:
        task = make_task(task_name, load_robot(args.robot))
    except (ValueError, OSError) as exc:
        return fail(str(exc))

    def progress(epoch, epochs, train_loss, val_loss):
        log(f"epoch {epoch}/{epochs}: train loss {train_loss:.4g}, val loss {val_loss:.4g}")

    try:
        result = train_model(args.estimator, task, dataset, out=args.out, epochs=args.epochs,
                             seed=args.seed, progress=progress, log=log,
                             data_hash=file_hash(args.data), loss=args.loss,
                             huber_delta=args.huber_delta)
    except ValueError as exc:
        return fail(str(exc))
    result.pop("history", None)
    emit(result, args.json, [
        f"{args.estimator} on {task_name}: val_loss {result.get('val_loss')}, "
        f"mean |J - J*|_F {result['jacobian_frobenius_mean']:.4f} over "
        f"{result.get('val_samples')} held-out configurations; "
        f"{result['total_seconds']:.1f} s; wrote {args.out}",
    ])
    return 0
