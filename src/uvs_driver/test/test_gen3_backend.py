"""Gen3Backend against a fake of the documented Kortex API (no arm is reachable here).

The fake (test/fake_kortex/kortex_api) has the real module paths and call
shapes, simulates a 7-actuator arm and logs every call, so these tests check
the backend's side of the protocol: connection and session, servoing mode,
speeds in deg/s, angle wrapping, Stop/CloseSession/disconnect on every exit,
ClearFaults and the Home action. The last tests run the driver node on it.
"""

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from uvs_driver.backends import BackendError, Gen3Backend, KortexMissingError, wrap_to_pi

FAKE = Path(__file__).with_name("fake_kortex")
JOINTS = [f"joint_{i}" for i in range(1, 8)]


def _forget_kortex():
    for name in [m for m in sys.modules if m == "kortex_api" or m.startswith("kortex_api.")]:
        del sys.modules[name]


@pytest.fixture
def arm(monkeypatch):
    """The fake Kortex API on sys.path, with a fresh simulated arm on a manual clock."""
    _forget_kortex()
    monkeypatch.syspath_prepend(str(FAKE))
    from kortex_api import _fake

    arm = _fake.reset()
    now = [100.0]
    arm.clock = lambda: now[0]
    arm.now = now
    yield arm
    _forget_kortex()


def _connect(**kwargs):
    params = dict(ip="10.0.0.7", username="operator", password="s3cret",
                  session_inactivity_timeout_ms=30000, connection_inactivity_timeout_ms=1500)
    params.update(kwargs)
    return Gen3Backend(JOINTS, **params)


def test_connects_with_a_session_and_single_level_servoing(arm):
    backend = _connect()
    names = arm.names()
    assert names[:6] == [
        "RouterClient", "TCPTransport.connect", "SessionManager.CreateSession",
        "RouterClient", "UDPTransport.connect", "SessionManager.CreateSession",
    ]
    calls = dict(arm.calls[:3])
    assert calls["RouterClient"]["basic_error_callback"] is True
    assert calls["TCPTransport.connect"] == {"ip": "10.0.0.7", "port": 10000}
    assert calls["SessionManager.CreateSession"] == {
        "transport": "TCPTransport", "username": "operator", "password": "s3cret",
        "session_inactivity_timeout": 30000, "connection_inactivity_timeout": 1500}
    assert arm.calls[4][1] == {"ip": "10.0.0.7", "port": 10001}
    assert ("BaseClient", {"transport": "TCPTransport"}) in arm.calls
    assert ("BaseCyclicClient", {"transport": "UDPTransport"}) in arm.calls
    from kortex_api.autogen.messages import Base_pb2

    assert ("BaseClient.SetServoingMode",
            {"servoing_mode": Base_pb2.SINGLE_LEVEL_SERVOING}) in arm.calls
    assert backend.joint_names == tuple(JOINTS) and backend.has_faults
    backend.close()


def test_feedback_over_tcp_when_udp_port_is_zero(arm):
    backend = _connect(udp_port=0)
    assert "UDPTransport.connect" not in arm.names()
    assert ("BaseCyclicClient", {"transport": "TCPTransport"}) in arm.calls
    backend.close()
    assert arm.names()[-3:] == ["BaseClient.Stop", "SessionManager.CloseSession",
                                "TCPTransport.disconnect"]


def test_speeds_go_out_in_deg_per_s_and_positions_come_back_wrapped(arm):
    backend = _connect()
    qdot = np.array([0.5, -0.25, 1.0, 0.0, -1.2, 0.1, math.pi / 4])
    backend.command(qdot)
    name, payload = arm.calls[-1]
    assert name == "BaseClient.SendJointSpeedsCommand"
    ids, values, durations = zip(*payload["speeds"])
    assert ids == tuple(range(7)) and durations == (0,) * 7
    np.testing.assert_allclose(values, np.degrees(qdot), rtol=1e-12)
    assert values[6] == pytest.approx(45.0)

    backend.step(1.0)      # a real arm moves on its own: no-op
    q0, _ = backend.read()
    arm.now[0] += 2.0      # 2 s of the fake arm's clock
    q1, x = backend.read()
    np.testing.assert_allclose(wrap_to_pi(q1 - q0), wrap_to_pi(2.0 * qdot), atol=1e-9)
    # The fake reports 0..360 deg; the backend gives (-pi, pi].
    assert np.all(q1 > -math.pi) and np.all(q1 <= math.pi)
    np.testing.assert_allclose(q1[4], -2.4, atol=1e-9)      # 360 - 137.5 deg
    np.testing.assert_allclose(x, arm.tool_pose)
    backend.close()


@pytest.mark.parametrize(
    ("deg", "rad"),
    [(0.0, 0.0), (90.0, math.pi / 2), (180.0, math.pi), (270.0, -math.pi / 2),
     (359.0, -math.radians(1.0)), (-180.0, math.pi), (540.0, math.pi), (-90.0, -math.pi / 2)],
)
def test_wrap_to_pi_lands_in_minus_pi_exclusive_to_pi_inclusive(deg, rad):
    assert float(wrap_to_pi(math.radians(deg))) == pytest.approx(rad, abs=1e-12)


def test_close_stops_then_closes_sessions_then_disconnects(arm):
    backend = _connect()
    backend.command(np.full(7, 0.1))
    backend.close()
    assert arm.names()[-5:] == [
        "BaseClient.Stop",
        "SessionManager.CloseSession", "UDPTransport.disconnect",
        "SessionManager.CloseSession", "TCPTransport.disconnect",
    ]
    assert [p["timeout_ms"] for n, p in arm.calls if n == "SessionManager.CloseSession"] == [
        1000, 1000]
    assert arm.speeds == [0.0] * 7
    backend.close()   # idempotent
    assert arm.names().count("BaseClient.Stop") == 1


def test_an_exception_while_in_use_still_stops_and_closes(arm):
    from kortex_api.Exceptions.KServerException import KServerException

    with pytest.raises(RuntimeError, match="user code failed"):
        with _connect() as backend:
            backend.command(np.full(7, 0.2))
            raise RuntimeError("user code failed")
    assert arm.names()[-5:] == [
        "BaseClient.Stop", "SessionManager.CloseSession", "UDPTransport.disconnect",
        "SessionManager.CloseSession", "TCPTransport.disconnect"]

    # Stop itself failing still closes the sessions and disconnects.
    arm.calls.clear()
    backend = _connect()
    arm.fail["BaseClient.Stop"] = KServerException(2, 0, "arm in fault")
    with pytest.raises(BackendError, match="Stop failed"):
        backend.close()
    assert arm.names()[-4:] == ["SessionManager.CloseSession", "UDPTransport.disconnect",
                                "SessionManager.CloseSession", "TCPTransport.disconnect"]


def test_a_failure_while_connecting_closes_what_was_opened(arm):
    from kortex_api.Exceptions.KServerException import KServerException

    arm.fail["BaseClient.SetServoingMode"] = KServerException(3, 1, "not allowed")
    with pytest.raises(BackendError, match="connection failed.*not allowed"):
        _connect()
    assert arm.names()[-4:] == ["SessionManager.CloseSession", "UDPTransport.disconnect",
                                "SessionManager.CloseSession", "TCPTransport.disconnect"]

    arm.calls.clear()
    arm.fail = {"SessionManager.CreateSession": KServerException(1, 2, "bad password")}
    with pytest.raises(BackendError, match="bad password"):
        _connect()
    assert arm.names() == ["RouterClient", "TCPTransport.connect",
                           "SessionManager.CreateSession", "TCPTransport.disconnect"]


def test_an_arm_with_another_actuator_count_is_refused(arm):
    arm.actuator_count = 6
    with pytest.raises(BackendError, match="6 actuators"):
        _connect()
    assert arm.names()[-1] == "TCPTransport.disconnect"


def test_clear_faults_and_home(arm):
    backend = _connect()
    arm.faulted = True
    backend.clear_faults()
    assert arm.names()[-1] == "BaseClient.ClearFaults" and not arm.faulted

    backend.home(timeout=5.0)
    names = arm.names()
    assert names[-4:] == ["BaseClient.ReadAllActions", "BaseClient.OnNotificationActionTopic",
                          "BaseClient.ExecuteActionFromReference", "BaseClient.Unsubscribe"]
    from kortex_api.autogen.client_stubs.BaseClientRpc import HOME_HANDLE
    from kortex_api.autogen.messages import Base_pb2

    assert dict(arm.calls)["BaseClient.ReadAllActions"] == {
        "action_type": Base_pb2.REACH_JOINT_ANGLES}
    assert dict(arm.calls)["BaseClient.ExecuteActionFromReference"] == {
        "identifier": HOME_HANDLE}
    q, _ = backend.read()
    np.testing.assert_allclose(q, wrap_to_pi(np.radians([0, 14.9, 179.9, 229.9, 0, 55, 90])))

    arm.home_outcome = "abort"
    with pytest.raises(BackendError, match="aborted"):
        backend.home(timeout=5.0)
    arm.home_outcome = "never"
    started = time.monotonic()
    with pytest.raises(BackendError, match="did not finish within 0.2 s"):
        backend.home(timeout=0.2)
    assert time.monotonic() - started < 2.0
    assert arm.names()[-2:] == ["BaseClient.Unsubscribe", "BaseClient.Stop"]
    backend.close()


def test_without_kortex_api_the_error_says_how_to_install_it(monkeypatch):
    _forget_kortex()
    monkeypatch.setitem(sys.modules, "kortex_api", None)   # import fails
    with pytest.raises(KortexMissingError) as info:
        Gen3Backend(JOINTS)
    message = str(info.value)
    assert "kortex_api-2.6.0.post3-py3-none-any.whl" in message
    assert "pip install --no-deps" in message and "protobuf==3.20.3" in message
    assert "'kortex'" in message and "'proto-kortex'" in message and "unrelated" in message
    assert isinstance(info.value, ImportError)


def test_driver_node_on_the_gen3_backend(arm, ros_context):
    """The driver drives the fake arm: zero speeds before any command, commanded speeds in
    deg/s, joint states from the arm's feedback, clear_faults, and Stop + close on exit."""
    from uvs_driver.driver_node import DriverNode
    from uvs_driver.qos import COMMAND_QOS

    arm.clock = time.monotonic
    overrides = [Parameter("backend", value="gen3"), Parameter("robot_ip", value="10.0.0.9"),
                 Parameter("rate", value=50.0), Parameter("command_timeout", value=5.0)]
    driver = DriverNode(context=ros_context, parameter_overrides=overrides)
    probe = rclpy.create_node("probe", context=ros_context)
    states = []
    probe.create_subscription(JointState, "joint_states", states.append, 50)
    pub = probe.create_publisher(Float64MultiArray, "joint_velocity_command", COMMAND_QOS)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(driver)
    executor.add_node(probe)

    def spin_until(predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        return predicate()

    def speeds():
        return [p["speeds"] for n, p in arm.calls if n == "BaseClient.SendJointSpeedsCommand"]

    try:
        assert ("TCPTransport.connect", {"ip": "10.0.0.9", "port": 10000}) in arm.calls
        assert spin_until(lambda: len(states) >= 3 and pub.get_subscription_count() > 0)
        # No command yet: every tick sends zero speeds (the watchdog's zero).
        assert all(v == 0.0 for sent in speeds() for _, v, _ in sent)
        qdot = [0.2, -0.1, 0.0, 0.3, 0.0, 0.0, -0.05]
        pub.publish(Float64MultiArray(data=qdot))
        assert spin_until(lambda: any(any(v for _, v, _ in sent) for sent in speeds()))
        moving = [sent for sent in speeds() if any(v for _, v, _ in sent)][-1]
        np.testing.assert_allclose([v for _, v, _ in moving], np.degrees(qdot), rtol=1e-12)
        count = len(states)
        assert spin_until(lambda: len(states) >= count + 3)
        np.testing.assert_allclose(states[-1].velocity, qdot)
        assert states[-1].position[3] > 0.0     # joint_4 turns at 0.3 rad/s
        assert all(-math.pi < v <= math.pi for v in states[-1].position)

        client = probe.create_client(Trigger, "driver/clear_faults")
        assert spin_until(client.service_is_ready)
        future = client.call_async(Trigger.Request())
        assert spin_until(future.done)
        assert future.result().success
        assert "BaseClient.ClearFaults" in arm.names()
    finally:
        executor.shutdown()
        driver.destroy_node()
        probe.destroy_node()
    assert arm.names()[-5:] == ["BaseClient.Stop", "SessionManager.CloseSession",
                                "UDPTransport.disconnect", "SessionManager.CloseSession",
                                "TCPTransport.disconnect"]
