"""The `uvs` command: offline workflow verbs, in the style of `ros2 <verb>`.

Each verb lives in its own module under `uvs_bringup.verbs` and is imported only
when it runs, so `uvs --help` stays fast and a verb's heavy imports (torch,
rclpy) are paid only by that verb.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import uvs_core

# verb name -> (module under uvs_bringup.verbs, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "collect": ("collect", "OU babbling in simulation, written as a rosbag2 bag (MCAP)"),
    "train": ("train", "train a Jacobian estimator from a bag; writes model + metadata"),
    "servo": ("servo", "servo to random targets with the whole node graph in one process"),
    "evaluate": ("evaluate", "servo success through a live graph (in-process or running), "
                             "with the benchmark's protocol"),
    "benchmark": ("benchmark", "the paper's evaluation: train, servo, results.json, report, plots"),
    "sweep": ("sweep", "benchmarks over a grid of estimator parameters, seeds and robots "
                       "(local processes or Ray)"),
    "urdf": ("urdf", "the URDF of a robot description, for robot_state_publisher and RViz"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uvs",
        description=(
            "uvs: uncalibrated visual servoing with learned Jacobians on ROS 2. "
            "Offline workflow verbs; each has its own --help."
        ),
    )
    parser.add_argument("--version", action="version", version=f"uvs {uvs_core.__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module, help_text) in VERBS.items():
        verb = importlib.import_module(f"uvs_bringup.verbs.{module}")
        verb_parser = sub.add_parser(name, help=help_text, description=verb.__doc__)
        verb.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=verb.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("uvs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
