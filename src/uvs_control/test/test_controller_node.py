# Over 600 lines: the node-level tests of the controller over real DDS (cycle: test_cycle.py).
"""The controller node over real rclpy and Fast DDS, against an in-test estimator service
and a stand-in for the driver's joint_states / task_state.

Each test gets a fresh context and its own nodes; waits poll against deadlines.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from uvs_control.controller_node import ControllerNode
from uvs_core.control import condition_number, control_step, task_rank
from uvs_interfaces.msg import ServoStatus, TaskState
from uvs_interfaces.srv import EstimateJacobian, SetTarget
from uvs_ros.qos import COMMAND_QOS, LATCHED_QOS, RECORD_QOS

RATE = 20.0
# A well-conditioned pose (condition number ~4): no slowdown, so the expected
# command does not depend on the condition history.
Q = np.array([0.3, 0.6, -0.2, 1.2, 0.1, 0.8, 0.2])
WAIT = 10.0   # s, generous deadline for anything that should happen within a few cycles


class FakeEstimator:
    """estimate_jacobian serving the task model's true J, or a chosen fault."""

    def __init__(self, context, task):
        self.task = task
        self.mode = "true"          # true | nan | fail | slow | alternate | wrong_dims
        self.uncertainty = math.nan  # the answers' uncertainty field (NaN: unknown)
        self.requests: list[EstimateJacobian.Request] = []
        self.node = rclpy.create_node("fake_estimator", context=context)
        self.node.create_service(EstimateJacobian, "estimate_jacobian", self._on_request)
        # Its own executor, so a deliberately slow answer blocks nothing else.
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_request(self, request, response):
        self.requests.append(request)
        q = np.asarray(request.joint_positions)
        jac = self.task.jacobian_from_q(q)
        response.estimator = "fake_tj"
        response.success = True
        if self.mode == "nan":
            jac = jac.copy()
            jac[0, 0] = np.nan
        elif self.mode == "fail":
            response.success, response.message = False, "model not loaded"
            return response
        elif self.mode == "slow":
            time.sleep(0.15)
        elif self.mode == "alternate" and len(self.requests) % 2:
            time.sleep(0.06)        # past the 40 ms deadline, answered before the next
        elif self.mode == "wrong_dims":
            jac = jac[:2]
        response.rows, response.cols = jac.shape
        response.jacobian = jac.ravel().tolist()
        response.condition_number = float(condition_number(jac))
        response.uncertainty = float(self.uncertainty)
        return response

    def close(self):
        self.executor.shutdown()
        self.thread.join(timeout=WAIT)   # an answer in flight finishes before the node goes
        self.node.destroy_node()


class Harness:
    """Controller + stand-in driver states + probes, spun in a background thread."""

    def __init__(self, context, rate=RATE, overrides=(), integrate=False):
        self.context = context
        # integrate: the stand-in driver moves q by the last command every state tick (a
        # kinematic arm), else q stays where the test puts it.
        self.integrate = integrate
        self.on_tick = None         # called with the stand-in's time (monotonic) each tick
        params = [Parameter("rate", value=rate)] + list(overrides)
        self.controller = ControllerNode(context=context, parameter_overrides=params)
        self.task, self.robot = self.controller.task, self.controller.robot
        self.estimator = FakeEstimator(context, self.task)
        self.q = Q.copy()
        self.valid = True
        self.publishing = True
        self.world = rclpy.create_node("stand_in_driver", context=context)
        self._joint_pub = self.world.create_publisher(JointState, "joint_states", 10)
        self._task_pub = self.world.create_publisher(TaskState, "task_state", 10)
        self.target_pub = self.world.create_publisher(TaskState, "target", COMMAND_QOS)
        self.world.create_timer(0.02, self._publish_states)
        self.commands: list[tuple[float, np.ndarray]] = []
        self.statuses: list[tuple[float, ServoStatus]] = []
        self.markers: list[MarkerArray] = []
        self.world.create_subscription(
            Float64MultiArray, "joint_velocity_command",
            lambda m: self.commands.append((time.monotonic(), np.asarray(m.data))), COMMAND_QOS)
        self.world.create_subscription(
            ServoStatus, "controller/status",
            lambda m: self.statuses.append((time.monotonic(), m)), RECORD_QOS)
        self.world.create_subscription(MarkerArray, "controller/markers",
                                       self.markers.append, LATCHED_QOS)
        self.set_target_client = self.world.create_client(SetTarget, "controller/set_target")
        self.cancel_client = self.world.create_client(Trigger, "controller/cancel")
        self.resume_client = self.world.create_client(Trigger, "controller/resume")
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.controller)
        self.executor.add_node(self.world)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    @property
    def x(self) -> np.ndarray:
        return self.task.x_from_q(self.q)

    def _publish_states(self):
        if not self.publishing:
            return
        now = time.monotonic()
        if self.integrate and self.commands:
            last = getattr(self, "_last_tick", None)
            if last is not None:
                self.q = self.q + (now - last) * self.commands[-1][1]
        self._last_tick = now
        if self.on_tick is not None:
            self.on_tick(now)
        stamp = self.world.get_clock().now().to_msg()
        js = JointState(name=list(self.robot.joint_names), position=self.q.tolist())
        js.header.stamp = stamp
        ts = TaskState(task=self.task.name, position=self.x.tolist(), valid=self.valid)
        ts.header.stamp = stamp
        self._joint_pub.publish(js)
        self._task_pub.publish(ts)

    def call(self, client, request):
        assert client.wait_for_service(timeout_sec=WAIT), f"{client.srv_name} never appeared"
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        assert done.wait(WAIT), f"{client.srv_name}: no answer"
        return future.result()

    def set_target(self, target):
        return self.call(self.set_target_client, SetTarget.Request(target=list(target)))

    def wait_status(self, predicate, timeout=WAIT, since=0.0):
        """First status received after `since` (monotonic) that satisfies predicate."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for t, status in self.statuses[seen:]:
                seen += 1
                if t >= since and predicate(status):
                    return t, status
            time.sleep(0.005)
        last = self.statuses[-1][1] if self.statuses else None
        raise AssertionError(f"no matching status within {timeout} s; last: {last}")

    def wait_command(self, predicate, timeout=WAIT, since=0.0):
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for t, command in self.commands[seen:]:
                seen += 1
                if t >= since and predicate(command):
                    return t, command
            time.sleep(0.005)
        raise AssertionError(f"no matching command within {timeout} s")

    def expected_command(self, target, gain_scale=1.0):
        """What control_step gives for the stand-in's pose, with the node's options (the
        gain times gain_scale)."""
        task, robot = self.task, self.robot
        qa = task.select(self.q)
        config = self.controller.control_config
        config = replace(config, gain=config.gain * gain_scale)
        qdot, info = control_step(
            task.jacobian(qa), self.x, np.asarray(target), qa, config,
            robot.lower[task.active], robot.upper[task.active],
            velocity_limits=robot.velocity_limits[task.active], rank=task_rank(task),
            condition_transform=task.condition_transform)
        full = np.zeros(robot.n)
        full[task.active] = qdot
        return full, info

    def close(self):
        self.executor.shutdown()
        self.thread.join(timeout=WAIT)
        self.estimator.close()
        self.controller.destroy_node()
        self.world.destroy_node()


@pytest.fixture
def harness(ros_context):
    h = Harness(ros_context)
    try:
        yield h
    finally:
        h.close()


def _servoing(status):
    return status.state == ServoStatus.SERVOING


def test_idle_without_target_then_commands_equal_control_step(harness):
    h = harness
    _, status = h.wait_status(lambda s: True)
    assert (status.state, status.state_name) == (ServoStatus.IDLE, "idle")
    _, command = h.wait_command(lambda c: True)
    np.testing.assert_array_equal(command, np.zeros(7))
    assert condition_number(h.task.jacobian(h.task.select(Q))) < 17

    target = h.x + np.array([0.05, -0.03, 0.04])
    response = h.set_target(target)
    assert response.success, response.message
    t0, status = h.wait_status(_servoing)
    expected, info = h.expected_command(target)
    assert np.any(expected != 0)
    np.testing.assert_allclose(np.asarray(status.command), expected, rtol=0, atol=1e-12)
    _, command = h.wait_command(lambda c: np.any(c != 0))
    np.testing.assert_allclose(command, expected, rtol=0, atol=1e-12)
    assert status.task == "single_point" and status.estimator == "fake_tj"
    assert status.reason == ""
    assert status.error_norm == pytest.approx(np.linalg.norm(target - h.x))
    assert status.condition_number == pytest.approx(float(info.condition))
    np.testing.assert_allclose(status.target, target)
    np.testing.assert_allclose(status.position, h.x)
    assert status.header.frame_id == "base_link"
    # The request carries the full joint positions (joint_states order) and x.
    request = h.estimator.requests[-1]
    np.testing.assert_allclose(request.joint_positions, Q)
    np.testing.assert_allclose(request.task_position, h.x)

    # A status every cycle: step counts cycles, and none is missing.
    _, last = h.wait_status(lambda s: s.step >= status.step + 10, since=t0)
    steps = [s.step for t, s in h.statuses if t >= t0 and s.step <= last.step]
    assert steps == list(range(steps[0], last.step + 1))
    stamps = [s.header.stamp.sec + 1e-9 * s.header.stamp.nanosec
              for t, s in h.statuses if t >= t0 and s.step <= last.step]
    assert np.median(np.diff(stamps)) == pytest.approx(1.0 / RATE, rel=0.3)


def test_the_estimator_gets_x_with_the_joint_positions_of_the_same_stamp(harness):
    """x arrives one reading behind q (a camera, a slower topic): the request still pairs
    x with the q it was measured at (equal header stamps), so an online estimator's
    secants are not noise; unstamped task states fall back to the newest q."""
    h = harness
    h.publishing = False
    qa, qb = Q.copy(), Q + 0.05
    stop = threading.Event()

    def stand_in():
        previous = None
        k = 0
        while not stop.is_set():
            q = qa if k % 2 else qb
            stamp = h.world.get_clock().now().to_msg()
            js = JointState(name=list(h.robot.joint_names), position=q.tolist())
            js.header.stamp = stamp
            h._joint_pub.publish(js)
            if previous is not None:        # the task state of the previous reading
                p_stamp, p_q = previous
                ts = TaskState(task=h.task.name, position=h.task.x_from_q(p_q).tolist(),
                               valid=True)
                ts.header.stamp = p_stamp
                h._task_pub.publish(ts)
            previous = (stamp, q)
            k += 1
            time.sleep(0.02)

    thread = threading.Thread(target=stand_in, daemon=True)
    thread.start()
    try:
        assert h.set_target(h.task.x_from_q(Q) + 0.02).success
        deadline = time.monotonic() + WAIT
        while len(h.estimator.requests) < 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        requests = list(h.estimator.requests)[3:]
        assert len(requests) >= 10
        pairs = [(np.asarray(r.joint_positions), np.asarray(r.task_position)) for r in requests]
        for q, x in pairs:
            np.testing.assert_allclose(h.task.x_from_q(q), x, atol=1e-12)
        # both poses appeared, so the pairing was tested on both phases
        assert {round(float(q[0]), 3) for q, _ in pairs} == {round(Q[0], 3), round(Q[0] + 0.05, 3)}
    finally:
        stop.set()
        thread.join(timeout=WAIT)


def test_runs_at_100_hz(ros_context):
    h = Harness(ros_context, rate=100.0,
                overrides=[Parameter("estimator_timeout", value=0.008)])
    try:
        target = h.x + np.array([0.05, -0.03, 0.04])
        assert h.set_target(target).success
        t0, status = h.wait_status(_servoing)
        np.testing.assert_allclose(status.command, h.expected_command(target)[0], atol=1e-12)
        assert h.controller.control_config.dt == pytest.approx(0.01)
        _, last = h.wait_status(lambda s: s.step >= status.step + 50, since=t0)
        stamps = [s.header.stamp.sec + 1e-9 * s.header.stamp.nanosec
                  for t, s in h.statuses if t >= t0 and s.step <= last.step]
        # 10 ms cycles; a loaded 2-core machine (tests run in parallel) stretches some.
        assert np.median(np.diff(stamps)) == pytest.approx(0.01, rel=0.5)
    finally:
        h.close()


def test_estimator_faults_give_zero_command_and_halted_within_0_2_s(harness):
    h = harness
    target = h.x + np.array([0.05, -0.03, 0.04])
    assert h.set_target(target).success
    for mode, reason in [("nan", "non-finite jacobian"),
                         ("fail", "estimator failed: model not loaded"),
                         ("slow", "estimator timeout"),
                         ("wrong_dims", "estimator returned a 2x7 Jacobian")]:
        h.estimator.mode = "true"
        h.wait_status(_servoing, since=time.monotonic())
        t0 = time.monotonic()
        h.estimator.mode = mode
        t_zero, _ = h.wait_command(lambda c: np.all(c == 0), since=t0)
        t_halt, _ = h.wait_status(lambda s: s.state == ServoStatus.HALTED, since=t0)
        # A late answer is first bridged with the last J for jacobian_hold (0.075 s).
        bound = 0.2 + (0.075 if mode == "slow" else 0.0)
        assert t_zero - t0 < bound, f"{mode}: zero command after {t_zero - t0:.3f} s"
        assert t_halt - t0 < bound, f"{mode}: HALTED after {t_halt - t0:.3f} s"
        # The reason (on a loaded machine a cycle may first time out at 40 ms).
        _, status = h.wait_status(lambda s, r=reason: s.reason.startswith(r), since=t0)
        assert status.state == ServoStatus.HALTED and status.state_name == "halted"
        np.testing.assert_array_equal(status.command, np.zeros(7))
    # Recovery: servoing resumes by itself once the estimator answers again.
    t0 = time.monotonic()
    h.estimator.mode = "true"
    _, status = h.wait_status(_servoing, since=t0)
    assert status.reason == ""
    # No estimator at all: zero and halted, with a reason.
    h.estimator.close()
    t0 = time.monotonic()
    _, status = h.wait_status(lambda s: s.state == ServoStatus.HALTED, since=t0)
    assert status.reason.startswith(("estimator unavailable", "estimator timeout"))
    h.wait_command(lambda c: np.all(c == 0), since=t0)


@pytest.mark.parametrize("hold", [0.075, 0.0])
def test_a_late_answer_is_bridged_with_the_last_jacobian_within_jacobian_hold(ros_context,
                                                                               hold):
    """Every other answer misses the deadline: with the default hold the controller servos
    on with the previous J (estimator "fake_tj (held)"), not halting; with hold 0 it
    halts on every miss (about 20 of the 40 cycles). On a loaded machine a prompt answer
    can be late too, and two misses in a row halt by design: 2 such halts are allowed."""
    h = Harness(ros_context, overrides=[Parameter("jacobian_hold", value=hold)])
    try:
        target = h.x + np.array([0.3, -0.2, 0.25])      # far: 40 cycles without converging
        assert h.set_target(target).success
        t0, status = h.wait_status(_servoing)
        h.estimator.mode = "alternate"
        t1 = time.monotonic()
        _, last = h.wait_status(lambda s: s.step >= status.step + 40, since=t1)
        seen = [s for t, s in h.statuses if t >= t1 and s.step <= last.step]
        halted = [s for s in seen if s.state == ServoStatus.HALTED]
        held = [s for s in seen if s.estimator == "fake_tj (held)"]
        if hold > 0:
            assert len(halted) <= 2, [s.reason for s in halted][:3]
            assert len(held) >= 10 and h.controller.cycle.held_cycles >= 10
            assert all(np.any(np.asarray(s.command) != 0) for s in held)
        else:
            assert len(halted) >= 10 and held == []
            assert all(s.reason.startswith("estimator timeout") for s in halted)
    finally:
        h.close()


def test_lost_marker_and_stale_states_halt_and_recover(harness):
    h = harness
    assert h.set_target(h.x + np.array([0.05, 0.0, 0.0])).success
    h.wait_status(_servoing)
    t0 = time.monotonic()
    h.valid = False
    _, status = h.wait_status(lambda s: s.state == ServoStatus.HALTED, since=t0)
    assert status.reason == "marker lost"
    h.wait_command(lambda c: np.all(c == 0), since=t0)
    h.valid = True
    h.wait_status(_servoing, since=time.monotonic())

    t0 = time.monotonic()
    h.publishing = False
    t_halt, status = h.wait_status(lambda s: s.state == ServoStatus.HALTED, since=t0)
    assert "stale" in status.reason
    assert t_halt - t0 < 0.25 + 0.2      # state_timeout + a cycle or two
    h.publishing = True
    h.wait_status(_servoing, since=time.monotonic())


def test_set_target_is_validated_and_cancel_idles(harness):
    h = harness
    short = h.set_target([0.1, 0.2])
    assert not short.success and "needs 3" in short.message
    nan = h.set_target([0.1, float("nan"), 0.3])
    assert not nan.success and "NaN" in nan.message
    _, status = h.wait_status(lambda s: True, since=time.monotonic())
    assert status.state == ServoStatus.IDLE and list(status.target) == []

    assert h.set_target(h.x + np.array([0.0, 0.05, 0.0])).success
    h.wait_status(_servoing)
    response = h.call(h.cancel_client, Trigger.Request())
    assert response.success
    t0 = time.monotonic()
    _, status = h.wait_status(lambda s: s.state == ServoStatus.IDLE, since=t0)
    np.testing.assert_array_equal(status.command, np.zeros(7))
    h.wait_command(lambda c: np.all(c == 0), since=t0)


def test_converges_and_follows_a_moving_target_topic(harness):
    h = harness
    # A target within the tolerance: converged, zero command.
    msg = TaskState(task="single_point", position=(h.x + 0.001).tolist(), valid=True)
    h.target_pub.publish(msg)
    _, status = h.wait_status(lambda s: s.state == ServoStatus.CONVERGED)
    np.testing.assert_array_equal(status.command, np.zeros(7))
    step = status.step
    # A small move of the target (within tolerance) only updates x*.
    nudged = h.x + np.array([0.003, 0.0, 0.0])
    h.target_pub.publish(TaskState(task="single_point", position=nudged.tolist(), valid=True))
    _, status = h.wait_status(lambda s: len(s.target) == 3 and np.allclose(s.target, nudged))
    assert status.step > step
    # A real move: servoing again, bookkeeping restarted.
    moved = h.x + np.array([0.0, 0.0, 0.08])
    t0 = time.monotonic()
    h.target_pub.publish(TaskState(task="single_point", position=moved.tolist(), valid=True))
    _, status = h.wait_status(lambda s: len(s.target) == 3 and np.allclose(s.target, moved),
                              since=t0)
    assert status.state == ServoStatus.SERVOING and status.step <= 3
    np.testing.assert_allclose(status.command, h.expected_command(moved)[0], atol=1e-12)
    # Malformed targets on the topic are ignored.
    h.target_pub.publish(TaskState(task="single_point", position=[1.0, 2.0], valid=True))
    _, status = h.wait_status(lambda s: s.step >= 5, since=time.monotonic())
    np.testing.assert_allclose(status.target, moved)
    assert status.state == ServoStatus.SERVOING


def test_a_lost_or_stale_topic_target_stops_the_arm_until_it_is_back(ros_context):
    """A tracked target marker out of sight (valid=false) or silent for target_timeout:
    zero command and HALTED, unlatched; servoing resumes with the next valid target."""
    h = Harness(ros_context, overrides=[Parameter("target_timeout", value=0.3)])
    try:
        goal = h.x + np.array([0.0, 0.06, 0.0])

        def send(valid=True):
            h.target_pub.publish(TaskState(task="single_point", position=goal.tolist(),
                                           valid=valid))

        send()
        h.wait_status(_servoing)
        t0 = time.monotonic()
        send(valid=False)
        _, status = h.wait_status(lambda s: s.state == ServoStatus.HALTED, since=t0)
        assert status.reason.startswith("target lost") and not status.latched
        h.wait_command(lambda c: np.all(c == 0), since=t0)
        time.sleep(0.2)      # any cycle while lost: still zero
        assert all(np.all(c == 0) for t, c in h.commands if t > t0 + 0.1)
        send()
        h.wait_status(_servoing, since=time.monotonic())

        # Silence: one valid target, then nothing for target_timeout (0.3 s).
        t_sent = time.monotonic()
        send()
        t_halt, status = h.wait_status(
            lambda s: s.state == ServoStatus.HALTED and s.reason.startswith("target stale"),
            since=t_sent)
        assert 0.3 <= t_halt - t_sent < 0.3 + 0.2
        h.wait_command(lambda c: np.all(c == 0), since=t_halt)
        send()
        h.wait_status(_servoing, since=time.monotonic())

        # A target set by the service never goes stale, and an invalid message on the
        # topic does not take it away.
        assert h.set_target(goal).success
        t0 = time.monotonic()
        send(valid=False)
        _, status = h.wait_status(lambda s: s.step >= 12, since=t0)   # 0.6 s > 0.3 s
        assert status.state == ServoStatus.SERVOING
    finally:
        h.close()


def test_markers_draw_arm_tool_target_and_error(harness):
    h = harness
    target = h.x + np.array([0.05, -0.03, 0.04])
    assert h.set_target(target).success
    h.wait_status(_servoing)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not any(
            m.ns == "target" and m.action == Marker.ADD
            for arr in h.markers[-1:] for m in arr.markers):
        time.sleep(0.01)
    markers = {m.ns: m for m in h.markers[-1].markers}
    arm = markers["arm"]
    assert arm.type == Marker.LINE_STRIP and arm.header.frame_id == "base_link"
    frames = h.robot.frames(Q)
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in arm.points], frames[:, :3, 3],
                               atol=1e-12)
    tip = markers["end_effector"].pose.position
    np.testing.assert_allclose([tip.x, tip.y, tip.z], h.x, atol=1e-12)
    goal = markers["target"]
    assert goal.type == Marker.SPHERE_LIST
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in goal.points], [target])
    arrow = markers["error"]
    assert arrow.type == Marker.ARROW and len(arrow.points) == 2
    status = markers["status"]
    assert status.type == Marker.TEXT_VIEW_FACING
    assert status.text.startswith(("servoing", "converged", "stalled"))
    assert "[fake_tj, cond " in status.text


def test_parameters_are_validated(ros_context):
    node = ControllerNode(context=ros_context)
    try:
        def set_(name, value):
            return node.set_parameters([Parameter(name, value=value)])[0]

        assert set_("gain", 2.0).successful and node.control_config.gain == 2.0
        result = set_("gain", 0.0)
        assert not result.successful and "gain" in result.reason
        result = set_("rate", 100.0)      # estimator_timeout 0.04 s > 0.01 s period
        assert not result.successful and "estimator_timeout" in result.reason
        assert set_("estimator_timeout", 0.008).successful and set_("rate", 100.0).successful
        assert node.control_config.dt == pytest.approx(0.01)
        result = set_("cond_slowdown", 40.0)
        assert not result.successful and "cond_halt" in result.reason
        assert set_("cond_halt", float("inf")).successful
        assert set_("cond_slowdown", float("inf")).successful
        assert not set_("task", "multi_point").successful       # read-only
        assert not set_("frame_id", " ").successful
        assert node.tolerance == pytest.approx(0.005)
        assert node.control_config.velocity_limit_mode == "scale"
        assert set_("velocity_limit_mode", "clip").successful
        assert node.control_config.velocity_limit_mode == "clip"
        result = set_("velocity_limit_mode", "wrap")
        assert not result.successful and "velocity_limit_mode 'wrap' unknown" in result.reason
        assert set_("joint_limit_policy", "mask").successful
        assert node.control_config.joint_limit_policy == "mask"
        assert not set_("joint_limit_policy", "ignore").successful
    finally:
        node.destroy_node()
    with pytest.raises(ValueError, match="task"):
        ControllerNode(context=ros_context,
                       parameter_overrides=[Parameter("task", value="juggling")])
    node = ControllerNode(context=ros_context, parameter_overrides=[
        Parameter("task", value="visual_servo")])
    try:
        assert node.tolerance == 2.0 and node.task.k == 2
    finally:
        node.destroy_node()


def test_condition_thresholds_come_from_the_task_unless_set(ros_context):
    def thresholds(node):
        return node.control_config.cond_slowdown, node.control_config.cond_halt

    node = ControllerNode(context=ros_context)              # 0 = by task
    try:
        assert thresholds(node) == (17.0, 30.0)
        assert node.get_parameter("cond_slowdown").value == 0.0
    finally:
        node.destroy_node()
    node = ControllerNode(context=ros_context, parameter_overrides=[
        Parameter("task", value="multi_point")])
    try:
        assert thresholds(node) == (100.0, 300.0)

        def set_(name, value):
            return node.set_parameters([Parameter(name, value=value)])[0]

        assert set_("cond_halt", 400.0).successful and thresholds(node) == (100.0, 400.0)
        assert set_("cond_slowdown", 17.0).successful and thresholds(node) == (17.0, 400.0)
        assert set_("cond_halt", 0.0).successful and thresholds(node) == (17.0, 300.0)
        result = set_("cond_slowdown", 350.0)               # above the task's halt value
        assert not result.successful
        assert "350" in result.reason and "300" in result.reason and "task" in result.reason
        assert set_("cond_slowdown", 0.0).successful and thresholds(node) == (100.0, 300.0)
    finally:
        node.destroy_node()
    node = ControllerNode(context=ros_context, parameter_overrides=[
        Parameter("task", value="multi_point"), Parameter("cond_slowdown", value=17.0),
        Parameter("cond_halt", value=30.0)])
    try:
        assert thresholds(node) == (17.0, 30.0)               # explicit values win
    finally:
        node.destroy_node()


def test_multi_point_servo_uses_the_twist_condition_measure(ros_context):
    """At Q the raw 12x7 condition number is above 30 (the old check halted there); the
    node reports and checks the task's measure, that of the tool's twist Jacobian."""
    h = Harness(ros_context, overrides=[Parameter("task", value="multi_point")])
    try:
        jac = h.task.jacobian(h.task.select(Q))
        raw = float(condition_number(jac, rank=6))
        twist = float(condition_number(jac, rank=6, transform=h.task.condition_transform))
        assert twist < 17.0 and raw > 30.0
        target = h.x + 0.02
        assert h.set_target(target).success
        _, status = h.wait_status(_servoing)
        expected, info = h.expected_command(target)
        assert status.condition_number == pytest.approx(twist)
        assert info.condition == pytest.approx(twist) and not info.halted
        np.testing.assert_allclose(np.asarray(status.command), expected, rtol=0, atol=1e-12)
        assert np.any(expected != 0) and status.reason == ""
    finally:
        h.close()


# ---------------------------------------------------------------- issue 12

def test_a_dead_estimator_is_unavailable_within_a_second_not_a_timeout_for_20_s(harness):
    h = harness
    assert h.set_target(h.x + np.array([0.05, -0.03, 0.04])).success
    h.wait_status(_servoing)
    t0 = time.monotonic()
    h.estimator.mode = "slow"            # never answers within estimator_timeout
    t, status = h.wait_status(lambda s: s.reason.startswith("estimator unavailable"), since=t0)
    # fault_latch_after (1 s) and a cycle or two, not DDS's 20 s lease.
    assert t - t0 < 1.3, f"unavailable after {t - t0:.2f} s"
    assert status.reason.startswith("estimator unavailable: no answer for 1.")
    _, status = h.wait_status(lambda s: s.latched, since=t0)
    assert status.reason.startswith("estimator unavailable: no answer for 1.")
    assert status.state == ServoStatus.HALTED
    # Back, it answers: the halt holds (latched) until ~/resume.
    h.estimator.mode = "true"
    _, status = h.wait_status(lambda s: "cause cleared" in s.reason, since=time.monotonic())
    assert status.reason.startswith("cause cleared (estimator unavailable: no answer for 1.")
    assert status.reason.endswith(" [latched: set a target or call ~/resume]")
    np.testing.assert_array_equal(status.command, np.zeros(7))
    assert h.call(h.resume_client, Trigger.Request()).success
    _, status = h.wait_status(_servoing, since=time.monotonic())
    assert not status.latched and status.reason == ""


def test_short_faults_resume_by_themselves_long_ones_latch(harness):
    h = harness
    assert h.set_target(h.x + np.array([0.05, 0.0, 0.0])).success
    h.wait_status(_servoing)
    t0 = time.monotonic()
    h.publishing = False                 # stale states for ~0.5 s: transient
    h.wait_status(lambda s: "stale" in s.reason, since=t0)
    h.publishing = True
    _, status = h.wait_status(_servoing, since=time.monotonic())
    assert not status.latched
    t0 = time.monotonic()
    h.publishing = False                 # for over fault_latch_after: latched
    t, status = h.wait_status(lambda s: s.latched, since=t0)
    assert 1.0 <= t - t0 < 1.0 + 0.25 + 0.3
    assert status.reason.startswith("joint states stale")
    h.publishing = True
    _, status = h.wait_status(lambda s: "cause cleared" in s.reason, since=time.monotonic())
    assert status.latched and status.state == ServoStatus.HALTED


def test_targets_outside_the_envelope_are_refused(ros_context):
    h = Harness(ros_context, overrides=[Parameter("envelope", value="robot")])
    try:
        below = h.set_target([0.3, 0.0, -10.0])
        assert not below.success
        assert below.message == ("target z = -10.000 m below the safety box (z >= -0.8 m): "
                                 "outside the safety envelope")
        table = h.set_target([0.5, 0.0, 0.02])
        assert not table.success and "0.030 m into the table plane" in table.message
        # The target topic ignores it too: the controller stays idle.
        msg = TaskState(task="single_point", position=[0.3, 0.0, -10.0], valid=True)
        h.target_pub.publish(msg)
        _, status = h.wait_status(lambda s: True, since=time.monotonic() + 0.2)
        assert status.state == ServoStatus.IDLE and list(status.target) == []
        assert h.set_target([0.5, 0.0, 0.3]).success
    finally:
        h.close()
    # The default (box only, the sim): a target below the table but inside the box is fine.
    h = Harness(ros_context)
    try:
        assert h.set_target([0.5, 0.0, 0.02]).success
        assert not h.set_target([0.3, 0.0, -10.0]).success
    finally:
        h.close()


def test_resending_the_same_target_clears_a_latched_halt_and_restarts(harness):
    h = harness
    target = h.x + np.array([0.05, 0.0, 0.0])
    assert h.set_target(target).success
    h.wait_status(_servoing)
    h.estimator.mode = "fail"
    h.wait_status(lambda s: s.latched, since=time.monotonic())
    h.estimator.mode = "true"
    h.wait_status(lambda s: s.latched and "cause cleared" in s.reason, since=time.monotonic())
    t0 = time.monotonic()
    assert h.set_target(target).success          # the same target again
    _, status = h.wait_status(_servoing, since=t0)
    assert not status.latched and status.step <= 2
    assert list(status.target) == pytest.approx(list(target))


def test_resume_clears_a_latch_and_says_what_it_cleared(harness):
    h = harness
    response = h.call(h.resume_client, Trigger.Request())
    assert response.success and response.message == "nothing latched; servoing as before"
    assert h.set_target(h.x + np.array([0.05, 0.0, 0.0])).success
    h.wait_status(_servoing)
    h.estimator.mode = "fail"
    h.wait_status(lambda s: s.latched, since=time.monotonic())
    h.estimator.mode = "true"
    response = h.call(h.resume_client, Trigger.Request())
    assert response.message == "resumed after: estimator failed: model not loaded"
    h.wait_status(_servoing, since=time.monotonic())


def test_a_new_target_is_not_latched_by_a_cycle_of_the_old_one(harness):
    """A cycle waits up to estimator_timeout (0.8 of the period) for the estimator: a
    target set meanwhile must not inherit that cycle's fault or the old fault's clock.
    With a silent estimator, each new target halts unlatched for fault_latch_after (1 s)
    before it latches again; before the fix it latched at once (the in-flight cycle of
    the old target latched anew, its fault clock never restarted). Repeated, since a set
    lands inside a cycle's wait 4 times in 5."""
    h = harness
    assert h.set_target(h.x + np.array([0.05, 0.0, 0.0])).success
    h.wait_status(_servoing)
    h.estimator.mode = "slow"
    h.wait_status(lambda s: s.latched, since=time.monotonic())
    for i in range(5):
        target = h.x + np.array([0.03 + 0.01 * i, 0.0, 0.0])
        t0 = time.monotonic()
        assert h.set_target(target).success
        time.sleep(0.6)
        mine = [s for t, s in list(h.statuses) if t >= t0 and t < t0 + 0.6
                and list(s.target) == pytest.approx(list(target))]
        assert mine, "no status for the new target"
        assert not any(s.latched for s in mine), [s.reason for s in mine]
        assert all(s.state == ServoStatus.HALTED for s in mine)
    # It does latch again once the fault lasts fault_latch_after.
    h.wait_status(lambda s: s.latched, since=time.monotonic())
    assert h.controller.cycle.dropped_cycles >= 1


def test_feed_forward_tracks_a_circling_target_closer_than_feedback_alone(ros_context):
    """A target streamed at 20 Hz on a 5 cm circle at 5 cm/s (1 rad/s) with its velocity;
    the stand-in arm integrates the commands. Feedback alone lags v / sqrt(gain^2 + w^2)
    = 35 mm behind; the feed-forward (target_velocity message) follows within a few mm."""
    from uvs_core.trajectories import TargetPath

    h = Harness(ros_context, integrate=True)
    try:
        x0 = h.x.copy()
        path = TargetPath("circle", x0, (0, 0, 1), size=0.05, speed=0.05)
        run = {"t0": None, "errors": []}

        def tick(now):
            if run["t0"] is None:
                return
            t = now - run["t0"]
            p, dp = path.sample([t])
            run["errors"].append((t, float(np.linalg.norm(p[0] - h.x))))
            msg = TaskState(task="single_point", position=p[0].tolist(),
                            velocity=(dp[0].tolist() if run["ff"] else []), valid=True)
            msg.header.stamp = h.world.get_clock().now().to_msg()
            h.target_pub.publish(msg)

        h.on_tick = tick
        rms = {}
        for ff in (True, False):
            h.set_target(x0)                           # start on the path, at rest
            h.wait_status(lambda s: s.state == ServoStatus.CONVERGED, since=time.monotonic())
            run.update(ff=ff, errors=[], t0=time.monotonic())
            deadline = time.monotonic() + 6.0 + WAIT
            while time.monotonic() < deadline and (not run["errors"]
                                                   or run["errors"][-1][0] < 6.0):
                time.sleep(0.05)
            run["t0"] = None
            late = np.array([e for t, e in run["errors"] if 2.0 <= t <= 6.0])
            assert late.size > 100               # 50 Hz ticks over 4 s
            rms[ff] = float(np.sqrt(np.mean(late ** 2)))
        lag = 0.05 / math.sqrt(2.0)
        assert rms[False] == pytest.approx(lag, rel=0.2)
        assert rms[True] < 0.01 and rms[True] < rms[False] / 4
    finally:
        h.close()


# ------------------------------------------------------------------ uncertainty
def test_estimator_uncertainty_scales_the_gain_then_halts_uncertain(ros_context):
    """uncertainty_slowdown 0.1, uncertainty_halt 0.3: the command is control_step's with
    the gain times 1 (u 0.05), 0.5 (u 0.2), 0.25 (u 0.25), then zero and HALTED
    'uncertain' (u 0.3, 0.8); back to full gain when u falls. Status carries u and the
    factor."""
    h = Harness(ros_context, overrides=[Parameter("uncertainty_slowdown", value=0.1),
                                        Parameter("uncertainty_halt", value=0.3)])
    try:
        target = h.x + np.array([0.05, -0.03, 0.04])
        full, _ = h.expected_command(target)
        assert np.abs(full).max() < 0.5   # below every speed cap: the law is linear in gain
        h.estimator.uncertainty = 0.05
        assert h.set_target(target).success
        for u, scale in ((0.05, 1.0), (0.2, 0.5), (0.25, 0.25), (0.05, 1.0)):
            h.estimator.uncertainty = u
            since = time.monotonic()
            _, status = h.wait_status(
                lambda s, u=u: s.state == ServoStatus.SERVOING and s.uncertainty == u,
                since=since)
            expected, _ = h.expected_command(target, gain_scale=scale)
            np.testing.assert_allclose(status.command, expected, rtol=0, atol=1e-12)
            np.testing.assert_allclose(status.command, scale * full, rtol=1e-9, atol=1e-12)
            assert status.gain_scale == pytest.approx(scale, rel=1e-12)
            assert status.reason == ""
        for u in (0.3, 0.8):
            h.estimator.uncertainty = u
            _, status = h.wait_status(lambda s, u=u: s.uncertainty == u,
                                      since=time.monotonic())
            assert status.state == ServoStatus.HALTED
            assert status.reason.startswith("uncertain")
            assert f"{u:.3g} >= uncertainty_halt 0.3" in status.reason
            assert not status.latched and status.gain_scale == 0.0
            np.testing.assert_array_equal(status.command, np.zeros(7))
            _, command = h.wait_command(lambda c: True, since=time.monotonic())
            np.testing.assert_array_equal(command, np.zeros(7))
        # Not a latching fault: it resumes once the estimator is sure again.
        h.estimator.uncertainty = 0.0
        _, status = h.wait_status(_servoing, since=time.monotonic())
        np.testing.assert_allclose(status.command, full, rtol=0, atol=1e-12)
    finally:
        h.close()


def test_unknown_uncertainty_leaves_the_law_unchanged(ros_context):
    """u = NaN (an estimator without one) with tight thresholds: the command is exactly
    control_step's, full gain, never halted; and with the thresholds off (the default) a
    huge u changes nothing either."""
    h = Harness(ros_context, overrides=[Parameter("uncertainty_slowdown", value=0.0),
                                        Parameter("uncertainty_halt", value=1e-9)])
    try:
        assert h.controller.get_parameter("uncertainty_halt").value == 1e-9
        target = h.x + np.array([0.05, -0.03, 0.04])
        assert h.set_target(target).success
        _, status = h.wait_status(_servoing)
        expected, _ = h.expected_command(target)
        np.testing.assert_allclose(status.command, expected, rtol=0, atol=1e-12)
        assert math.isnan(status.uncertainty) and status.gain_scale == 1.0
        # Off (.inf, the defaults): u reported, the law untouched.
        assert all(r.successful for r in h.controller.set_parameters([
            Parameter("uncertainty_halt", value=math.inf),
            Parameter("uncertainty_slowdown", value=math.inf)]))
        h.estimator.uncertainty = 50.0
        _, status = h.wait_status(lambda s: s.uncertainty == 50.0, since=time.monotonic())
        assert status.state == ServoStatus.SERVOING and status.gain_scale == 1.0
        np.testing.assert_allclose(status.command, expected, rtol=0, atol=1e-12)
    finally:
        h.close()


def test_uncertainty_thresholds_are_validated(ros_context):
    node = ControllerNode(context=ros_context)
    try:
        assert math.isinf(node.get_parameter("uncertainty_slowdown").value)
        assert math.isinf(node.get_parameter("uncertainty_halt").value)
        for name in ("uncertainty_slowdown", "uncertainty_halt"):
            for bad in (-0.1, math.nan):
                result = node.set_parameters([Parameter(name, value=bad)])[0]
                assert not result.successful and name in result.reason
        # halt alone is accepted (no ramp), then a slowdown below it
        assert node.set_parameters([Parameter("uncertainty_halt", value=0.3)])[0].successful
        assert node.set_parameters([Parameter("uncertainty_slowdown", value=0.1)])[0].successful
    finally:
        node.destroy_node()
