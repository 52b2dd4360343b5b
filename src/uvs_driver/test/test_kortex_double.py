"""The Kortex double itself behaves as the documented Kortex API does, failures included.

A double that forgives what the real API refuses lets a backend pass that would fail on
an arm; these tests pin the strict behaviour the backend tests rely on.
"""

import math
import time

import numpy as np
import pytest


def _session(kortex_api_modules, port=10000, kind="TCP", connection_timeout_ms=2000):
    """(transport, router, session manager) with an open session, as Kinova's examples."""
    tcp, udp, router_cls, session_cls, session_pb2 = kortex_api_modules
    transport = (tcp if kind == "TCP" else udp)()
    router = router_cls(transport, lambda exc: None)
    transport.connect("10.0.0.7", port)
    info = session_pb2.CreateSessionInfo(username="admin", password="admin",
                                         session_inactivity_timeout=60000,
                                         connection_inactivity_timeout=connection_timeout_ms)
    session = session_cls(router)
    session.CreateSession(info)
    return transport, router, session


@pytest.fixture
def api(kortex):
    from kortex_api.autogen.messages import Session_pb2
    from kortex_api.RouterClient import RouterClient
    from kortex_api.SessionManager import SessionManager
    from kortex_api.TCPTransport import TCPTransport
    from kortex_api.UDPTransport import UDPTransport

    return TCPTransport, UDPTransport, RouterClient, SessionManager, Session_pb2


@pytest.fixture
def client(api):
    """(BaseClient, BaseCyclicClient, session manager) on one TCP session; closed after."""
    from kortex_api.autogen.client_stubs.BaseClientRpc import BaseClient
    from kortex_api.autogen.client_stubs.BaseCyclicClientRpc import BaseCyclicClient

    transport, router, session = _session(api)
    yield BaseClient(router), BaseCyclicClient(router), session
    session.CloseSession()
    try:
        transport.disconnect()
    except OSError:
        pass


def _speeds(values):
    from kortex_api.autogen.messages import Base_pb2

    speeds = Base_pb2.JointSpeeds()
    for i, value in enumerate(values):
        speed = speeds.joint_speeds.add()
        speed.joint_identifier = i
        speed.value = value
        speed.duration = 0
    return speeds


def _options(timeout_ms):
    from kortex_api.RouterClient import RouterClientSendOptions

    options = RouterClientSendOptions()
    options.timeout_ms = timeout_ms
    return options


def test_messages_refuse_unknown_fields_wrong_types_and_composite_assignment(kortex):
    from kortex_api.autogen.messages import Base_pb2

    speeds = Base_pb2.JointSpeeds()
    speed = speeds.joint_speeds.add()
    with pytest.raises(AttributeError, match='no field "speed"'):
        speed.speed = 1.0
    with pytest.raises(TypeError, match="str"):
        speed.value = "10"
    with pytest.raises(TypeError, match="float"):
        speed.joint_identifier = 1.0
    with pytest.raises(ValueError, match="out of range"):
        speed.joint_identifier = -1
    with pytest.raises(AttributeError, match="Assignment not allowed"):
        speeds.joint_speeds = []
    with pytest.raises(ValueError, match="no \"valu\" field"):
        Base_pb2.JointSpeed(valu=1.0)
    speed.value = 0.1                      # float fields are 32-bit, as on the wire
    assert speed.value == pytest.approx(0.1, abs=1e-8) and speed.value != 0.1
    assert Base_pb2.ActionEvent.Name(Base_pb2.ACTION_PREPROCESS_ABORT) == (
        "ACTION_PREPROCESS_ABORT")


def test_stubs_honour_timeout_ms_and_raise_what_the_real_api_raises(arm, client):
    base, cyclic, _ = client
    arm.hang("BaseCyclic.RefreshFeedback")
    started = time.monotonic()
    with pytest.raises(TimeoutError):           # concurrent.futures.TimeoutError
        cyclic.RefreshFeedback(options=_options(40))
    assert 0.035 < time.monotonic() - started < 0.5
    assert arm.entries("BaseCyclic.RefreshFeedback")[-1].timeout_ms == 40

    from kortex_api.autogen.messages import Errors_pb2
    from kortex_api.Exceptions.KServerException import KServerException

    arm.inject_fault()
    with pytest.raises(KServerException) as info:
        base.SendJointSpeedsCommand(_speeds([1.0] * 7))
    assert info.value.get_error_code() == Errors_pb2.ERROR_DEVICE
    assert info.value.get_error_sub_code() == Errors_pb2.ROBOT_IN_FAULT
    assert "sub name=ROBOT_IN_FAULT" in str(info.value)


def test_commands_are_refused_in_the_wrong_servoing_mode_or_with_bad_speeds(arm, client):
    from kortex_api.autogen.messages import Base_pb2, Errors_pb2
    from kortex_api.Exceptions.KServerException import KServerException

    base, _, _ = client
    refused = []
    for speeds in (_speeds([1.0] * 6), _speeds([90.0] + [0.0] * 6)):
        with pytest.raises(KServerException) as info:
            base.SendJointSpeedsCommand(speeds)
        refused.append(info.value.get_error_sub_code())
    mode = Base_pb2.ServoingModeInformation(servoing_mode=Base_pb2.LOW_LEVEL_SERVOING)
    base.SetServoingMode(mode)
    with pytest.raises(KServerException) as info:
        base.SendJointSpeedsCommand(_speeds([1.0] * 7))
    refused.append(info.value.get_error_sub_code())
    assert refused == [Errors_pb2.CONTROL_ACTUATOR_COUNT_MISMATCH, Errors_pb2.CONTROL_LARGE_SPEED,
                       Errors_pb2.WRONG_SERVOING_MODE]
    assert not arm.moving()


def test_feedback_positions_are_degrees_in_0_360_and_speeds_are_held(arm, client):
    base, cyclic, _ = client
    arm.accel = math.inf
    arm.q_deg[:] = [-10.0, 20.0, 359.999, 0.0, 540.0, -90.0, 0.0]
    base.SendJointSpeedsCommand(_speeds([10.0, 0, 0, 0, 0, 0, -20.0]))
    time.sleep(0.2)
    feedback = cyclic.RefreshFeedback()
    positions = np.array([a.position for a in feedback.actuators])
    assert np.all((positions >= 0.0) & (positions < 360.0))
    assert 351.9 < positions[0] < (arm.positions()[0] % 360.0) + 1e-3   # 350 + 10 deg/s
    assert positions[4] == pytest.approx(180.0, abs=1e-3)
    assert positions[5] == pytest.approx(270.0, abs=1e-3)
    assert [a.velocity for a in feedback.actuators][::6] == [10.0, -20.0]
    time.sleep(0.1)                              # still moving: speeds have no end time
    assert arm.positions()[0] > -10.0 + 10.0 * 0.29


def test_the_session_keeps_alive_and_the_arm_stops_only_when_the_link_goes_silent(arm, api):
    from kortex_api.autogen.client_stubs.BaseClientRpc import BaseClient

    transport, router, session = _session(api, connection_timeout_ms=300)
    BaseClient(router).SendJointSpeedsCommand(_speeds([5.0] + [0.0] * 6))
    time.sleep(0.6)       # the client is idle, but the keep-alive thread talks for it
    assert arm.moving() and len(arm.entries("Session.KeepAlive")) >= 2
    arm.break_connection("TCP")
    broken = time.monotonic()
    time.sleep(0.6)
    assert not arm.moving()
    (stopped,) = arm.event_times("firmware_stop")
    assert 0.1 < stopped - broken < 0.5          # last keep-alive (<= 150 ms ago) + 300 ms
    with pytest.raises(OSError):
        transport.disconnect()


def test_dropped_datagrams_hung_rpcs_and_a_broken_socket(arm, api):
    from kortex_api.autogen.client_stubs.BaseClientRpc import BaseClient
    from kortex_api.autogen.client_stubs.BaseCyclicClientRpc import BaseCyclicClient

    udp, udp_router, udp_session = _session(api, port=10001, kind="UDP")
    cyclic = BaseCyclicClient(udp_router)
    arm.drop(count=1)
    with pytest.raises(TimeoutError):
        cyclic.RefreshFeedback(options=_options(30))
    assert len(cyclic.RefreshFeedback(options=_options(30)).actuators) == 7

    tcp, router, session = _session(api)
    base = BaseClient(router)
    arm.hang("Base.SendJointSpeedsCommand", reply_after=None)
    with pytest.raises(TimeoutError):
        base.SendJointSpeedsCommand(_speeds([3.0] * 7), options=_options(30))
    assert arm.moving()       # executed, only the answer was lost
    arm.break_connection("TCP")
    with pytest.raises(BrokenPipeError):
        base.Stop(options=_options(30))
    udp_session.CloseSession()
    udp.disconnect()


def test_actions_notify_start_and_end_and_stop_aborts_them(arm, client):
    import threading

    from kortex_api.autogen.messages import Base_pb2

    base, _, _ = client
    events, done = [], threading.Event()

    def on_action(note):
        events.append((Base_pb2.ActionEvent.Name(note.action_event), note.abort_details))
        if note.action_event in (Base_pb2.ACTION_END, Base_pb2.ACTION_ABORT):
            done.set()

    handle = base.OnNotificationActionTopic(on_action, Base_pb2.NotificationOptions())
    requested = Base_pb2.RequestedActionType(action_type=Base_pb2.REACH_JOINT_ANGLES)
    home = next(a for a in base.ReadAllActions(requested).action_list if a.name == "Home")
    base.ExecuteActionFromReference(home.handle)
    assert done.wait(2.0)
    assert [e for e, _ in events] == ["ACTION_PREPROCESS_START", "ACTION_PREPROCESS_END",
                                      "ACTION_START", "ACTION_END"]
    np.testing.assert_allclose(np.mod(arm.positions(), 360.0), [0, 15, 180, 230, 0, 55, 90],
                               atol=1e-6)

    events.clear()
    done.clear()
    arm.action_duration = 5.0
    base.ExecuteActionFromReference(home.handle)
    time.sleep(0.1)
    base.Stop()
    assert done.wait(2.0)
    assert events[-1] == ("ACTION_ABORT", 55)      # CONTROL_MANUAL_STOP
    base.Unsubscribe(handle)
