"""What the launch files share: node actions that take the whole launch down when one
node exits, and up-front checks of optional tools.

Imported by launch/servo.launch.py and launch/babble.launch.py only, so it may import
launch and launch_ros (present wherever `ros2 launch` is).

A uvs graph is only safe whole: a driver without its controller holds the arm on a
watchdog, a controller without its estimator halts, and a live arm must never be left
to orphaned nodes. So every node carries an on-exit handler: when a node exits while
the launch is not already shutting down, the launch stops every other node and exits
non-zero with the reason (launch's exit code is 1 when an event handler raises), or
with exit code 0 when the node itself ended cleanly (the babbler's job is done).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch.actions import Shutdown
from launch_ros.actions import Node

from uvs_bringup.graph import NodeSpec

__all__ = ["LaunchArgumentError", "NodeExited", "node_action", "package_available",
           "ros2_bag_available", "stop_launch_on_exit"]


class LaunchArgumentError(ValueError):
    """A launch argument is invalid or needs a tool that is not installed."""


class NodeExited(RuntimeError):
    """A node of the graph exited on its own: the launch stops the rest."""


def package_available(package: str) -> bool:
    """True when `package` is on the ament index (AMENT_PREFIX_PATH)."""
    try:
        get_package_prefix(package)
    except (PackageNotFoundError, ValueError):
        return False
    return True


def ros2_bag_available() -> bool:
    """`ros2 bag record -s mcap` can run: the ros2 command, rosbag2's CLI and MCAP storage."""
    return (shutil.which("ros2") is not None and package_available("ros2bag")
            and package_available("rosbag2_storage_mcap"))


def stop_launch_on_exit(name: str):
    """An ``on_exit`` callable for ExecuteProcess/Node: any exit of node `name` while the
    launch runs stops the launch. Exit code 0 (a node stopped by a signal of its own,
    or a job done, as the babbler's) shuts the launch down with exit code 0; any other
    code fails it with exit code 1 and the reason."""

    def on_exit(event, context):
        if context.is_shutdown:
            return None
        if event.returncode == 0:
            # A terminal's Ctrl-C reaches the nodes and the launch at once; a node may
            # be gone before the launch has taken its own SIGINT.
            return [Shutdown(reason=f"node '{name}' exited with code 0")]
        raise NodeExited(f"node '{name}' exited with code {event.returncode} (its log above "
                         "says why); stopping every other uvs node")

    return on_exit


def node_action(spec: NodeSpec, params_dir: Path) -> Node:
    """The launch_ros Node of `spec`: its parameter file, overrides and remappings, as
    ``uvs servo`` gives them in process; the launch stops when it exits."""
    return Node(package=spec.package, executable=spec.executable, name=spec.name,
                parameters=[str(params_dir / spec.params_file), spec.parameters],
                remappings=list(spec.remappings), output="screen",
                on_exit=stop_launch_on_exit(spec.name))
