"""The robot model a node loads: a uvs robot spec, or the URDF a robot driver publishes.

Every uvs node that loads a kinematic model (driver, babbler, jacobian_estimator,
controller, sim_camera) has a ``robot`` parameter: a name under config/robots, a robot
YAML or a URDF path (uvs_core.robot.load_robot), or the value ``robot_description``:
then the node reads the URDF from the ``robot_description`` topic (std_msgs/String),
as robot_state_publisher publishes it (ros2_kortex, ur_robot_driver, moveit configs),
so a user's arm needs no uvs-specific file. The topic is latched (reliable,
transient-local, depth 1): a node started after the publisher still gets the last
description. Its name is relative, so a namespace or a remapping
(``-r robot_description:=/arm/robot_description``) applies.

The parameters below go with it, in each of those nodes:
- ``robot_description_timeout`` (s, default 10): how long to wait for the description;
  without one by then the node fails with a one-line reason (run_node: FATAL, exit 1).
- ``base_link`` / ``tip_link``: the chain's ends in the URDF; empty = its root link /
  its single leaf (as load_robot does for a URDF file). Used for a URDF path too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from uvs_ros.params import Param

if TYPE_CHECKING:
    from rclpy.node import Node

__all__ = ["ROBOT_DESCRIPTION", "ROBOT_MODEL_PARAMETERS",
           "RobotDescriptionError", "load_node_robot", "robot_model_reason",
           "robot_model_params", "wait_for_robot_description"]

#: the value of a node's ``robot`` parameter that means: the URDF on this topic
ROBOT_DESCRIPTION = "robot_description"

#: s, default of ``robot_description_timeout``: a driver publishes its description at start
DEFAULT_TIMEOUT = 10.0

#: name: Param of the parameters that go with ``robot``; each node that loads a robot
#: model puts them in its ParamSpec (with ``robot_model_reason`` among its checks)
ROBOT_MODEL_PARAMETERS = {
    "robot_description_timeout": Param(
        DEFAULT_TIMEOUT, "robot:=robot_description: longest wait for the URDF on the "
        "robot_description topic, s; the node fails without one by then",
        read_only=True, range=(0.0, 3600.0)),
    "base_link": Param(
        "", "URDF robots (robot_description or a .urdf path): the chain's base link; "
        "empty: the URDF's root link", read_only=True),
    "tip_link": Param(
        "", "URDF robots (robot_description or a .urdf path): the chain's tip link; "
        "empty: the URDF's single leaf below the base", read_only=True),
}


def robot_model_params(use: str = "") -> dict[str, Param]:
    """The ``robot`` parameter and ROBOT_MODEL_PARAMETERS, for a node's ParamSpec (with
    ``robot_model_reason`` among its checks). use: what the node takes from the model,
    for the description."""
    return {"robot": Param(
        "gen3", "Robot model" + (f" ({use})" if use else "") + ": a name under "
        "config/robots, a robot YAML or URDF path, or robot_description (the URDF on that "
        "topic, from a robot driver); the same for every node.", read_only=True),
        **ROBOT_MODEL_PARAMETERS}


class RobotDescriptionError(ValueError):
    """No robot description arrived in time, or it is not a usable URDF (one line)."""


def robot_model_reason(values: dict) -> str | None:
    """Why the robot-model parameters in ``values`` (name -> value) are not acceptable,
    or None. Checks ``robot`` (non-empty) and ``robot_description_timeout`` (> 0)."""
    if "robot" in values and not str(values["robot"]).strip():
        return ("robot must name a robot model: a name under config/robots, a YAML or "
                f"URDF path, or {ROBOT_DESCRIPTION}")
    timeout = values.get("robot_description_timeout", DEFAULT_TIMEOUT)
    if not (isinstance(timeout, float) and timeout > 0.0 and timeout < float("inf")):
        return f"robot_description_timeout must be a finite number > 0 s, got {timeout!r}"
    return None


def wait_for_robot_description(node: Node, timeout: float,
                               topic: str = ROBOT_DESCRIPTION) -> str:
    """The URDF text (str) published on ``topic`` (relative to ``node``'s namespace),
    waiting at most ``timeout`` s; call it before the node spins (in its constructor).

    Raises RobotDescriptionError when nothing (or an empty string) arrived by then.
    """
    from rclpy.wait_for_message import wait_for_message
    from std_msgs.msg import String

    from uvs_ros.qos import LATCHED_QOS

    resolved = node.resolve_topic_name(topic)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0.0:
            break
        ok, msg = wait_for_message(String, node, topic, qos_profile=LATCHED_QOS,
                                   time_to_wait=remaining)
        if ok and msg.data.strip():
            return msg.data
        if not node.context.ok():
            break
    raise RobotDescriptionError(
        f"{node.get_name()}: no robot description on {resolved} within {timeout:g} s "
        f"(robot:={ROBOT_DESCRIPTION} needs a robot_state_publisher or robot driver "
        "publishing it; or set robot to a name under config/robots or a URDF path)")


def load_node_robot(node: Node, spec: str):
    """The uvs_core.robot.Robot that ``node`` serves: ``spec`` (its ``robot`` parameter)
    loaded by load_robot, or with ``spec == "robot_description"`` built from the URDF on
    that topic (Robot.from_urdf: task defaults by urdf_task_defaults). Reads the node's
    ``base_link``, ``tip_link`` and ``robot_description_timeout`` parameters.

    Raises ValueError (RobotDescriptionError for the topic) with the reason.
    """
    from uvs_core.robot import Robot, load_robot

    spec = str(spec).strip()
    base = node.get_parameter("base_link").value.strip() or None
    tip = node.get_parameter("tip_link").value.strip() or None
    if spec == ROBOT_DESCRIPTION:
        timeout = node.get_parameter("robot_description_timeout").value
        xml = wait_for_robot_description(node, timeout)
        try:
            return Robot.from_urdf(xml, base_link=base, tip_link=tip,
                                   source=node.resolve_topic_name(ROBOT_DESCRIPTION))
        except ValueError as exc:
            raise RobotDescriptionError(
                f"{node.get_name()}: robot description on "
                f"{node.resolve_topic_name(ROBOT_DESCRIPTION)}: {exc}") from None
    if spec.endswith(".urdf") and (base or tip):
        return Robot.from_urdf_file(spec, base_link=base, tip_link=tip)
    return load_robot(spec)
