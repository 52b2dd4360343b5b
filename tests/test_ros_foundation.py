"""The foundation every node stands on: real rclpy, Fast DDS and generated interfaces.

These fail when DDS, the rmw, or the generated uvs_interfaces types are broken.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Int64

from uvs_interfaces.msg import ServoStatus, TaskState
from uvs_interfaces.srv import EstimateJacobian, SetTarget


def _outer_jacobian(request, response):
    """Service under test: J = x q^T (rows = len(x), cols = len(q)), row-major."""
    q = np.asarray(request.joint_positions)
    x = np.asarray(request.task_position)
    jac = np.outer(x, q)
    response.success = True
    response.message = "ok"
    response.estimator = "outer_product"
    response.rows, response.cols = jac.shape
    response.jacobian = jac.ravel().tolist()
    response.condition_number = float(np.linalg.cond(jac))
    return response


def test_estimate_jacobian_round_trip_between_two_nodes(ros_context):
    server = rclpy.create_node("uvs_test_server", context=ros_context)
    client_node = rclpy.create_node("uvs_test_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        server.create_service(EstimateJacobian, "estimate_jacobian", _outer_jacobian)
        client = client_node.create_client(EstimateJacobian, "estimate_jacobian")
        executor.add_node(server)
        executor.add_node(client_node)
        assert client.wait_for_service(timeout_sec=10.0), "service never appeared"

        q = [0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7]
        x = [1.0, 2.0, -3.0]
        future = client.call_async(EstimateJacobian.Request(joint_positions=q, task_position=x))
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        assert future.done(), "no response within 10 s"
        response = future.result()

        assert response.success
        assert response.estimator == "outer_product"
        assert (response.rows, response.cols) == (3, 7)
        jac = np.asarray(response.jacobian).reshape(response.rows, response.cols)
        np.testing.assert_allclose(jac, np.outer(x, q))
        assert jac[2, 6] == pytest.approx(-3.0 * 0.7)
        assert response.condition_number > 1e10  # a rank-1 matrix
    finally:
        executor.shutdown()
        server.destroy_node()
        client_node.destroy_node()


def test_generated_messages_have_the_contract_fields():
    request = EstimateJacobian.Request()
    assert list(request.get_fields_and_field_types()) == ["joint_positions", "task_position"]
    response_fields = list(EstimateJacobian.Response.get_fields_and_field_types())
    assert response_fields[:7] == [
        "success", "message", "estimator", "rows", "cols", "jacobian", "condition_number",
    ]
    state = TaskState(task="single_point", position=[0.1, 0.2, 0.3], valid=True)
    assert list(state.position) == [0.1, 0.2, 0.3]
    assert ServoStatus.HALTED == 4 and ServoStatus.CONVERGED == 2
    assert list(SetTarget.Request.get_fields_and_field_types()) == ["target"]


def test_publisher_and_subscriber_in_two_processes_every_message_in_order(ros_context):
    count = 500
    topic = f"uvs_test_chatter_{os.getpid()}"
    node = rclpy.create_node("uvs_test_listener", context=ros_context)
    received = []
    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=count, reliability=ReliabilityPolicy.RELIABLE
    )
    node.create_subscription(Int64, topic, lambda msg: received.append(msg.data), qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    talker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_talker.py")), topic, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30.0
        while len(received) < count and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        output, _ = talker.communicate(timeout=30.0)
        assert talker.returncode == 0, f"talker failed ({talker.returncode}):\n{output}"
        assert received == list(range(count))
    finally:
        if talker.poll() is None:
            talker.kill()
        executor.shutdown()
        node.destroy_node()
