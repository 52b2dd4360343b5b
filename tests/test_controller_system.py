"""System: driver (sim) + jacobian_estimator (tj) + controller in one process, over DDS
(driver and controller on one executor, as `uvs servo` runs them; the estimator on
its own so it can be killed mid-run).

Asserts on what crosses the topics: the simulated Gen3 reaches a target within
1 cm, and losing the estimator stops the arm within 0.2 s with a HALTED status.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from std_msgs.msg import Float64MultiArray

from uvs_interfaces.msg import ServoStatus, TaskState
from uvs_interfaces.srv import SetTarget

driver_node = pytest.importorskip("uvs_driver.driver_node",
                                  reason="uvs_driver (the driver bridge) is not built")
estimator_node = pytest.importorskip("uvs_estimation.estimator_node",
                                     reason="uvs_estimation (the estimator service) is not built")
from uvs_control.controller_node import ControllerNode  # noqa: E402
from uvs_ros.qos import COMMAND_QOS, RECORD_QOS  # noqa: E402

WAIT = 30.0   # s; servoing from home takes ~110 cycles (5.5 s) at gain 1, 20 Hz


class Graph:
    def __init__(self, context):
        rate = [Parameter("rate", value=20.0)]
        self.driver = driver_node.DriverNode(context=context, parameter_overrides=rate)
        self.estimator = estimator_node.JacobianEstimatorNode(
            context=context, parameter_overrides=[Parameter("estimator", value="tj")])
        self.controller = ControllerNode(context=context, parameter_overrides=rate)
        self.probe = rclpy.create_node("probe", context=context)
        self.statuses: list[tuple[float, ServoStatus]] = []
        self.commands: list[tuple[float, np.ndarray]] = []
        self.task_states: list[TaskState] = []
        self.probe.create_subscription(
            ServoStatus, "controller/status",
            lambda m: self.statuses.append((time.monotonic(), m)), RECORD_QOS)
        self.probe.create_subscription(
            Float64MultiArray, "joint_velocity_command",
            lambda m: self.commands.append((time.monotonic(), np.asarray(m.data))), COMMAND_QOS)
        self.set_target_client = self.probe.create_client(SetTarget, "controller/set_target")
        self.executor = SingleThreadedExecutor(context=context)
        for node in (self.driver, self.controller, self.probe):
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        # The estimator on an executor of its own (as its main() runs it), so it can be
        # killed mid-run like a crashed process: rclpy cannot destroy a node safely
        # while another thread spins it.
        self.estimator_executor = SingleThreadedExecutor(context=context)
        self.estimator_executor.add_node(self.estimator)
        self.estimator_thread = threading.Thread(target=self.estimator_executor.spin,
                                                 daemon=True)
        self.estimator_thread.start()

    def kill_estimator(self):
        self.estimator_executor.shutdown()
        self.estimator_thread.join(timeout=WAIT)
        self.estimator.destroy_node()
        self.estimator = None

    def start_estimator(self):
        """A new estimator process comes back (after kill_estimator)."""
        self.estimator = estimator_node.JacobianEstimatorNode(
            context=self.driver.context, parameter_overrides=[Parameter("estimator", value="tj")])
        self.estimator_executor = SingleThreadedExecutor(context=self.driver.context)
        self.estimator_executor.add_node(self.estimator)
        self.estimator_thread = threading.Thread(target=self.estimator_executor.spin,
                                                 daemon=True)
        self.estimator_thread.start()

    def set_target(self, target) -> SetTarget.Response:
        client = self.set_target_client
        assert client.wait_for_service(timeout_sec=WAIT), "controller/set_target never appeared"
        done = threading.Event()
        future = client.call_async(SetTarget.Request(target=list(map(float, target))))
        future.add_done_callback(lambda _: done.set())
        assert done.wait(WAIT), "set_target: no answer"
        return future.result()

    def wait_status(self, predicate, since=0.0, timeout=WAIT):
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for t, status in self.statuses[seen:]:
                seen += 1
                if t >= since and predicate(status):
                    return t, status
            time.sleep(0.01)
        last = self.statuses[-1][1] if self.statuses else None
        raise AssertionError(f"no matching status within {timeout} s; last: {last}")

    def wait_command(self, predicate, since=0.0, timeout=WAIT):
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for t, command in self.commands[seen:]:
                seen += 1
                if t >= since and predicate(command):
                    return t, command
            time.sleep(0.005)
        raise AssertionError(f"no matching command within {timeout} s")

    def close(self):
        self.executor.shutdown()
        self.thread.join(timeout=WAIT)
        if self.estimator is not None:
            self.estimator_executor.shutdown()
            self.estimator_thread.join(timeout=WAIT)
        for node in (self.driver, self.estimator, self.controller, self.probe):
            if node is not None:
                node.destroy_node()


@pytest.fixture
def graph(ros_context):
    g = Graph(ros_context)
    try:
        yield g
    finally:
        g.close()


def test_servo_reaches_a_target_and_halts_when_the_estimator_dies(graph):
    task = graph.controller.task
    # A reachable target (forward kinematics of joints within the limits), 0.87 m from
    # the home pose; the sim run of the same law converges in ~110 cycles.
    target = task.sample_targets(np.random.default_rng(0), 1)[0]
    response = graph.set_target(target)
    assert response.success, response.message

    _, status = graph.wait_status(lambda s: s.state == ServoStatus.CONVERGED)
    assert status.estimator == "tj"
    assert status.error_norm < 0.01
    # Ground truth from the driver's simulated arm, not the controller's report.
    q = graph.driver.backend.read()[0]
    assert np.linalg.norm(task.robot.position(q) - target) < 0.01

    # Servo to a second target, then kill the estimator mid-run.
    second = task.x(task.select(graph.driver.backend.read()[0])) + np.array([0.0, 0.15, -0.1])
    assert graph.set_target(second).success
    graph.wait_command(lambda c: np.any(np.abs(c) > 1e-3), since=time.monotonic())
    t0 = time.monotonic()
    graph.kill_estimator()
    t_zero, _ = graph.wait_command(lambda c: np.all(c == 0), since=t0)
    t_halt, status = graph.wait_status(lambda s: s.state == ServoStatus.HALTED, since=t0)
    assert t_zero - t0 < 0.2, f"zero command {t_zero - t0:.3f} s after the estimator died"
    assert t_halt - t0 < 0.2
    assert status.reason.startswith(("estimator unavailable", "estimator timeout"))
    np.testing.assert_array_equal(status.command, np.zeros(7))


def test_a_killed_estimator_that_comes_back_does_not_restart_the_arm(graph):
    """Issue 12: the halt latches; the arm waits for the operator's ~/resume."""
    from std_srvs.srv import Trigger
    task = graph.controller.task
    # Home is a singular pose (arm straight up); the reachable target of the test above.
    target = task.sample_targets(np.random.default_rng(0), 1)[0]
    assert graph.set_target(target).success
    graph.wait_command(lambda c: np.any(np.abs(c) > 1e-3), since=time.monotonic())
    t0 = time.monotonic()
    graph.kill_estimator()
    graph.wait_status(lambda s: s.latched, since=t0)
    graph.start_estimator()
    _, status = graph.wait_status(lambda s: "cause cleared" in s.reason, since=time.monotonic())
    assert status.state == ServoStatus.HALTED and status.latched
    # The estimator is back and answering; the arm stays still for a second.
    q0 = graph.driver.backend.read()[0]
    t1 = time.monotonic()
    while time.monotonic() - t1 < 1.0:
        time.sleep(0.05)
    np.testing.assert_array_equal(graph.driver.backend.read()[0], q0)
    assert graph.statuses[-1][1].latched
    # The operator resumes: the servo reaches the target.
    client = graph.probe.create_client(Trigger, "controller/resume")
    assert client.wait_for_service(timeout_sec=WAIT)
    done = threading.Event()
    future = client.call_async(Trigger.Request())
    future.add_done_callback(lambda _: done.set())
    assert done.wait(WAIT) and future.result().success
    _, status = graph.wait_status(lambda s: s.state == ServoStatus.CONVERGED,
                                  since=time.monotonic())
    assert not status.latched and status.error_norm < 0.01
