"""Print or write the URDF of a robot description (config/robots/<name>.yaml): links and
joints from its DH rows, with simple visual geometry, root base_link, the tool point as
tool_frame. robot_state_publisher takes it as robot_description; the joint names are the
ones the driver publishes on /joint_states."""

from __future__ import annotations

import argparse
from pathlib import Path

from uvs_bringup.verbs._common import emit, fail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", default="gen3", help="robot name or YAML (default gen3)")
    parser.add_argument("--out", type=Path,
                        help="file to write (default: print the URDF to stdout)")
    parser.add_argument("--json", action="store_true",
                        help="with --out: print one JSON object last")


def run(args: argparse.Namespace) -> int:
    from uvs_core.robot import load_robot
    from uvs_core.urdf import robot_urdf

    if args.json and args.out is None:
        return fail("--json needs --out (without it the URDF itself goes to stdout)")
    try:
        robot = load_robot(args.robot)
    except ValueError as exc:
        return fail(str(exc))
    text = robot_urdf(robot)
    if args.out is None:
        print(text, end="")
        return 0
    try:
        args.out.write_text(text)
    except OSError as exc:
        return fail(f"cannot write {args.out}: {exc.strerror or exc}")
    links = len(robot.link_names) + 1  # and the tool frame
    emit({"robot": robot.name, "out": str(args.out), "joints": robot.n, "links": links},
         args.json, [f"wrote {args.out}: URDF of {robot.name}, {robot.n} joints, {links} links"])
    return 0
