"""robot:=robot_description: the nodes take their robot model from the URDF a robot driver
publishes (robot_state_publisher: std_msgs/String, reliable + transient-local), over real
DDS; a missing description fails the node with a one-line reason within its timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from std_msgs.msg import String

from uvs_bringup.graph import ROBOT_DESCRIPTION, GraphOptions, servo_graph
from uvs_bringup.runner import ServoGraph
from uvs_core.robot import Robot
from uvs_estimation.estimator_node import JacobianEstimatorNode
from uvs_ros.qos import LATCHED_QOS
from uvs_ros.robot_model import RobotDescriptionError

ROBOTS = Path(__file__).resolve().parents[1] / "config" / "robots"
SCARA_JOINTS = ("shoulder", "elbow", "quill", "wrist")


@pytest.fixture
def description_publisher():
    """publish(path): a node in a context of its own that publishes the URDF at `path` on
    /robot_description once, latched, as robot_state_publisher does."""
    contexts, nodes = [], []  # kept: a collected publisher takes its description along

    def publish(path: Path) -> Node:
        context = Context()
        rclpy.init(context=context)
        contexts.append(context)
        node = Node("fake_robot_state_publisher", context=context)
        publisher = node.create_publisher(String, "robot_description", LATCHED_QOS)
        publisher.publish(String(data=path.read_text()))
        nodes.append((node, publisher))
        return node

    yield publish
    for node, _ in nodes:
        node.destroy_node()
    for context in contexts:
        rclpy.try_shutdown(context=context)


def test_graph_passes_robot_description_and_links_to_every_model_node():
    options = GraphOptions(robot=ROBOT_DESCRIPTION, tip_link="tool", task="visual_servo",
                           estimator="tj")
    loaders = {s.name: s.parameters for s in servo_graph(options) if "robot" in s.parameters}
    assert sorted(loaders) == ["controller", "driver", "jacobian_estimator", "sim_camera"]
    for params in loaders.values():
        assert params["robot"] == "robot_description"
        assert params["tip_link"] == "tool"
        assert "base_link" not in params


def test_estimator_reads_the_published_urdf(ros_context, description_publisher):
    description_publisher(ROBOTS / "ur5e.urdf")
    node = JacobianEstimatorNode(context=ros_context, parameter_overrides=[
        rclpy.parameter.Parameter("robot", value="robot_description"),
        rclpy.parameter.Parameter("estimator", value="tj")])
    try:
        expected = Robot.from_urdf((ROBOTS / "ur5e.urdf").read_text())
        robot = node.task.robot
        assert robot.name == expected.name
        assert robot.joint_names == expected.joint_names
        assert robot.n == 6 and (node.task.m, node.task.k) == (3, 6)
        q = np.array([0.1, -0.8, 1.2, -0.4, 0.3, 0.2])
        np.testing.assert_allclose(robot.fk(q), expected.fk(q), atol=1e-12)
    finally:
        node.destroy_node()


def test_missing_description_fails_with_one_line_within_the_timeout(ros_context):
    start = time.monotonic()
    with pytest.raises(RobotDescriptionError) as info:
        JacobianEstimatorNode(context=ros_context, parameter_overrides=[
            rclpy.parameter.Parameter("robot", value="robot_description"),
            rclpy.parameter.Parameter("robot_description_timeout", value=0.5),
            rclpy.parameter.Parameter("estimator", value="tj")])
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 2.5
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("jacobian_estimator: no robot description on "
                              "/robot_description within 0.5 s")


def test_controller_process_exits_with_one_fatal_line():
    """As `ros2 run uvs_control controller` would: FATAL, exit code 1, no traceback."""
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-c", "from uvs_control.controller_node import main; "
         "raise SystemExit(main())", "--ros-args", "-p", "robot:=robot_description",
         "-p", "robot_description_timeout:=0.5"],
        capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "[FATAL]" in lines[0]
    assert "controller: no robot description on /robot_description within 0.5 s" in lines[0]


def test_tj_servo_with_the_model_from_robot_description(description_publisher):
    """The whole graph (sim driver, estimator, controller) on the SCARA read from the topic:
    every node serves its joints, and the true Jacobian servos to a reachable target."""
    description_publisher(ROBOTS / "scara.urdf")
    options = GraphOptions(robot=ROBOT_DESCRIPTION, task="single_point", estimator="tj")
    with ServoGraph(options) as graph:
        for name in ("driver", "jacobian_estimator", "controller"):
            task = graph.nodes[name].task
            assert task.robot.name == "scara"
            assert task.robot.joint_names == SCARA_JOINTS
            assert (task.m, task.k) == (3, 4)
        task = graph.nodes["controller"].task
        # bend the elbow further: toward the stretched arm the controller slows (condition)
        q = task.home_active + np.array([0.3, 0.4, 0.1, 0.2])
        target = task.x(q)
        result = graph.servo_to(target, timeout=10.0)
    assert result.outcome == "converged", result.summary()
    assert result.final_error < 0.005
    assert result.initial_error > 0.05
