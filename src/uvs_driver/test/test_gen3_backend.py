"""Gen3Backend against the strict Kortex double (test/kortex_double; no arm is reachable here).

The double answers, refuses and fails as the documented Kortex API does and logs every
request with its time, timeout and outcome, so these tests check the backend's side of
the protocol and what it does when things go wrong: timeouts on every RPC, errors as
BackendError, unwrapped continuous joints, Stop from its own watchdog thread, sessions
closed even when a socket is dead, fault clearing, the tool configuration, Home.
Tests named after a numbered defect of issue #12 fail on the backend before the fix.
"""

import math
import sys
import threading
import time

import numpy as np
import pytest

# Only what the backend had before issue #12 at the top, so this module also runs against
# it; newer functions are imported in their tests.
from uvs_driver.backends import BackendError, KortexMissingError, wrap_to_pi
from uvs_driver.gen3_backend import Gen3Backend

JOINTS = tuple(f"joint_{i}" for i in range(1, 8))


def _within(seconds, fn):
    """Run fn() in a thread; fail if it is still blocked after ``seconds``. Returns
    {"result" or "error", "elapsed" s}."""
    box = {}

    def run():
        started = time.monotonic()
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        box["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return box


def test_connects_with_sessions_single_level_servoing_and_checks_the_arm(arm, gen3):
    arm.credentials["operator"] = "s3cret"
    backend = gen3(username="operator", password="s3cret")
    names = arm.names()
    assert names[:4] == ["TCPTransport.connect", "Session.CreateSession",
                         "UDPTransport.connect", "Session.CreateSession"]
    connects = arm.entries("TCPTransport.connect") + arm.entries("UDPTransport.connect")
    assert [e.payload for e in connects] == [{"ip": "10.0.0.7", "port": 10000},
                                             {"ip": "10.0.0.7", "port": 10001}]
    info = arm.entries("Session.CreateSession")[0].payload
    assert (info.username, info.password, info.session_inactivity_timeout,
            info.connection_inactivity_timeout) == ("operator", "s3cret", 30000, 1500)
    assert arm.entries("Session.CreateSession")[1].transport == "UDP"
    for name in ("Base.SetServoingMode", "Base.GetActuatorCount",
                 "ControlConfig.GetToolConfiguration"):
        assert arm.entries(name, "ok"), name
    assert arm.entries("Base.SetServoingMode")[0].payload.servoing_mode == 2   # single level
    assert all(e.transport == "UDP" for e in arm.entries("BaseCyclic.RefreshFeedback"))
    assert backend.joint_names == JOINTS and backend.has_faults


def test_feedback_over_tcp_when_udp_port_is_zero(arm, gen3):
    backend = gen3(udp_port=0)
    backend.read()
    assert "UDPTransport.connect" not in arm.names()
    assert all(e.transport == "TCP" for e in arm.entries("BaseCyclic.RefreshFeedback"))
    backend.close()
    assert arm.names()[-2:] == ["Session.CloseSession", "TCPTransport.disconnect"]


# ---------------------------------------------------------------- defect 1: timeouts, errors

def test_defect1_every_rpc_carries_a_timeout_of_about_one_tick(arm, gen3):
    backend = gen3(tick_period=0.05)
    start = len(arm.log)
    backend.command(np.full(7, 0.1))
    backend.read()
    backend.command(np.zeros(7))
    backend.stop()
    loop = [e for e in arm.log[start:] if e.name.startswith(("Base", "BaseCyclic"))]
    assert {e.name for e in loop} == {"Base.SendJointSpeedsCommand", "BaseCyclic.RefreshFeedback",
                                      "Base.Stop"}
    assert {e.timeout_ms for e in loop} == {50}
    # Connecting (not in the loop) waits longer, but never Kortex's default 10 s.
    setup = [e for e in arm.log[:start] if e.timeout_ms is not None
             and e.name != "Session.KeepAlive"]
    assert setup and max(e.timeout_ms for e in setup) <= 2000


def test_defect1_a_hung_feedback_rpc_is_a_backend_error_within_two_timeouts(arm, gen3):
    backend = gen3(tick_period=0.05)
    arm.hang("BaseCyclic.RefreshFeedback")
    box = _within(1.0, backend.read)
    assert isinstance(box["error"], BackendError), box
    assert box["error"].kind == "timeout" and "no answer within 50 ms (2 tries)" in str(
        box["error"])
    assert box["elapsed"] < 0.3           # 2 x 50 ms, plus scheduling


def test_defect1_one_dropped_feedback_datagram_is_retried_within_the_tick(arm, gen3):
    backend = gen3(tick_period=0.05)
    arm.drop("BaseCyclic.RefreshFeedback", count=1)
    box = _within(1.0, backend.read)
    assert "result" in box, box
    assert 0.045 < box["elapsed"] < 0.3   # one 50 ms timeout, then the answer
    assert [e.outcome for e in arm.entries("BaseCyclic.RefreshFeedback")][-2:] == ["dropped",
                                                                                    "ok"]


def test_a_refusal_is_a_backend_error_naming_the_sub_error(arm, gen3):
    backend = gen3()
    arm.inject_fault()
    with pytest.raises(BackendError, match="SendJointSpeeds.* refused: ROBOT_IN_FAULT") as info:
        backend.command(np.full(7, 0.1))
    assert info.value.kind == "refused" and info.value.sub_code == 22


def test_defect1_a_broken_socket_is_a_backend_error(arm, gen3):
    backend = gen3()
    arm.break_connection("TCP")
    box = _within(1.0, backend.clear_faults)
    assert isinstance(box["error"], BackendError), box
    assert "connection broken: [Errno 32] Broken pipe" in str(box["error"])


def test_defect1_stop_goes_over_a_new_connection_when_the_socket_is_broken(arm, gen3):
    backend = gen3()
    backend.command(np.full(7, 0.2))
    arm.break_connection("TCP")
    broken = arm.clock()
    box = _within(1.0, lambda: backend.command(np.full(7, 0.3)))
    assert isinstance(box["error"], BackendError) and box["error"].kind == "connection"
    box = _within(1.0, backend.stop)
    assert "error" not in box, box
    reached = arm.stop_reached(broken)
    assert reached is not None and reached - broken < 0.2
    # At rest once it has decelerated (the double brakes as the arm does, ~0.1 s).
    deadline = time.monotonic() + 0.5
    while arm.moving() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not arm.moving()
    # The arm saw a second TCP session come, Stop, and go.
    assert arm.names().count("TCPTransport.connect") == 2
    assert backend.read_state().fault.startswith("connection lost")


def test_a_stop_over_a_new_connection_that_hangs_does_not_block_the_caller(arm, gen3):
    backend = gen3()
    backend.command(np.full(7, 0.2))
    arm.break_connection("TCP")
    arm.connect_delay = 2.0               # the arm does not answer the new connection
    box = _within(1.5, backend.stop)
    assert isinstance(box["error"], BackendError), box
    assert "not done within 0.5 s (still trying)" in str(box["error"])
    assert box["elapsed"] < 0.8
    arm.connect_delay = 0.0
    time.sleep(2.0)                       # the background attempt got through after all
    assert arm.entries("Base.Stop", "ok")


# ---------------------------------------------------------------- reading the arm

def test_speeds_go_out_in_deg_per_s_and_velocity_is_the_measured_one(arm, gen3):
    backend = gen3()
    qdot = np.array([0.5, -0.25, 1.0, 0.0, -1.2, 0.1, math.pi / 4])
    backend.command(qdot)
    sent = arm.entries("Base.SendJointSpeedsCommand")[-1].payload
    assert [s.joint_identifier for s in sent.joint_speeds] == list(range(7))
    assert [s.duration for s in sent.joint_speeds] == [0] * 7
    np.testing.assert_allclose([s.value for s in sent.joint_speeds], np.degrees(qdot),
                               rtol=1e-6)
    # The arm ramps up (300 deg/s^2): right after the command it is still slower.
    early = backend.read_state()
    fast = np.abs(qdot) > 0.2
    assert np.all(np.abs(early.qdot[fast]) < np.abs(qdot[fast]) - 1e-3)
    np.testing.assert_allclose(early.qdot, np.radians(arm.v_deg), rtol=1e-6)
    for _ in range(6):                     # a tick every 50 ms, or the watchdog stops it
        time.sleep(0.05)
        backend.command(qdot)
    late = backend.read_state()
    np.testing.assert_allclose(late.qdot, qdot, rtol=1e-5)
    np.testing.assert_allclose(late.x, arm.tool_position(), atol=1e-4)
    assert late.fault is None


def test_defect5_continuous_joints_are_unwrapped_at_the_wrap_point(arm, gen3):
    """Kinova's Home puts joint 3 at 180 deg: encoder jitter must not flip q3 by 2 pi."""
    arm.park(2, 180.0, jitter=0.02)
    arm.park(4, 0.0, jitter=0.02)          # and at 0 / 360 deg of the feedback
    backend = gen3()
    q = np.array([backend.read()[0] for _ in range(20)])
    assert np.ptp(q[:, 2]) < 0.001 and abs(abs(q[0, 2]) - math.pi) < 0.001
    assert np.ptp(q[:, 4]) < 0.001
    # A continuous joint turning through the wrap point keeps counting, both ways.
    arm.noise_deg[:] = 0.0
    for speed in (1.2, -1.2):
        backend.command(np.array([0.0, 0.0, speed, 0.0, 0.0, 0.0, 0.0]))
        q3 = []
        for _ in range(10):
            time.sleep(0.05)
            backend.command(np.array([0.0, 0.0, speed, 0.0, 0.0, 0.0, 0.0]))
            q3.append(backend.read()[0][2])
        # No 2 pi jump between readings, and the joint got past the wrap point.
        assert np.all(np.abs(np.diff(q3)) < 0.2), q3
        assert (q3[-1] - q3[0]) * np.sign(speed) > 0.2, q3
        backend.command(np.zeros(7))
        time.sleep(0.3)                     # braking (300 deg/s^2)


@pytest.mark.parametrize(
    ("raw", "previous", "expected"),
    [((math.pi - 1e-3, 0.1), None, (math.pi - 1e-3, 0.1)),
     ((-math.pi + 1e-3, 0.1), (math.pi - 1e-3, 0.1), (math.pi + 1e-3, 0.1)),
     ((3 * math.pi - 1e-3, 2.0), (-math.pi + 2e-3, 2.0), (-math.pi - 1e-3, 2.0)),
     ((0.2, -3.0), (6.2, 2.0), (2 * math.pi + 0.2, -3.0))],
)
def test_unwrap_to_keeps_continuous_joints_next_to_the_previous_reading(raw, previous,
                                                                         expected):
    from uvs_driver.backends import unwrap_to

    continuous = np.array([True, False])
    q = unwrap_to(np.array(raw), None if previous is None else np.array(previous), continuous)
    np.testing.assert_allclose(q, expected, atol=1e-12)


@pytest.mark.parametrize(
    ("deg", "rad"),
    [(0.0, 0.0), (90.0, math.pi / 2), (180.0, math.pi), (270.0, -math.pi / 2),
     (359.0, -math.radians(1.0)), (-180.0, math.pi), (540.0, math.pi), (-90.0, -math.pi / 2)],
)
def test_wrap_to_pi_lands_in_minus_pi_exclusive_to_pi_inclusive(deg, rad):
    assert float(wrap_to_pi(math.radians(deg))) == pytest.approx(rad, abs=1e-12)


def test_defect3_the_guard_holds_joints_about_to_pass_a_limit():
    from uvs_core.safety import joint_lookahead_guard

    def guard_position_limits(q, qdot, lower, upper, horizon, margin=0.0):
        guarded, blocked = joint_lookahead_guard(q, qdot, horizon, lower, upper, margin)
        return guarded, np.isin(np.arange(len(q)), blocked)

    lower = np.array([-2.0, -np.inf, -1.0])
    upper = np.array([2.0, np.inf, 1.0])
    q = np.array([1.6, 3.0, -0.95])
    qdot = np.array([1.0, 5.0, 0.2])
    guarded, blocked = guard_position_limits(q, qdot, lower, upper, horizon=0.5)
    # joint 0 would reach 2.1 > 2.0 within 0.5 s; the continuous joint never stops;
    # joint 2 moves away from its lower limit.
    np.testing.assert_array_equal(guarded, [0.0, 5.0, 0.2])
    np.testing.assert_array_equal(blocked, [True, False, False])
    guarded, _ = guard_position_limits(q, -qdot, lower, upper, horizon=0.5)
    np.testing.assert_array_equal(guarded, [-1.0, -5.0, 0.0])
    guarded, _ = guard_position_limits(np.array([1.5, 0.0, 0.0]), np.array([0.9, 0.0, 0.0]),
                                       lower, upper, horizon=0.5, margin=0.1)
    np.testing.assert_array_equal(guarded, [0.0, 0.0, 0.0])


# ---------------------------------------------------------------- motion and its end

def test_no_speeds_while_idle_one_stop_when_motion_ends(arm, gen3):
    """Kinova's examples send speeds, then one Stop; zeros every tick while idle would
    override the Web App and the joystick."""
    backend = gen3()
    for _ in range(5):
        backend.command(np.zeros(7))
    assert arm.entries("Base.SendJointSpeedsCommand") == [] and arm.entries("Base.Stop") == []
    backend.command(np.full(7, 0.1))
    for _ in range(5):
        backend.command(np.zeros(7))
    assert len(arm.entries("Base.SendJointSpeedsCommand")) == 1
    assert len(arm.entries("Base.Stop")) == 1
    assert arm.cmd_deg.tolist() == [0.0] * 7


def test_defect8_the_watchdog_thread_stops_the_arm_when_commands_stop(arm, gen3):
    """Speeds have no end time: when the caller freezes, the backend's own thread stops
    the arm within 3 ticks."""
    backend = gen3(tick_period=0.05)
    for _ in range(3):
        backend.command(np.full(7, 0.3))
        time.sleep(0.05)
    last = arm.entries("Base.SendJointSpeedsCommand")[-1].t
    before = arm.positions()
    time.sleep(0.6)
    reached = arm.stop_reached(last)
    assert reached is not None, "no Stop reached the arm"
    latency = reached - last
    print(f"frozen caller -> Stop reached the arm: {1000 * latency:.0f} ms after the last "
          "command")
    assert 0.14 <= latency < 0.25          # 3 ticks, plus scheduling
    assert backend.watchdog_stops == 1
    moved = np.abs(arm.positions() - before).max()
    assert moved < 17.2 * (0.2 + 0.1)       # deg: at most ~0.2 s at 17.2 deg/s, plus braking
    # The watchdog does not fire while idle, nor once stopped.
    time.sleep(0.3)
    assert len(arm.entries("Base.Stop")) == 1


def test_defect4_clear_faults_waits_for_the_arm_and_restores_single_level_servoing(arm, gen3):
    backend = gen3()
    backend.command(np.full(7, 0.1))
    arm.inject_fault()
    reading = backend.read_state()
    assert reading.fault.startswith("ARMSTATE_IN_FAULT")
    arm.clear_delay = 0.3
    arm.mode_after_clear = 3          # the fault left the arm in low-level servoing
    started = time.monotonic()
    backend.clear_faults()
    assert time.monotonic() - started >= 0.28
    assert arm.servoing_mode == 2 and backend.read_state().fault is None
    backend.command(np.full(7, 0.1))   # accepted again
    assert arm.entries("Base.SendJointSpeedsCommand")[-1].outcome == "ok"


def test_clear_faults_says_when_the_fault_persists(arm, gen3):
    backend = gen3(clear_timeout=0.2)
    arm.inject_fault()
    arm.clear_delay = 5.0
    with pytest.raises(BackendError, match="still ARMSTATE_IN_FAULT 0.2 s after ClearFaults"):
        backend.clear_faults()


def test_stop_on_a_still_arm_that_answers_robot_not_moving_is_no_error(arm, gen3):
    backend = gen3()
    arm.stop_when_idle_raises = True
    backend.stop()
    assert arm.entries("Base.Stop")[-1].outcome == "refused:ROBOT_NOT_MOVING"


# ---------------------------------------------------------------- closing

def test_close_stops_then_closes_sessions_then_disconnects(arm, gen3):
    backend = gen3()
    backend.command(np.full(7, 0.1))
    backend.close()
    assert arm.names()[-5:] == [
        "Base.Stop",
        "Session.CloseSession", "UDPTransport.disconnect",
        "Session.CloseSession", "TCPTransport.disconnect",
    ]
    assert [e.timeout_ms for e in arm.entries("Session.CloseSession")] == [1000, 1000]
    assert not arm.moving()
    backend.close()   # idempotent
    assert arm.names().count("Base.Stop") == 1


def test_defect7_a_failing_disconnect_does_not_leave_the_tcp_session_open(arm, gen3):
    backend = gen3()
    arm.fail_disconnect("UDP")
    with pytest.raises(BackendError, match="UDPTransport disconnect"):
        backend.close()
    assert arm.names()[-3:] == ["UDPTransport.disconnect", "Session.CloseSession",
                                "TCPTransport.disconnect"]
    assert arm.entries("TCPTransport.disconnect")[-1].outcome == "ok"
    assert all(c.session is None for c in arm.connections)


def test_stop_failing_at_close_still_closes_everything(arm, gen3):
    backend = gen3()
    arm.refuse("Base.Stop", "METHOD_FAILED")
    with pytest.raises(BackendError, match="Stop refused: METHOD_FAILED"):
        backend.close()
    assert arm.names()[-4:] == ["Session.CloseSession", "UDPTransport.disconnect",
                                "Session.CloseSession", "TCPTransport.disconnect"]


def test_a_failure_while_connecting_closes_what_was_opened(arm, gen3):
    arm.refuse("Base.SetServoingMode", "METHOD_FAILED")
    with pytest.raises(BackendError, match="SetServoingMode refused: METHOD_FAILED"):
        gen3()
    assert arm.names()[-4:] == ["Session.CloseSession", "UDPTransport.disconnect",
                                "Session.CloseSession", "TCPTransport.disconnect"]
    arm.clear_injections()
    arm.log.clear()
    with pytest.raises(BackendError, match="INVALID_PASSWORD"):
        gen3(password="wrong")
    assert arm.names() == ["TCPTransport.connect", "Session.CreateSession",
                           "TCPTransport.disconnect"]
    arm.unreachable()
    with pytest.raises(BackendError, match="connection failed.*No route to host"):
        gen3()


def test_an_arm_with_another_actuator_count_is_refused(kortex, gen3):
    arm = kortex.reset(dof=6)
    with pytest.raises(BackendError, match="has 6 actuators"):
        gen3()
    assert arm.names()[-1] == "TCPTransport.disconnect"


def test_a_tool_frame_other_than_the_models_tool_point_is_refused(arm, gen3):
    arm.tool["z"] = 0.0                    # no gripper configured on the arm
    with pytest.raises(BackendError) as info:
        gen3(tool_offset=0.12)
    message = str(info.value)
    assert "tool frame is at x=0.0000 y=0.0000 z=0.0000 m" in message
    assert "tool_offset=0.1200 m" in message and info.value.kind == "config"
    assert gen3(tool_offset=0.0).joint_names == JOINTS
    assert gen3(tool_offset=None).joint_names == JOINTS    # check skipped


# ---------------------------------------------------------------- home

def test_home_reaches_a_given_pose_or_the_stored_home_action(arm, gen3):
    backend = gen3()
    target = np.array([0.1, 0.5, -0.2, -0.5, 0.0, 0.5, 0.0])
    backend.home(timeout=5.0, q=target)
    action = arm.entries("Base.ExecuteAction")[-1].payload
    angles = [a.value for a in action.reach_joint_angles.joint_angles.joint_angles]
    np.testing.assert_allclose(angles, np.mod(np.degrees(target), 360.0), atol=1e-4)
    np.testing.assert_allclose(backend.read()[0], target, atol=1e-5)
    assert arm.entries("Base.Unsubscribe", "ok")

    backend.home(timeout=5.0)
    assert arm.entries("Base.ExecuteActionFromReference")[-1].payload.identifier == 1001
    np.testing.assert_allclose(np.mod(np.degrees(backend.read()[0]), 360.0),
                               [0, 15, 180, 230, 0, 55, 90], atol=1e-3)


def test_home_reports_an_abort_and_a_preprocess_abort_with_the_reason(arm, gen3):
    backend = gen3()
    arm.action_outcome = "abort"
    arm.abort_details = "CONTROL_WRONG_STARTING_POINT"
    with pytest.raises(BackendError, match="ACTION_ABORT: CONTROL_WRONG_STARTING_POINT"):
        backend.home(timeout=5.0)
    arm.action_outcome = "preprocess_abort"
    box = _within(2.0, lambda: backend.home(timeout=1.5))
    assert isinstance(box["error"], BackendError)
    assert "ACTION_PREPROCESS_ABORT: CONTROL_WRONG_STARTING_POINT" in str(box["error"])
    assert box["elapsed"] < 0.5


def test_home_to_a_pose_beyond_the_firmware_limits_is_refused_before_moving(arm, gen3):
    backend = gen3()
    arm.action_outcome = "end"
    with pytest.raises(BackendError, match="ACTION_PREPROCESS_ABORT: CONTROL_JOINT_POSITION"):
        backend.home(timeout=1.0, q=np.array([0.0, 2.3, 0.0, 0.0, 0.0, 0.0, 0.0]))


def test_home_that_never_ends_times_out_and_stops(arm, gen3):
    backend = gen3()
    arm.action_outcome = "hang"
    started = time.monotonic()
    with pytest.raises(BackendError, match="did not finish within 0.2 s"):
        backend.home(timeout=0.2, q=np.zeros(7))
    assert time.monotonic() - started < 1.0
    assert arm.names()[-2:] == ["Base.Unsubscribe", "Base.Stop"]


def test_without_kortex_api_the_error_says_how_to_install_it(monkeypatch):
    for name in [m for m in sys.modules if m == "kortex_api" or m.startswith("kortex_api.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "kortex_api", None)   # import fails
    with pytest.raises(KortexMissingError) as info:
        Gen3Backend(JOINTS)
    message = str(info.value)
    assert "kortex_api-2.6.0.post3-py3-none-any.whl" in message
    assert "pip install --no-deps" in message and "protobuf==3.20.3" in message
    assert "'kortex'" in message and "'proto-kortex'" in message and "unrelated" in message
    assert isinstance(info.value, ImportError)


def test_the_6dof_gen3_description_drives_the_6_actuator_arm(kortex, gen3):
    from uvs_core.robot import load_robot

    robot = load_robot("gen3_6dof")
    arm = kortex.reset(dof=6)
    arm.q_deg[:] = [10.0, 20.0, 100.0, -30.0, 40.0, 50.0]
    backend = Gen3Backend(robot.joint_names, continuous=robot.continuous,
                          tool_offset=robot.tool_offset)
    try:
        q, x = backend.read()
        np.testing.assert_allclose(q, wrap_to_pi(np.radians(arm.q_deg)), atol=1e-5)
        np.testing.assert_allclose(x, robot.position(q), atol=1e-4)   # same DH, same tool
        backend.command(np.full(6, 0.1))
        assert len(arm.entries("Base.SendJointSpeedsCommand", "ok")[-1].payload.joint_speeds) == 6
    finally:
        backend.close()
    assert robot.continuous.tolist() == [True, False, False, True, False, True]
