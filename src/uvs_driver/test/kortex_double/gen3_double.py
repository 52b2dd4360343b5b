# Over 600 lines: one simulated arm answering every Kortex RPC the backend uses; they share its
# motion, session and fault state, and are checked against Kinova's API reference in one place.
"""The simulated Kinova Gen3 behind the Kortex double (tests only; see README.md).

One process-wide arm (``current()``; tests call ``reset()`` first), reached through the
double's ``kortex_api`` transports. It answers requests as the arm does, refuses what the
arm refuses with Kinova's error codes, keeps moving at the last commanded joint speeds
(integrated over wall time, with an acceleration limit, so a frozen client visibly keeps
the arm moving) until Stop, a fault, or the connection inactivity timeout of the session
that started the motion, and logs every request with its time and outcome.

Fault injection (methods of :class:`Gen3Double`): ``hang`` (an RPC answered late or never),
``drop`` (lost feedback datagrams), ``break_connection`` (a broken socket),
``fail_disconnect``, ``inject_fault`` (a fault mid-motion), ``park`` (a joint at a wrap
point with encoder jitter), ``unreachable``; and ``action_outcome``, ``clear_delay``,
``mode_after_clear``, ``tool`` as plain attributes.

Units: joint angles deg (feedback in [0, 360)), speeds deg/s, time s (``clock``,
time.monotonic by default).
"""

from __future__ import annotations

import errno
import itertools
import math
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Entry", "Gen3Double", "current", "reset"]

# Firmware joint position limits, deg (ros2_kortex's kortex_description: +/-2.24, 2.57,
# 2.09 rad); other joints are continuous. Hard speed limits deg/s (Gen3 user guide:
# 80 deg/s for the large actuators, 70 deg/s for the small ones).
_ARMS = {
    7: {"limits": {1: 2.24, 3: 2.57, 5: 2.09}, "speed": [80.0] * 4 + [70.0] * 3,
        "home": [0.0, 15.0, 180.0, 230.0, 0.0, 55.0, 90.0],
        "retract": [0.0, 340.0, 180.0, 214.0, 0.0, 310.0, 90.0],
        # Gen3 user guide, classical DH (theta offset rad, d m, a m, alpha rad); base row first.
        "dh": [(0.0, 0.0, 0.0, math.pi, None), (0.0, -0.2848, 0.0, math.pi / 2, 0),
               (math.pi, -0.0118, 0.0, math.pi / 2, 1), (math.pi, -0.4208, 0.0, math.pi / 2, 2),
               (math.pi, -0.0128, 0.0, math.pi / 2, 3), (math.pi, -0.3143, 0.0, math.pi / 2, 4),
               (math.pi, 0.0, 0.0, math.pi / 2, 5), (math.pi, -0.1674, 0.0, math.pi, 6)]},
    6: {"limits": {1: 2.24, 2: 2.57, 4: 2.09}, "speed": [80.0] * 3 + [70.0] * 3,
        "home": [0.0, 15.0, 230.0, 0.0, 55.0, 90.0],
        "retract": [0.0, 340.0, 214.0, 0.0, 310.0, 90.0],
        "dh": [(0.0, 0.0, 0.0, math.pi, None), (0.0, -0.2848, 0.0, math.pi / 2, 0),
               (-math.pi / 2, -0.0118, 0.410, math.pi, 1),
               (-math.pi / 2, -0.0128, 0.0, math.pi / 2, 2),
               (math.pi, -0.3143, 0.0, math.pi / 2, 3), (math.pi, 0.0, 0.0, math.pi / 2, 4),
               (math.pi, -0.1674, 0.0, math.pi, 5)]},
}

# Kortex enum values (Common.ArmState, Base.ServoingMode, Base.ActionEvent, Api error codes).
IN_FAULT, READY, LOW_LEVEL_STATE, PLAYING = 4, 7, 6, 8
SINGLE_LEVEL, LOW_LEVEL = 2, 3
EV_END, EV_ABORT, EV_START = 1, 2, 4
EV_PRE_START, EV_PRE_ABORT, EV_PRE_END = 5, 6, 7
ERROR_PROTOCOL_SERVER, ERROR_DEVICE = 1, 3
SUB = {"METHOD_FAILED": 1, "INVALID_PARAM": 3, "INVALID_SESSION": 12, "INVALID_PASSWORD": 15,
       "USER_NOT_FOUND": 16, "ENTITY_NOT_FOUND": 17, "ROBOT_NOT_MOVING": 19,
       "ROBOT_IN_FAULT": 22, "ROBOT_IN_EMERGENCY_STOP": 25, "CONTROL_MANUAL_STOP": 55,
       "CONTROL_ACTUATOR_COUNT_MISMATCH": 57, "CONTROL_LARGE_SPEED": 60,
       "CONTROL_JOINT_POSITION_LIMIT": 65, "CONTROL_WRONG_STARTING_POINT": 69,
       "SAFETY_THRESHOLD_REACHED": 53,
       "WRONG_SERVOING_MODE": 75}
REACH_JOINT_ANGLES = 7
TCP_PORT, UDP_PORT = 10000, 10001


class Refused(Exception):
    """The arm answers a request with an error frame (code, sub code, text)."""

    def __init__(self, code: int, sub: str, text: str) -> None:
        super().__init__(text)
        self.code, self.sub_code, self.text = code, SUB[sub], text


@dataclass
class Entry:
    """One request as the arm saw it: t (clock s), transport ("TCP"/"UDP"), name
    ("Base.Stop", ...), payload (a copy of the request message or None), outcome ("ok",
    "refused:<SUB_ERROR>", "hung", "dropped", "late", "broken"), timeout_ms (the
    caller's RouterClientSendOptions.timeout_ms), pid (the client's process)."""

    t: float
    transport: str
    name: str
    payload: object
    outcome: str = "ok"
    timeout_ms: int | None = None
    pid: int | None = None


@dataclass
class Connection:
    """One client transport as the arm sees it (``pid``: the client's process id)."""

    kind: str
    port: int
    transport: object
    pid: int | None = None
    session: dict | None = None
    last_rx: float = 0.0
    broken: bool = False
    fail_disconnect: bool = False
    closed: bool = False
    subscriptions: dict = field(default_factory=dict)   # handle id -> topic


@dataclass
class _Action:
    handle: int
    name: str
    start: np.ndarray        # deg
    target: np.ndarray       # deg, unwrapped to the nearest turn of each continuous joint
    t0: float
    duration: float
    outcome: str
    owner: Connection | None


def _smooth(s: float) -> tuple[float, float]:
    """Smoothstep position and its derivative for s in [0, 1]."""
    s = min(max(s, 0.0), 1.0)
    return s * s * (3.0 - 2.0 * s), 6.0 * s * (1.0 - s)


class Gen3Double:
    """A Gen3 arm with ``dof`` (7 or 6) actuators as its Kortex server answers.

    Attributes set by tests: ``q_deg`` (true joint angles, deg, not wrapped), ``accel``
    (deg/s^2 limit of the speed loop, inf for ideal tracking), ``tool`` (the arm's tool
    configuration, m / deg), ``action_outcome`` ("end", "abort", "preprocess_abort",
    "hang"), ``action_duration`` (s), ``abort_details`` (sub-error name of an abort),
    ``clear_delay`` (s from ClearFaults until the arm is ready again),
    ``mode_after_clear`` (servoing mode the arm is left in by a fault clearing, None:
    unchanged), ``stop_when_idle_raises`` (Stop on a still arm refused with
    ROBOT_NOT_MOVING), ``credentials``, ``connect_delay`` (s a new connection takes).
    """

    def __init__(self, dof: int = 7, clock=time.monotonic) -> None:
        spec = _ARMS[dof]
        self.dof = dof
        self.clock = clock
        self.lock = threading.RLock()
        self.limits_deg = {j: math.degrees(v) for j, v in spec["limits"].items()}
        self.speed_limits = np.array(spec["speed"])
        self.stored = {"Home": (1001, spec["home"]), "Retract": (1000, spec["retract"]),
                       "Zero": (1002, [0.0] * dof)}
        self._dh = spec["dh"]
        self.q_deg = np.zeros(dof)
        self.v_deg = np.zeros(dof)
        self.cmd_deg = np.zeros(dof)
        self.accel = 300.0
        self.noise_deg = np.zeros(dof)
        self.active_state = READY
        self.servoing_mode = SINGLE_LEVEL
        self.fault_bank_a = 0
        self.tool = {"x": 0.0, "y": 0.0, "z": 0.12, "theta_x": 0.0, "theta_y": 0.0,
                     "theta_z": 0.0, "mass": 0.925}
        self.credentials = {"admin": "admin"}
        self.action_outcome = "end"
        self.action_duration = 0.3
        self.abort_details = "CONTROL_MANUAL_STOP"
        self.clear_delay = 0.1
        self.mode_after_clear: int | None = None
        self.stop_when_idle_raises = False
        self.reachable = True
        self.connect_delay = 0.0
        self.log: list[Entry] = []
        self.events: list[tuple[float, str, object]] = []
        self.connections: list[Connection] = []
        self._owner: Connection | None = None
        self._action: _Action | None = None
        self._clear_at: float | None = None
        self._hang: dict[str, float | None] = {}
        self._refuse: dict[str, str] = {}
        self._drop: dict[str, int] = {}
        self._frame_id = 0
        self._ids = itertools.count(1)
        self._t = clock()
        self._notes: queue.Queue = queue.Queue()
        self._notifier: threading.Thread | None = None

    # ------------------------------------------------------------------ fault injection

    def hang(self, name: str, reply_after: float | None = None) -> None:
        """From now on, requests ``name`` (e.g. "Base.SendJointSpeedsCommand", or "*" for
        all on TCP) are executed but answered after ``reply_after`` s, or never (None)."""
        with self.lock:
            self._hang[name] = reply_after

    def drop(self, name: str = "BaseCyclic.RefreshFeedback", count: int = 1) -> None:
        """The next ``count`` requests ``name`` are lost (a dropped UDP datagram): never
        executed, never answered."""
        with self.lock:
            self._drop[name] = self._drop.get(name, 0) + int(count)

    def refuse(self, name: str, sub: str = "METHOD_FAILED") -> None:
        """From now on the arm refuses requests ``name`` with sub error ``sub``."""
        with self.lock:
            self._refuse[name] = sub

    def clear_injections(self) -> None:
        with self.lock:
            self._hang.clear()
            self._drop.clear()
            self._refuse.clear()

    def break_connection(self, kind: str = "TCP") -> None:
        """Every open ``kind`` connection breaks: TCP sends raise BrokenPipeError and
        disconnect raises OSError; UDP requests go unanswered. Nothing reaches the arm from
        them any more, so its connection inactivity timeout applies."""
        with self.lock:
            for conn in self.connections:
                if conn.kind == kind and not conn.closed:
                    conn.broken = True
            self.events.append((self.clock(), "broken", kind))

    def fail_disconnect(self, kind: str = "UDP") -> None:
        """disconnect() of every open ``kind`` transport raises OSError (a dead socket)."""
        with self.lock:
            for conn in self.connections:
                if conn.kind == kind and not conn.closed:
                    conn.fail_disconnect = True

    def unreachable(self) -> None:
        """connect() fails as for an arm that is off or on another network."""
        self.reachable = False

    def inject_fault(self, sub: str = "SAFETY_THRESHOLD_REACHED") -> None:
        """The arm faults now (e.g. a torque or joint limit trips): it brakes, reports
        ARMSTATE_IN_FAULT and a fault bank, refuses motion until ClearFaults."""
        with self.lock:
            self._advance()
            self._fault(self.clock(), sub)

    def park(self, joint: int, deg: float, jitter: float = 0.02) -> None:
        """Joint ``joint`` (0-based) sits at ``deg`` with encoder jitter of +/-``jitter`` deg
        alternating from one feedback frame to the next (at 180 deg: 179.98 / 180.02)."""
        with self.lock:
            self._advance()
            self.q_deg[joint] = deg
            self.noise_deg[joint] = jitter

    # ------------------------------------------------------------------ observation

    def names(self) -> list[str]:
        with self.lock:
            return [e.name for e in self.log]

    def entries(self, name: str | None = None, outcome: str | None = None) -> list[Entry]:
        with self.lock:
            return [e for e in self.log if (name is None or e.name == name)
                    and (outcome is None or e.outcome == outcome)]

    def joint_speed_commands(self) -> list[np.ndarray]:
        """(k, dof) deg/s of every SendJointSpeedsCommand the arm executed, in order."""
        return [np.array([s.value for s in e.payload.joint_speeds])
                for e in self.entries("Base.SendJointSpeedsCommand", "ok")]

    def stop_reached(self, since: float) -> float | None:
        """Clock time of the first client stop after ``since``: an executed Stop or a
        SendJointSpeedsCommand of all zeros; None if none arrived."""
        with self.lock:
            for e in self.log:
                if e.t < since or e.outcome not in ("ok", "late"):
                    continue
                if e.name == "Base.Stop":
                    return e.t
                if e.name == "Base.SendJointSpeedsCommand" and not any(
                        s.value for s in e.payload.joint_speeds):
                    return e.t
        return None

    def event_times(self, what: str) -> list[float]:
        with self.lock:
            return [t for t, w, _ in self.events if w == what]

    def positions(self) -> np.ndarray:
        """(dof,) deg, the true joint angles now (not wrapped)."""
        with self.lock:
            self._advance()
            return self.q_deg.copy()

    def moving(self) -> bool:
        with self.lock:
            self._advance()
            return bool(np.any(self.cmd_deg) or np.any(self.v_deg) or self._action)

    # ------------------------------------------------------------------ transports

    def connect(self, transport, kind: str, ip: str, port: int,
                pid: int | None = None) -> Connection:
        """A client transport connects (``transport``: where answers go, ``deliver`` and
        ``notify``; ``pid``: the client's process)."""
        if self.connect_delay:
            time.sleep(self.connect_delay)      # a SYN to an arm that does not answer
        with self.lock:
            self.log.append(Entry(self.clock(), kind, f"{kind}Transport.connect",
                                  {"ip": ip, "port": port}))
            if not self.reachable:
                raise OSError(errno.EHOSTUNREACH, "No route to host")
            if port != (TCP_PORT if kind == "TCP" else UDP_PORT):
                raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
            conn = Connection(kind, port, transport, pid=pid, last_rx=self.clock())
            self.connections.append(conn)
            return conn

    def disconnect(self, conn: Connection) -> None:
        with self.lock:
            self.log.append(Entry(self.clock(), conn.kind, f"{conn.kind}Transport.disconnect",
                                  None, "failed" if conn.fail_disconnect or conn.broken
                                  else "ok"))
            if conn.fail_disconnect or (conn.broken and conn.kind == "TCP"):
                raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
            conn.closed = True
            conn.session = None

    def receive(self, conn: Connection, frame) -> None:
        """A request frame from a client transport; the answer goes back through
        ``conn.transport.deliver`` (now, later, or never)."""
        with self.lock:
            now = self.clock()
            name = frame.function
            if conn.closed:
                raise OSError(errno.EBADF, "Bad file descriptor")
            if conn.broken:
                self.log.append(Entry(now, conn.kind, name, frame.payload, "broken",
                                      frame.timeout_ms, conn.pid))
                if conn.kind == "TCP":
                    raise BrokenPipeError(errno.EPIPE, "Broken pipe")
                return
            entry = Entry(now, conn.kind, name, frame.payload, timeout_ms=frame.timeout_ms,
                          pid=conn.pid)
            self.log.append(entry)
            if self._drop.get(name, 0) > 0:
                self._drop[name] -= 1
                entry.outcome = "dropped"
                return
            # What happened before this request first (a connection inactivity timeout
            # that ran out while the client was frozen), then this request counts.
            self._advance()
            conn.last_rx = now
            try:
                forced = self._refuse.get(name)
                if forced is not None:
                    raise Refused(ERROR_DEVICE, forced, f"{name} refused (injected)")
                response = self._handle(conn, name, frame.payload)
                error = None
            except Refused as refusal:
                response, error = None, refusal
                entry.outcome = "refused:" + next(k for k, v in SUB.items()
                                                  if v == refusal.sub_code)
            delay = self._hang.get(name, self._hang.get("*") if conn.kind == "TCP" else None)
            hung = name in self._hang or (conn.kind == "TCP" and "*" in self._hang)
        reply = _Reply(frame.frame_id, response, error)
        if not hung:
            conn.transport.deliver(reply)
        elif delay is not None:
            entry.outcome = "late" if error is None else entry.outcome
            threading.Timer(delay, conn.transport.deliver, args=(reply,)).start()
        else:
            entry.outcome = "hung" if error is None else entry.outcome

    # ------------------------------------------------------------------ the arm's state

    def _advance(self) -> None:
        """Integrate the arm up to the clock's now (lock held), applying what happened in
        between: the end of a fault clearing, the connection inactivity timeout of the
        session that owns the motion, joint position limits."""
        now = self.clock()
        if self._clear_at is not None and now >= self._clear_at:
            self._integrate_to(self._clear_at)
            self._clear_at = None
            self.fault_bank_a = 0
            if self.mode_after_clear is not None:
                self.servoing_mode = self.mode_after_clear
            self.active_state = READY if self.servoing_mode == SINGLE_LEVEL else LOW_LEVEL_STATE
            self.events.append((self.clock(), "fault_cleared", None))
        owner = self._owner
        if owner is not None and owner.session and (np.any(self.cmd_deg) or np.any(self.v_deg)):
            deadline = owner.last_rx + owner.session["connection_inactivity_timeout"] / 1000.0
            if owner.session["connection_inactivity_timeout"] and deadline < now:
                self._integrate_to(deadline)
                self.cmd_deg[:] = 0.0
                self._owner = None
                self.events.append((deadline, "firmware_stop", "connection inactivity timeout"))
        self._integrate_to(now)

    def _integrate_to(self, t: float) -> None:
        dt = t - self._t
        if dt <= 0.0:
            return
        self._t = t
        if self._action is not None:
            self._action_motion(t)
            return
        v0, target = self.v_deg, self.cmd_deg
        if math.isinf(self.accel):
            self.q_deg = self.q_deg + target * dt
            self.v_deg = target.copy()
            t_still = t - dt
        else:
            dv = target - v0
            t_reach = np.abs(dv) / self.accel
            ramp = np.minimum(t_reach, dt)
            v_ramp_end = v0 + np.sign(dv) * self.accel * ramp
            self.q_deg = self.q_deg + 0.5 * (v0 + v_ramp_end) * ramp + target * (dt - ramp)
            self.v_deg = np.where(t_reach <= dt, target, v_ramp_end)
            t_still = t - dt + float(np.max(t_reach))
        if np.any(v0) and not np.any(self.v_deg):
            # The exact time the last joint came to rest (speed loop ramped to zero).
            self.events.append((t_still, "still", None))
        for j, limit in self.limits_deg.items():
            if abs(self.q_deg[j]) > limit:
                self.q_deg[j] = math.copysign(limit, self.q_deg[j])
                self._fault(t, "CONTROL_JOINT_POSITION_LIMIT")

    def _action_motion(self, t: float) -> None:
        action = self._action
        if action.outcome == "hang":
            self.v_deg[:] = 0.0
            return
        s, ds = _smooth((t - action.t0) / action.duration)
        self.q_deg = action.start + (action.target - action.start) * s
        self.v_deg = (action.target - action.start) * ds / action.duration

    def _fault(self, t: float, sub: str) -> None:
        self.active_state = IN_FAULT
        self.cmd_deg[:] = 0.0
        if np.any(self.v_deg):
            self.events.append((t, "still", "brakes"))
        self.v_deg[:] = 0.0          # the brakes engage
        self.fault_bank_a |= 1
        self._owner = None
        self._clear_at = None
        self.events.append((t, "fault", sub))
        if self._action is not None:
            self._end_action(EV_ABORT, "ROBOT_IN_FAULT")

    # ------------------------------------------------------------------ requests

    def _handle(self, conn: Connection, name: str, request):
        service, method = name.split(".", 1)
        if service != "Session" and conn.session is None:
            raise Refused(ERROR_PROTOCOL_SERVER, "INVALID_SESSION",
                          "no session on this connection")
        return getattr(self, f"_{service}_{method}")(conn, request)

    def _require_motion_ok(self) -> None:
        if self.active_state == IN_FAULT:
            raise Refused(ERROR_DEVICE, "ROBOT_IN_FAULT", "Robot in fault")
        if self.servoing_mode != SINGLE_LEVEL:
            raise Refused(ERROR_DEVICE, "WRONG_SERVOING_MODE",
                          "Robot is not in the right servoing mode")

    def _Session_CreateSession(self, conn, info):
        if info.username not in self.credentials:
            raise Refused(ERROR_DEVICE, "USER_NOT_FOUND", "Unrecognized user")
        if self.credentials[info.username] != info.password:
            raise Refused(ERROR_DEVICE, "INVALID_PASSWORD", "Password does not match")
        conn.session = {"session_inactivity_timeout": info.session_inactivity_timeout,
                        "connection_inactivity_timeout": info.connection_inactivity_timeout}

    def _Session_CloseSession(self, conn, _):
        if self._owner is conn and (np.any(self.cmd_deg) or np.any(self.v_deg)):
            self.cmd_deg[:] = 0.0
            self.events.append((self.clock(), "firmware_stop", "session closed"))
        if self._owner is conn:
            self._owner = None
        conn.session = None

    def _Session_KeepAlive(self, conn, _):
        return None

    def _Base_SetServoingMode(self, conn, info):
        self.servoing_mode = info.servoing_mode
        if self.active_state != IN_FAULT:
            self.active_state = READY if info.servoing_mode == SINGLE_LEVEL else LOW_LEVEL_STATE

    def _Base_GetServoingMode(self, conn, _):
        from kortex_api.autogen.messages import Base_pb2

        return Base_pb2.ServoingModeInformation(servoing_mode=self.servoing_mode)

    def _Base_GetArmState(self, conn, _):
        from kortex_api.autogen.messages import Base_pb2

        return Base_pb2.ArmStateInformation(active_state=self.active_state)

    def _Base_GetActuatorCount(self, conn, _):
        from kortex_api.autogen.messages import Base_pb2

        return Base_pb2.ActuatorInformation(count=self.dof)

    def _Base_SendJointSpeedsCommand(self, conn, speeds):
        self._require_motion_ok()
        ids = [s.joint_identifier for s in speeds.joint_speeds]
        if len(ids) != self.dof:
            raise Refused(ERROR_DEVICE, "CONTROL_ACTUATOR_COUNT_MISMATCH",
                          f"{len(ids)} joint speeds for {self.dof} actuators")
        if sorted(ids) != list(range(self.dof)):
            raise Refused(ERROR_DEVICE, "INVALID_PARAM", f"joint identifiers {ids}")
        values = np.zeros(self.dof)
        for s in speeds.joint_speeds:
            values[s.joint_identifier] = s.value
        if np.any(np.abs(values) > self.speed_limits + 1e-3):
            raise Refused(ERROR_DEVICE, "CONTROL_LARGE_SPEED",
                          f"joint speeds {values.tolist()} deg/s above the limits")
        if self._action is not None:
            self._end_action(EV_ABORT, "CONTROL_MANUAL_STOP")
        self.cmd_deg = values
        self._owner = conn if np.any(values) else self._owner
        self.events.append((self.clock(), "speeds", values.copy()))

    def _Base_Stop(self, conn, _):
        if (self.stop_when_idle_raises and self._action is None
                and not np.any(self.cmd_deg) and not np.any(self.v_deg)):
            raise Refused(ERROR_DEVICE, "ROBOT_NOT_MOVING", "Robot is not moving")
        self.cmd_deg[:] = 0.0
        if self._action is not None:
            self._end_action(EV_ABORT, "CONTROL_MANUAL_STOP")
        self.events.append((self.clock(), "stop", None))

    def _Base_ApplyEmergencyStop(self, conn, _):
        self._fault(self.clock(), "ROBOT_IN_EMERGENCY_STOP")

    def _Base_ClearFaults(self, conn, _):
        if self.active_state == IN_FAULT and self._clear_at is None:
            self._clear_at = self.clock() + self.clear_delay

    def _Base_ReadAllActions(self, conn, requested):
        from kortex_api.autogen.messages import Base_pb2

        actions = Base_pb2.ActionList()
        if requested.action_type == REACH_JOINT_ANGLES:
            for name, (ident, _) in self.stored.items():
                action = actions.action_list.add(name=name)
                action.handle.identifier = ident
                action.handle.action_type = REACH_JOINT_ANGLES
        return actions

    def _Base_ExecuteActionFromReference(self, conn, handle):
        found = [(name, deg) for name, (ident, deg) in self.stored.items()
                 if ident == handle.identifier]
        if not found:
            raise Refused(ERROR_DEVICE, "ENTITY_NOT_FOUND", "Cannot find entity")
        self._require_motion_ok()
        self._start_action(conn, handle.identifier, found[0][0], np.array(found[0][1]))

    def _Base_ExecuteAction(self, conn, action):
        self._require_motion_ok()
        angles = list(action.reach_joint_angles.joint_angles.joint_angles)
        if len(angles) != self.dof:
            raise Refused(ERROR_DEVICE, "CONTROL_ACTUATOR_COUNT_MISMATCH",
                          f"{len(angles)} joint angles for {self.dof} actuators")
        target = np.zeros(self.dof)
        for angle in angles:
            target[angle.joint_identifier] = angle.value
        self._start_action(conn, 0, action.name or "reach_joint_angles", target)

    def _start_action(self, conn, handle: int, name: str, target_deg: np.ndarray) -> None:
        if self._action is not None:
            self._end_action(EV_ABORT, "CONTROL_MANUAL_STOP")
        self.cmd_deg[:] = 0.0
        signed = (np.asarray(target_deg, float) + 180.0) % 360.0 - 180.0
        target = self.q_deg.copy()
        for j in range(self.dof):
            if j in self.limits_deg:
                target[j] = signed[j]
            else:   # continuous: the nearest turn
                target[j] = self.q_deg[j] + ((signed[j] - self.q_deg[j] + 180.0) % 360.0 - 180.0)
        outcome = self.action_outcome
        beyond = [j for j, lim in self.limits_deg.items() if abs(target[j]) > lim]
        if beyond:
            outcome = "preprocess_abort"
        self._notify(EV_PRE_START, handle)
        if outcome == "preprocess_abort":
            self._notify(EV_PRE_ABORT, handle, "CONTROL_JOINT_POSITION_LIMIT" if beyond
                         else self.abort_details)
            return
        self._notify(EV_PRE_END, handle)
        self._notify(EV_START, handle)
        now = self.clock()
        self._action = _Action(handle, name, self.q_deg.copy(), target, now,
                               self.action_duration, outcome, conn)
        self.active_state = PLAYING
        self.events.append((now, "action_start", name))
        if outcome == "end":
            threading.Timer(self.action_duration, self._finish_action,
                            args=(self._action,)).start()
        elif outcome == "abort":
            threading.Timer(self.action_duration / 2, self._abort_action,
                            args=(self._action,)).start()

    def _finish_action(self, action: _Action) -> None:
        with self.lock:
            if self._action is not action:
                return
            self._integrate_to(max(self.clock(), action.t0 + action.duration))
            self.q_deg = action.target.copy()
            self.v_deg[:] = 0.0
            self._action = None
            self.active_state = READY
            self.events.append((self.clock(), "action_end", action.name))
            self._notify(EV_END, action.handle)

    def _abort_action(self, action: _Action) -> None:
        with self.lock:
            if self._action is action:
                self._advance()
                self._end_action(EV_ABORT, self.abort_details)

    def _end_action(self, event: int, details: str) -> None:
        action = self._action
        if action is None:
            return
        self._action = None
        self.v_deg[:] = 0.0
        if self.active_state == PLAYING:
            self.active_state = READY
        self.events.append((self.clock(), "action_abort", details))
        self._notify(event, action.handle, details)

    def _Base_OnNotificationActionTopic(self, conn, options):
        from kortex_api.autogen.messages import Common_pb2

        ident = next(self._ids)
        conn.subscriptions[ident] = "action"
        return Common_pb2.NotificationHandle(identifier=ident)

    def _Base_Unsubscribe(self, conn, handle):
        if conn.subscriptions.pop(handle.identifier, None) is None:
            raise Refused(ERROR_DEVICE, "ENTITY_NOT_FOUND", "no such notification handle")

    def _notify(self, event: int, handle: int, details: str | None = None) -> None:
        """Queue an ActionNotification to every subscriber; a thread of the arm delivers it,
        as the real API calls back from its own thread."""
        from kortex_api.autogen.messages import Base_pb2

        for conn in self.connections:
            for ident, topic in list(conn.subscriptions.items()):
                if topic != "action" or conn.closed or conn.broken:
                    continue
                note = Base_pb2.ActionNotification(action_event=event)
                note.handle.identifier = handle
                note.handle.action_type = REACH_JOINT_ANGLES
                if details is not None:
                    note.abort_details = SUB.get(details, 0)
                self._notes.put((conn, ident, note))
        if self._notifier is None:
            self._notifier = threading.Thread(target=self._deliver_notes, daemon=True,
                                              name="gen3-double-notifier")
            self._notifier.start()

    def _deliver_notes(self) -> None:
        while True:
            conn, ident, note = self._notes.get()
            conn.transport.notify(ident, note)

    def _BaseCyclic_RefreshFeedback(self, conn, _):
        from kortex_api.autogen.messages import BaseCyclic_pb2

        self._frame_id = (self._frame_id + 1) % 65536
        sign = 1.0 if self._frame_id % 2 else -1.0
        feedback = BaseCyclic_pb2.Feedback(frame_id=self._frame_id)
        base = feedback.base
        base.active_state = self.active_state
        base.fault_bank_a = self.fault_bank_a
        base.tool_pose_x, base.tool_pose_y, base.tool_pose_z = self.tool_position()
        for j in range(self.dof):
            actuator = feedback.actuators.add()
            actuator.position = (self.q_deg[j] + sign * self.noise_deg[j]) % 360.0
            if actuator.position >= 360.0:      # float32 rounding of 359.99999...
                actuator.position = 0.0
            actuator.velocity = self.v_deg[j]
            actuator.fault_bank_a = 1 if (self.fault_bank_a and j == 0) else 0
        return feedback

    def tool_position(self) -> tuple[float, float, float]:
        """The tool point the arm reports: FK of the user guide's DH table, then the
        configured tool transform's translation (m, base frame)."""
        q = np.radians(self.q_deg)
        t = np.eye(4)
        for theta, d, a, alpha, j in self._dh:
            th = theta + (q[j] if j is not None else 0.0)
            ct, st, ca, sa = math.cos(th), math.sin(th), math.cos(alpha), math.sin(alpha)
            t = t @ np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st],
                              [0.0, sa, ca, d], [0.0, 0.0, 0.0, 1.0]])
        offset = np.array([self.tool["x"], self.tool["y"], self.tool["z"], 1.0])
        x, y, z = (t @ offset)[:3]
        return float(x), float(y), float(z)

    def _ControlConfig_GetToolConfiguration(self, conn, _):
        from kortex_api.autogen.messages import ControlConfig_pb2

        config = ControlConfig_pb2.ToolConfiguration(tool_mass=self.tool["mass"])
        for key in ("x", "y", "z", "theta_x", "theta_y", "theta_z"):
            setattr(config.tool_transform, key, self.tool[key])
        return config

    def _ControlConfig_SetToolConfiguration(self, conn, config):
        for key in ("x", "y", "z", "theta_x", "theta_y", "theta_z"):
            self.tool[key] = getattr(config.tool_transform, key)
        self.tool["mass"] = config.tool_mass


@dataclass
class _Reply:
    frame_id: int
    payload: object
    error: Refused | None


_CURRENT = Gen3Double()


def reset(dof: int = 7, clock=time.monotonic) -> Gen3Double:
    """A fresh arm (call at the start of every test)."""
    global _CURRENT
    _CURRENT = Gen3Double(dof, clock)
    return _CURRENT


def current() -> Gen3Double:
    return _CURRENT
