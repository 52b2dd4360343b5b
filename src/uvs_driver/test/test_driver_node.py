"""The driver node in process (sim backend): real rclpy, real DDS, a fresh context per test.

A probe node subscribes to what the driver publishes and sends it commands;
both spin on one executor. Every wait polls against a deadline.
"""

import math
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from uvs_driver.driver_node import DriverNode
from uvs_interfaces.msg import TaskState
from uvs_ros.qos import COMMAND_QOS

RECORD = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200,
                    reliability=ReliabilityPolicy.RELIABLE)
NS = 1_000_000_000


class Probe:
    """Records the driver's joint and task states; sends commands; calls its services."""

    def __init__(self, context, executor, namespace=""):
        self.node = rclpy.create_node("probe", context=context, namespace=namespace)
        self.executor = executor
        self.joints = []   # (stamp ns, q (n,), velocity (n,))
        self.tasks = {}    # stamp ns -> TaskState
        self.node.create_subscription(JointState, "joint_states", self._on_joint, RECORD)
        self.node.create_subscription(TaskState, "task_state", self._on_task, RECORD)
        self.pub = self.node.create_publisher(Float64MultiArray, "joint_velocity_command",
                                              COMMAND_QOS)
        executor.add_node(self.node)

    def _on_joint(self, msg):
        stamp = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
        self.joints.append((stamp, np.array(msg.position), np.array(msg.velocity)))

    def _on_task(self, msg):
        self.tasks[msg.header.stamp.sec * NS + msg.header.stamp.nanosec] = msg

    def spin_until(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.005)
        return predicate()

    def spin_for(self, seconds):
        """Spin (not sleep) for a span the test measures against, e.g. a watchdog."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.005)

    def wait_connected(self):
        assert self.spin_until(lambda: self.pub.get_subscription_count() > 0 and self.joints), \
            "driver and probe never connected"

    def send(self, qdot):
        now = self.node.get_clock().now().nanoseconds
        self.pub.publish(Float64MultiArray(data=[float(v) for v in qdot]))
        return now

    def after(self, stamp):
        return [j for j in self.joints if j[0] > stamp]

    def call(self, name, timeout=5.0):
        client = self.node.create_client(Trigger, name)
        assert self.spin_until(client.service_is_ready, timeout), f"{name} never appeared"
        future = client.call_async(Trigger.Request())
        assert self.spin_until(future.done, timeout), f"{name} did not answer in {timeout} s"
        return future.result()


@pytest.fixture
def make_graph(ros_context):
    """make_graph(**parameters) -> (driver, probe) spinning on one executor."""
    executor = SingleThreadedExecutor(context=ros_context)
    nodes = []

    def make(namespace="", **parameters):
        overrides = [Parameter(name, value=value) for name, value in parameters.items()]
        driver = DriverNode(context=ros_context, parameter_overrides=overrides,
                            namespace=namespace)
        executor.add_node(driver)
        probe = Probe(ros_context, executor, namespace)
        nodes.extend([driver, probe.node])
        probe.wait_connected()
        return driver, probe

    yield make
    executor.shutdown()
    for node in nodes:
        node.destroy_node()


QDOT = np.array([0.1, -0.2, 0.3, -0.1, 0.2, -0.3, 0.05])


def test_a_command_moves_joint_states_by_dt_times_qdot_each_tick(make_graph):
    rate = 50.0
    driver, probe = make_graph(rate=rate, command_timeout=2.0)
    sent = probe.send(QDOT)
    moving = lambda: [j for j in probe.after(sent) if np.any(j[2] != 0)]  # noqa: E731
    assert probe.spin_until(lambda: len(moving()) >= 12)

    ticks = moving()
    for (_, q0, _), (_, q1, v1) in zip(ticks, ticks[1:]):
        np.testing.assert_array_equal(v1, QDOT)
        np.testing.assert_allclose(q1 - q0, QDOT / rate, rtol=0, atol=1e-9)
    stamps = [j[0] for j in ticks]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    # Every joint state has a task state with the same stamp: x of the model at that q.
    assert probe.spin_until(lambda: all(s in probe.tasks for s in stamps))
    for stamp, q, _ in ticks:
        msg = probe.tasks[stamp]
        assert msg.task == "single_point" and msg.valid and list(msg.labels) == ["x", "y", "z"]
        np.testing.assert_allclose(msg.position, driver.task.x_from_q(q), rtol=0, atol=1e-9)


def test_watchdog_zeroes_the_velocity_after_command_timeout_and_not_before(make_graph):
    timeout = 0.3
    driver, probe = make_graph(rate=50.0, command_timeout=timeout)
    sent = probe.send(QDOT)
    probe.spin_for(timeout + 0.4)

    ticks = probe.after(sent)
    first = next(i for i, j in enumerate(ticks) if np.any(j[2] != 0))
    ticks = ticks[first:]
    # Receipt is after `sent`, so a tick stamped less than `timeout` after it is fresh.
    early = [j for j in ticks if (j[0] - sent) / NS < timeout - 1e-3]
    late = [j for j in ticks if (j[0] - sent) / NS > timeout + 0.1]
    assert len(early) >= 5 and len(late) >= 5
    for _, _, velocity in early:
        np.testing.assert_array_equal(velocity, QDOT)
    for _, _, velocity in late:
        np.testing.assert_array_equal(velocity, np.zeros(7))
    # Stopped means stopped: the position no longer changes.
    np.testing.assert_array_equal(late[0][1], late[-1][1])
    stopped = [j for j in ticks if not np.any(j[2])]
    assert (stopped[0][0] - sent) / NS >= timeout - 1e-3


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ([0.1, float("nan"), 0.0, 0.0, 0.0, 0.0, 0.0], "NaN"),
        ([0.1, 0.0, 0.0, float("inf"), 0.0, 0.0, 0.0], "Inf"),
        ([0.1, 0.2, 0.3], "too short"),
        ([0.1] * 8, "too long"),
    ],
)
def test_a_bad_command_is_refused_and_zero_is_commanded(make_graph, bad, why):
    driver, probe = make_graph(rate=50.0, command_timeout=5.0)
    sent = probe.send(QDOT)
    assert probe.spin_until(lambda: any(np.any(j[2]) for j in probe.after(sent)))
    refused = probe.send(bad)
    assert probe.spin_until(lambda: driver.rejected_commands == 1), why
    assert probe.spin_until(lambda: len(probe.after(refused)) >= 6)
    ticks = probe.after(refused)[1:]   # the first may predate the refusal's receipt
    for _, q, velocity in ticks:
        np.testing.assert_array_equal(velocity, np.zeros(7))
        np.testing.assert_array_equal(q, ticks[0][1])


def test_visual_servo_refuses_velocity_on_joints_it_does_not_drive(make_graph):
    driver, probe = make_graph(rate=50.0, command_timeout=5.0, task="visual_servo")
    assert driver.task.active.tolist() == [1, 3]
    good = np.array([0.0, 0.2, 0.0, -0.1, 0.0, 0.0, 0.0])
    sent = probe.send(good)
    assert probe.spin_until(lambda: len([j for j in probe.after(sent) if np.any(j[2])]) >= 3)
    moving = [j for j in probe.after(sent) if np.any(j[2])]
    np.testing.assert_allclose(moving[-1][1] - moving[-2][1], good / 50.0, atol=1e-9)
    assert probe.spin_until(lambda: moving[-1][0] in probe.tasks)
    assert probe.tasks[moving[-1][0]].task == "visual_servo"
    assert len(probe.tasks[moving[-1][0]].position) == 2

    refused = probe.send([0.3, 0.2, 0.0, -0.1, 0.0, 0.0, 0.0])   # joint_1 is fixed
    assert probe.spin_until(lambda: driver.rejected_commands == 1)
    assert probe.spin_until(lambda: len(probe.after(refused)) >= 4)
    for _, q, velocity in probe.after(refused)[1:]:
        np.testing.assert_array_equal(velocity, np.zeros(7))
        assert q[0] == 0.0


def test_an_over_limit_command_is_scaled_as_a_whole_vector(make_graph):
    rate = 50.0
    driver, probe = make_graph(rate=rate, command_timeout=5.0)
    command = np.array([2.44, -1.22, 0.61, 0.0, 0.3, 0.0, -0.1])
    sent = probe.send(command)
    assert probe.spin_until(lambda: len([j for j in probe.after(sent) if np.any(j[2])]) >= 3)
    moving = [j for j in probe.after(sent) if np.any(j[2])]
    velocity = moving[-1][2]
    assert np.max(np.abs(velocity)) == pytest.approx(1.22, abs=1e-12)
    np.testing.assert_allclose(velocity, command * (1.22 / 2.44), rtol=1e-12)
    np.testing.assert_allclose(moving[-1][1] - moving[-2][1], velocity / rate, atol=1e-9)

    # A lower cap set at run time applies to the next ticks.
    result = driver.set_parameters([Parameter("max_joint_velocity", value=0.5)])[0]
    assert result.successful, result.reason
    changed = probe.send(command)
    assert probe.spin_until(lambda: len(probe.after(changed)) >= 3)
    np.testing.assert_allclose(probe.after(changed)[-1][2], command * (0.5 / 2.44), rtol=1e-12)


def test_home_returns_the_arm_to_home_and_stop_zeroes(make_graph):
    driver, probe = make_graph(rate=50.0, command_timeout=5.0)
    sent = probe.send(QDOT)
    assert probe.spin_until(lambda: len([j for j in probe.after(sent) if np.any(j[2])]) >= 5)
    assert np.linalg.norm(probe.joints[-1][1] - driver.task.home) > 0.01

    # Home while a command is still fresh: the arm goes home and stays there.
    response = probe.call("driver/home")
    assert response.success, response.message
    homed = probe.node.get_clock().now().nanoseconds
    assert probe.spin_until(lambda: len(probe.after(homed)) >= 3)
    for _, q, velocity in probe.after(homed):
        np.testing.assert_array_equal(q, driver.task.home)
        np.testing.assert_array_equal(velocity, np.zeros(7))
    assert probe.spin_until(lambda: probe.after(homed)[-1][0] in probe.tasks)
    np.testing.assert_allclose(probe.tasks[probe.after(homed)[-1][0]].position,
                               driver.task.x_from_q(driver.task.home), atol=1e-12)

    # Stop while a command is fresh: zero at once, well inside the 5 s watchdog.
    sent = probe.send(QDOT)
    assert probe.spin_until(lambda: len([j for j in probe.after(sent) if np.any(j[2])]) >= 3)
    response = probe.call("driver/stop")
    assert response.success, response.message
    stopped = probe.node.get_clock().now().nanoseconds
    assert probe.spin_until(lambda: len(probe.after(stopped)) >= 4)
    ticks = probe.after(stopped)
    for _, q, velocity in ticks:
        np.testing.assert_array_equal(velocity, np.zeros(7))
        np.testing.assert_array_equal(q, ticks[0][1])
    assert np.linalg.norm(ticks[0][1] - driver.task.home) > 0.01


def test_sim_has_no_clear_faults_and_names_follow_the_namespace(make_graph):
    driver, probe = make_graph(namespace="arm1", rate=50.0)
    assert driver._joint_pub.topic_name == "/arm1/joint_states"
    assert driver._task_pub.topic_name == "/arm1/task_state"
    assert driver._command_sub.topic_name == "/arm1/joint_velocity_command"
    services = dict(driver.get_service_names_and_types_by_node("driver", "/arm1"))
    assert "/arm1/driver/home" in services and "/arm1/driver/stop" in services
    assert not any(name.endswith("clear_faults") for name in services)


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("rate", 0.0, "> 0"),
        ("rate", -5.0, ""),
        ("command_timeout", 0.0, "> 0"),
        ("max_joint_velocity", float("nan"), ""),
        ("backend", "gen3", "read-only"),
        ("task", "multi_point", "read-only"),
    ],
)
def test_run_time_parameter_changes_are_validated(make_graph, name, value, why):
    driver, _ = make_graph(rate=50.0)
    before = driver.get_parameter(name).value
    result = driver.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful
    assert result.reason and why in result.reason
    assert driver.get_parameter(name).value == before or (
        isinstance(before, float) and math.isnan(before))


def test_a_new_rate_changes_the_tick_and_the_step(make_graph):
    driver, probe = make_graph(rate=50.0, command_timeout=5.0)
    result = driver.set_parameters([Parameter("rate", value=25.0)])[0]
    assert result.successful, result.reason
    sent = probe.send(QDOT)
    assert probe.spin_until(lambda: len([j for j in probe.after(sent) if np.any(j[2])]) >= 5)
    moving = [j for j in probe.after(sent) if np.any(j[2])]
    np.testing.assert_allclose(moving[-1][1] - moving[-2][1], QDOT / 25.0, atol=1e-9)
    periods = np.diff([j[0] for j in moving]) / NS
    assert 0.03 < float(np.median(periods)) < 0.05


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [("backend", "foo", "backend 'foo' unknown"), ("rate", 0.0, "rate must be"),
     ("task", "dance", "task 'dance' unknown")],
)
def test_bad_start_parameters_are_refused_with_the_reason(ros_context, name, value, why):
    with pytest.raises(ValueError, match=why):
        DriverNode(context=ros_context, parameter_overrides=[Parameter(name, value=value)])


def test_defect3_the_position_guard_holds_a_joint_before_its_limit(make_graph):
    """The simulation used to run joint_2 into its limit (clipped there); the driver now
    holds it while its position lookahead s ahead would pass the limit."""
    rate = 50.0
    driver, probe = make_graph(rate=rate, command_timeout=5.0, lookahead=0.5,
                               limit_margin=0.02)
    upper = driver.robot.upper[1]
    sent = probe.send([0.0, 1.2, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert probe.spin_until(lambda: len(probe.after(sent)) >= 150, timeout=10.0)  # 3 s
    q2 = np.array([q[1] for _, q, _ in probe.after(sent)])
    assert np.all(q2 < upper - 0.02)
    assert q2.max() > upper - 0.02 - 1.2 * 0.5 - 1.2 / rate   # held no earlier than needed
    assert probe.after(sent)[-1][2][1] == 0.0                 # held: zero velocity
    # Moving away from the limit is not held.
    away = probe.send([0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert probe.spin_until(lambda: len(probe.after(away)) >= 5)
    assert probe.after(away)[-1][2][1] == -0.5


def test_rate_is_capped_for_the_simulation_too(make_graph):
    driver, _ = make_graph(rate=50.0)
    result = driver.set_parameters([Parameter("rate", value=2000.0)])[0]
    assert not result.successful and "1000" in result.reason


# ---------------------------------------------------------------- safety (issue 12)

class SafetyProbe:
    """Records the driver's ~/safety strings."""

    def __init__(self, probe, driver_name="driver"):
        from rclpy.qos import DurabilityPolicy
        from std_msgs.msg import String
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.messages = []
        probe.node.create_subscription(String, f"{driver_name}/safety",
                                       lambda m: self.messages.append(m.data), latched)


def test_a_command_far_beyond_the_limits_is_refused_not_capped(make_graph):
    driver, probe = make_graph(rate=50.0, command_timeout=5.0)
    safety = SafetyProbe(probe)
    sent = probe.send(np.full(7, 100.0))     # rad/s: a deg/s or units bug
    assert probe.spin_until(lambda: len(probe.after(sent)) >= 5)
    for _, _, velocity in probe.after(sent):
        np.testing.assert_array_equal(velocity, np.zeros(7))
    assert probe.spin_until(lambda: any(m.startswith("unit_error") for m in safety.messages))
    message = next(m for m in safety.messages if m.startswith("unit_error"))
    assert "100 rad/s" in message and "over 2 x its limit" in message
    assert driver.rejected_commands >= 1
    # 2.44 rad/s (under 2 x 1.396 on joint 1) is still scaled, not refused.
    sent = probe.send(np.array([2.44, 0, 0, 0, 0, 0, 0]))
    assert probe.spin_until(lambda: any(np.any(j[2]) for j in probe.after(sent)))


def test_a_second_publisher_is_refused_while_the_first_commands(make_graph, ros_context):
    driver, probe = make_graph(rate=50.0, command_timeout=0.5)
    safety = SafetyProbe(probe)
    intruder = rclpy.create_node("intruder", context=ros_context)
    try:
        pub = intruder.create_publisher(Float64MultiArray, "joint_velocity_command",
                                        COMMAND_QOS)
        probe.executor.add_node(intruder)
        assert probe.spin_until(lambda: pub.get_subscription_count() > 0)
        owner = QDOT * 2.0
        start = probe.send(owner)
        assert probe.spin_until(lambda: len(probe.after(start)) >= 2)
        # Two sources alternating at ~100 Hz for 0.6 s: only the owner's command applies.
        deadline = time.monotonic() + 0.6
        mark = probe.node.get_clock().now().nanoseconds
        while time.monotonic() < deadline:
            probe.send(owner)
            pub.publish(Float64MultiArray(data=[0.0] * 7))
            probe.spin_for(0.01)
        ticks = probe.after(mark)
        assert len(ticks) >= 20
        for _, _, velocity in ticks:
            np.testing.assert_allclose(velocity, owner, rtol=1e-12)
        assert probe.spin_until(
            lambda: any(m.startswith("second_source") for m in safety.messages))
        # The intruder alone does not feed the watchdog: zero after command_timeout.
        silent = probe.node.get_clock().now().nanoseconds
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:
            pub.publish(Float64MultiArray(data=[0.0] * 7))
            probe.spin_for(0.01)
        # The owner gone for command_timeout, the next source takes over.
        probe.spin_for(0.4)
        pub.publish(Float64MultiArray(data=list(QDOT)))
        taken = probe.node.get_clock().now().nanoseconds
        assert probe.spin_until(
            lambda: any(np.allclose(j[2], QDOT) for j in probe.after(taken)))
        assert any(np.all(j[2] == 0) for j in probe.after(silent))
    finally:
        probe.executor.remove_node(intruder)
        intruder.destroy_node()


def test_joint_lookahead_guard_stops_a_joint_before_its_limit(make_graph):
    driver, probe = make_graph(rate=20.0, command_timeout=5.0)
    upper = driver.robot.upper[1]            # joint_2, 2.2497 rad
    qdot = np.zeros(7)
    qdot[1] = 1.0
    sent = probe.send(qdot)
    # Stops at the first tick where q + 0.5 s * 1 rad/s would pass the limit, after the
    # step of 0.05 rad that tick started from: q in (upper - 0.55, upper - 0.45].
    assert probe.spin_until(
        lambda: len(probe.after(sent)) > 5 and not np.any(probe.after(sent)[-1][2]), 5.0)
    q = probe.joints[-1][1][1]
    assert upper - 0.55 < q <= upper - 0.45, q


def test_envelope_zeroes_a_command_heading_into_the_table(make_graph):
    driver, probe = make_graph(rate=20.0, command_timeout=5.0, envelope="robot")
    safety = SafetyProbe(probe)
    qdot = np.array([0.0, 0.6, 0.0, 1.0, 0.0, 0.0, 0.0])
    sent = probe.send(qdot)
    assert probe.spin_until(
        lambda: len(probe.after(sent)) > 5 and not np.any(probe.after(sent)[-1][2]), 5.0)
    assert probe.spin_until(lambda: any(m.startswith("envelope") for m in safety.messages))
    message = next(m for m in safety.messages if m.startswith("envelope"))
    assert "into the table plane" in message
    q = probe.joints[-1][1]
    z = driver.robot.position(q)[2]
    # Zeroed one look-ahead before the plane: the tool is well above it, and the whole
    # command (both joints) stopped.
    assert 0.3 < z < 0.7, z
    # Lifting away is allowed.
    up = probe.send(-qdot)
    assert probe.spin_until(lambda: any(np.allclose(j[2], -qdot) for j in probe.after(up)))


def test_the_sim_envelope_is_the_box_unless_asked(make_graph):
    driver, _ = make_graph()
    assert driver.envelope.table_normal is None
    np.testing.assert_array_equal(driver.envelope.box_min, [-1.3, -1.3, -0.8])
