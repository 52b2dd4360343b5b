# Over 600 lines: one class (Gen3Backend); see the docstring.
"""The real Kinova Gen3 backend of the driver bridge, through Kinova's Kortex Python API
(``kortex_api``, imported only when a Gen3Backend is made). The interface, the units and
the simulation backend are ``uvs_driver.backends``; ``make_backend("gen3", ...)`` builds
this one.

One class on purpose: the Kortex session, the servoing loop and the
fault handling share the connection state, its three locks, the watchdog thread and the
supervisor process, and read best in one place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from uvs_driver.backends import (
    GEN3_MAX_RATE,
    KORTEX_INSTALL_HINT,
    Backend,
    BackendError,
    KortexMissingError,
    Reading,
    unwrap_to,
)

__all__ = ["Gen3Backend"]


class Gen3Backend(Backend):
    """A Kinova Gen3 through Kinova's Kortex Python API (``kortex_api``), high-level servoing.

    On construction: TCP transport to ``ip:tcp_port``, a RouterClient, a
    session (username, password, inactivity timeouts in ms), BaseClient, and
    BaseCyclicClient for feedback (over UDP ``udp_port`` with a session of its
    own, as Kinova's examples do, or over the TCP router when ``udp_port`` is
    0), single-level servoing mode, the actuator count, and (unless
    ``tool_offset`` is None) the arm's tool configuration against
    ``tool_offset``. Anything failing on the way closes what was opened.

    Every RPC carries ``RouterClientSendOptions.timeout_ms``: about one tick
    (``tick_period``) in the loop, ``setup_timeout_ms`` while connecting.
    Timeouts, refusals, client errors and socket errors all become
    BackendError. A feedback read is retried once (a lost UDP datagram).

    Commands go out as ``Base_pb2.JointSpeeds`` in deg/s (0-based joint
    identifiers, duration 0: the speed holds until the next command or Stop).
    A zero command after motion sends one ``Base.Stop`` (as Kinova's examples
    end motion); while the arm is idle nothing is sent, so the Web App and the
    joystick keep control of an idle arm. A watchdog thread of the backend
    sends Stop when the arm is moving and no command came for
    ``watchdog_timeout`` s (3 ticks), whatever the caller's thread is doing.
    When Stop cannot go out on the session's connection (a broken socket), it is
    sent over a fresh connection.

    With ``supervisor`` (the driver's default), a child process
    (:mod:`uvs_driver.supervisor`) opens a Kortex session of its own and sends Stop
    when the arm was commanded to move and :meth:`command` / :meth:`read_state` (the
    driver's ticks) went silent for ``supervisor_timeout`` s (2 ticks): it is not
    frozen with this process (SIGSTOP, a debugger). It exits when this process dies
    (after a final Stop) or at :meth:`close`. ``supervisor_stops`` counts its Stops.

    Feedback positions (deg, 0..360) become rad, limited joints wrapped to
    (-pi, pi], continuous joints (``continuous``) unwrapped against the previous
    reading; velocities are the measured ones. The task state is the tool
    position ``tool_pose_x/y/z`` (m, base frame), task name "reach".

    joint_names: (n,) names for the actuators, in actuator order (n must equal
    the arm's actuator count). kortex_api is imported here only, so the rest
    of the driver runs without it; KortexMissingError says how to install it.
    """

    has_faults = True
    concurrent_home = True
    task_name = "reach"
    labels = ("x", "y", "z")
    max_rate = GEN3_MAX_RATE
    #: the stored action ``home(timeout)`` runs when given no pose
    home_action_name = "Home"

    def __init__(self, joint_names, ip: str = "192.168.1.10", tcp_port: int = 10000,
                 udp_port: int = 10001, username: str = "admin", password: str = "admin",
                 session_inactivity_timeout_ms: int = 60000,
                 connection_inactivity_timeout_ms: int = 2000,
                 close_timeout_ms: int = 1000, setup_timeout_ms: int = 2000,
                 tick_period: float = 0.05, continuous=None,
                 tool_offset: float | None = None, tool_tolerance: float = 0.001,
                 clear_timeout: float = 3.0, supervisor: bool = False) -> None:
        try:
            from kortex_api.autogen.client_stubs.BaseClientRpc import BaseClient
            from kortex_api.autogen.client_stubs.BaseCyclicClientRpc import BaseCyclicClient
            from kortex_api.autogen.client_stubs.ControlConfigClientRpc import (
                ControlConfigClient,
            )
            from kortex_api.autogen.messages import Base_pb2, Common_pb2, Errors_pb2, Session_pb2
            from kortex_api.Exceptions.KClientException import KClientException
            from kortex_api.Exceptions.KServerException import KServerException
            from kortex_api.RouterClient import RouterClient, RouterClientSendOptions
            from kortex_api.SessionManager import SessionManager
            from kortex_api.TCPTransport import TCPTransport
            from kortex_api.UDPTransport import UDPTransport
        except ImportError as exc:
            raise KortexMissingError(f"{KORTEX_INSTALL_HINT} ({exc})") from exc

        self.joint_names = tuple(joint_names)
        self.continuous = (np.zeros(self.n, dtype=bool) if continuous is None
                           else np.asarray(continuous, dtype=bool))
        self.ip = ip
        self._pb2, self._common, self._errors_pb2 = Base_pb2, Common_pb2, Errors_pb2
        self._send_options = RouterClientSendOptions
        self._kserver, self._kclient = KServerException, KClientException
        self._kortex = (TCPTransport, RouterClient, SessionManager, Session_pb2, BaseClient)
        self._login = (username, password, int(session_inactivity_timeout_ms),
                       int(connection_inactivity_timeout_ms))
        self._tcp_port = int(tcp_port)
        self._close_timeout_ms = int(close_timeout_ms)
        self._setup_timeout_ms = int(setup_timeout_ms)
        self._clear_timeout = float(clear_timeout)
        self.rpc_timeout_ms = 50
        self.watchdog_timeout = 0.15
        self.supervisor_timeout = 0.1
        self._supervisor = None   # uvs_driver.supervisor.SupervisorProcess when started
        self.set_tick_period(tick_period)
        #: client-side errors the Kortex router reported asynchronously (latest last)
        self.router_errors: list[str] = []
        #: Stops the watchdog sent; ``on_watchdog_stop(seconds_since_last_command)`` is
        #: called after each (from the watchdog thread).
        self.watchdog_stops = 0
        self.on_watchdog_stop: Callable[[float], None] | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        # Orders motion RPCs (tick, services, watchdog) on the command connection.
        self._motion_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._moving = False           # speeds were sent and no Stop since
        self._fed = time.monotonic()   # last command() call
        self._lost: str | None = None  # why the command connection is unusable
        self._q: np.ndarray | None = None
        self._closing = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._fresh_stop: tuple[threading.Thread, list] | None = None
        #: s a caller waits for a Stop over a new connection (it goes on in the background)
        self.fresh_stop_timeout = 0.5
        # (transport, router, session manager or None) per connection, closed in reverse.
        self._connections: list[tuple[object, object, object | None]] = []
        try:
            router = self._connect(TCPTransport, ip, tcp_port, self._setup_timeout_ms)
            feedback_router = router
            if udp_port:
                feedback_router = self._connect(UDPTransport, ip, udp_port,
                                                self._setup_timeout_ms)
            self._base = BaseClient(router)
            self._cyclic = BaseCyclicClient(feedback_router)
            self._control = ControlConfigClient(router)
            self._set_single_level(self._setup_timeout_ms)
            actuators = self._call("GetActuatorCount", self._base.GetActuatorCount,
                                   timeout_ms=self._setup_timeout_ms).count
            if actuators != self.n:
                raise BackendError(f"Gen3 at {ip}: the arm has {actuators} actuators, the "
                                   f"robot description {self.n} joints {list(self.joint_names)}",
                                   kind="config")
            if tool_offset is not None:
                self._check_tool(float(tool_offset), float(tool_tolerance))
            self.read_state()
            if supervisor:
                self._start_supervisor()
        except BaseException as exc:
            self._disconnect()
            if isinstance(exc, BackendError):
                raise
            if isinstance(exc, (KServerException, KClientException, OSError)):
                raise BackendError(f"Gen3 at {ip}: connection failed: {exc}",
                                   kind="connection") from exc
            raise
        self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                          name="gen3-watchdog")
        self._watchdog.start()

    # ------------------------------------------------------------------ supervisor

    def _start_supervisor(self) -> None:
        from uvs_driver.supervisor import SupervisorError, SupervisorProcess

        username, password, session_ms, connection_ms = self._login
        settings = dict(ip=self.ip, tcp_port=self._tcp_port, username=username,
                        password=password, session_inactivity_timeout_ms=session_ms,
                        connection_inactivity_timeout_ms=connection_ms,
                        setup_timeout_ms=self._setup_timeout_ms,
                        stop_timeout_ms=max(self.rpc_timeout_ms, 200))
        try:
            self._supervisor = SupervisorProcess(settings, self.supervisor_timeout)
        except (SupervisorError, OSError) as exc:
            raise BackendError(f"Gen3 at {self.ip}: {exc}", kind="supervisor") from exc
        self._supervisor.set_moving(self._moving)

    @property
    def _moving(self) -> bool:
        """Joint speeds were sent and no Stop since (mirrored to the supervisor)."""
        return self.__moving

    @_moving.setter
    def _moving(self, moving: bool) -> None:
        self.__moving = moving
        if self._supervisor is not None:
            self._supervisor.set_moving(moving)

    @property
    def supervisor_pid(self) -> int | None:
        """Process id of the supervisor, None when there is none."""
        return None if self._supervisor is None else self._supervisor.pid

    @property
    def supervisor_stops(self) -> int:
        """How many Stops the supervisor process sent (0 without one)."""
        return 0 if self._supervisor is None else self._supervisor.stops

    @property
    def supervisor_last_age(self) -> float:
        """s since the driver's last tick when the supervisor's latest Stop went out."""
        return 0.0 if self._supervisor is None else self._supervisor.last_stop_age

    def supervisor_alive(self) -> bool | None:
        """Whether the supervisor process runs (None: none was asked for)."""
        return None if self._supervisor is None else self._supervisor.alive()

    def _beat(self) -> None:
        if self._supervisor is not None:
            self._supervisor.beat()

    # ------------------------------------------------------------------ connection

    def _options(self, timeout_ms: int):
        options = self._send_options()
        options.timeout_ms = int(timeout_ms)
        return options

    def _connect(self, transport_cls, ip, port, timeout_ms: int):
        _, router_cls, session_cls, session_pb2, _ = self._kortex
        transport = transport_cls()
        router = router_cls(transport, self._on_router_error)
        self._connections.append((transport, router, None))
        transport.connect(ip, int(port))
        session = session_cls(router, self._on_connection_timeout)
        session.CreateSession(self._session_info(session_pb2), self._options(timeout_ms))
        self._connections[-1] = (transport, router, session)
        return router

    def _session_info(self, session_pb2):
        username, password, session_ms, connection_ms = self._login
        info = session_pb2.CreateSessionInfo()
        info.username = username
        info.password = password
        info.session_inactivity_timeout = session_ms
        info.connection_inactivity_timeout = connection_ms
        return info

    def _on_router_error(self, exception) -> None:
        self.router_errors = [*self.router_errors[-9:], str(exception)]

    def _on_connection_timeout(self) -> None:
        self._lost = self._lost or "no answer from the arm for the session inactivity timeout"

    def _disconnect(self) -> list[str]:
        """Close every session, then disconnect every transport, each in its own try, so
        one dead socket does not leave the others open. Returns what failed."""
        failures = []
        while self._connections:
            transport, router, session = self._connections.pop()
            kind = type(transport).__name__
            if session is not None:
                try:
                    session.CloseSession(self._options(self._close_timeout_ms))
                except (self._kserver, self._kclient, OSError) as exc:
                    failures.append(f"{kind} CloseSession: {exc}")
            try:
                router.SetActivationStatus(False)
                transport.disconnect()
            except OSError as exc:
                failures.append(f"{kind} disconnect: {exc}")
        return failures

    def _call(self, what: str, fn, *args, timeout_ms: int | None = None, retries: int = 0):
        """``fn(*args, options=...)`` with a timeout; every failure becomes BackendError."""
        timeout_ms = self.rpc_timeout_ms if timeout_ms is None else int(timeout_ms)
        options = self._options(timeout_ms)
        for attempt in range(retries + 1):
            try:
                return fn(*args, options=options)
            except TimeoutError as exc:   # concurrent.futures.TimeoutError (an OSError)
                if attempt == retries:
                    tries = f" ({retries + 1} tries)" if retries else ""
                    raise BackendError(f"Gen3 at {self.ip}: {what}: no answer within "
                                       f"{timeout_ms} ms{tries}", kind="timeout") from exc
            except self._kserver as exc:
                sub = exc.get_error_sub_code()
                raise BackendError(
                    f"Gen3 at {self.ip}: {what} refused: {self._sub_name(sub)} "
                    f"({str(exc).strip()})", kind="refused", sub_code=sub) from exc
            except self._kclient as exc:
                raise BackendError(f"Gen3 at {self.ip}: {what} failed in the Kortex client: "
                                   f"{exc}", kind="client") from exc
            except OSError as exc:        # BrokenPipeError, ConnectionResetError, ...
                raise BackendError(f"Gen3 at {self.ip}: {what}: connection broken: {exc}",
                                   kind="connection") from exc
        raise AssertionError("unreachable")

    def _sub_name(self, sub: int) -> str:
        try:
            return self._errors_pb2.SubErrorCodes.Name(sub)
        except ValueError:
            return f"sub error {sub}"

    def _set_single_level(self, timeout_ms: int | None = None) -> None:
        mode = self._pb2.ServoingModeInformation()
        mode.servoing_mode = self._pb2.SINGLE_LEVEL_SERVOING
        self._call("SetServoingMode", self._base.SetServoingMode, mode, timeout_ms=timeout_ms)

    def _check_tool(self, tool_offset: float, tolerance: float) -> None:
        """The arm reports tool_pose_x/y/z at its configured tool frame; the model's tool
        point is ``tool_offset`` m along the flange's z. They must be the same point."""
        config = self._call("GetToolConfiguration", self._control.GetToolConfiguration,
                            timeout_ms=self._setup_timeout_ms)
        t = config.tool_transform
        offset = np.array([t.x, t.y, t.z - tool_offset])
        if np.max(np.abs(offset)) > tolerance:
            raise BackendError(
                f"Gen3 at {self.ip}: the arm's tool frame is at x={t.x:.4f} y={t.y:.4f} "
                f"z={t.z:.4f} m from the interface module (ControlConfig tool configuration), "
                f"but the robot description's tool point is tool_offset={tool_offset:.4f} m "
                "along z: the reported tool position would not be the model's. Set the tool "
                "in the Kortex Web App (or ControlConfig.SetToolConfiguration) or use a robot "
                "description with the matching tool_offset", kind="config")

    def set_tick_period(self, period: float) -> None:
        """RPC timeout = one tick (10..1000 ms); watchdog = 3 ticks; supervisor = 2 ticks."""
        self.rpc_timeout_ms = int(min(max(round(1000.0 * period), 10), 1000))
        self.watchdog_timeout = 3.0 * float(period)
        self.supervisor_timeout = 2.0 * float(period)
        if self._supervisor is not None:
            self._supervisor.set_timeout(self.supervisor_timeout)

    # ------------------------------------------------------------------ state

    def read_state(self) -> Reading:
        """q (n,) rad (continuous joints unwrapped), x (3,) m tool position in the base
        frame, qdot (n,) rad/s measured, fault from the arm state and fault banks."""
        self._beat()
        feedback = self._call("RefreshFeedback", self._cyclic.RefreshFeedback, retries=1)
        actuators = feedback.actuators
        if len(actuators) < self.n:
            raise BackendError(f"Gen3 at {self.ip}: feedback has {len(actuators)} actuators, "
                               f"expected {self.n}", kind="config")
        deg = np.array([actuators[i].position for i in range(self.n)], dtype=float)
        vel = np.array([actuators[i].velocity for i in range(self.n)], dtype=float)
        q = unwrap_to(np.deg2rad(deg), self._q, self.continuous)
        self._q = q
        base = feedback.base
        x = np.array([base.tool_pose_x, base.tool_pose_y, base.tool_pose_z], dtype=float)
        return Reading(q, x, np.deg2rad(vel), self._fault(feedback))

    def _fault(self, feedback) -> str | None:
        if self._lost:
            return f"connection lost: {self._lost}"
        common = self._common
        state = feedback.base.active_state
        if state in (common.ARMSTATE_SERVOING_READY, common.ARMSTATE_SERVOING_PLAYING_SEQUENCE,
                     common.ARMSTATE_SERVOING_MANUALLY_CONTROLLED):
            banks = [(i, a.fault_bank_a, a.fault_bank_b)
                     for i, a in enumerate(feedback.actuators) if a.fault_bank_a or a.fault_bank_b]
            if feedback.base.fault_bank_a or feedback.base.fault_bank_b or banks:
                return (f"fault banks set (base a={feedback.base.fault_bank_a:#x} "
                        f"b={feedback.base.fault_bank_b:#x}, actuators {banks})")
            return None
        try:
            name = common.ArmState.Name(state)
        except ValueError:
            name = f"arm state {state}"
        return f"{name} (base fault bank a={feedback.base.fault_bank_a:#x})"

    # ------------------------------------------------------------------ motion

    def command(self, qdot: np.ndarray) -> None:
        """Send joint speeds ``qdot: (n,) rad/s`` (as deg/s, duration 0); all zeros after
        motion sends one Stop, all zeros while idle sends nothing."""
        qdot = np.asarray(qdot, dtype=float)
        if qdot.shape != (self.n,) or not np.all(np.isfinite(qdot)):
            raise ValueError(f"command must be {self.n} finite velocities, got {qdot}")
        self._beat()
        with self._state_lock:
            self._fed = time.monotonic()
        if not np.any(qdot):
            if self._moving:
                self.stop()
            return
        if self._lost:
            raise BackendError(f"Gen3 at {self.ip}: not commanding: {self._lost}",
                               kind="connection")
        speeds = self._pb2.JointSpeeds()
        for i, value in enumerate(np.rad2deg(qdot)):
            speed = speeds.joint_speeds.add()
            speed.joint_identifier = i
            speed.value = float(value)
            speed.duration = 0
        with self._motion_lock:
            self._moving = True   # before sending: a lost answer may still mean it moves
            self._call_motion("SendJointSpeedsCommand", self._base.SendJointSpeedsCommand,
                              speeds)

    def _call_motion(self, what, fn, *args):
        try:
            return self._call(what, fn, *args)
        except BackendError as exc:
            if exc.kind == "connection":
                self._lost = self._lost or f"command connection broken ({exc})"
            raise

    def stop(self) -> None:
        """Base.Stop; over a fresh connection when the session's connection is broken."""
        self._send_stop(self._motion_lock)

    def _send_stop(self, lock: threading.Lock, lock_timeout: float = -1) -> None:
        # A stuck holder of the lock must not keep a Stop from going out (the watchdog
        # passes a timeout; the router itself takes concurrent requests).
        locked = lock.acquire(timeout=lock_timeout)
        try:
            if not self._lost:
                try:
                    self._call_motion("Stop", self._base.Stop)
                except BackendError as exc:
                    if exc.kind == "refused" and exc.sub_code == self._errors_pb2.ROBOT_NOT_MOVING:
                        pass     # nothing to stop
                    elif exc.kind != "connection":
                        raise
            if self._lost:
                self._stop_over_new_connection_within()
            self._moving = False
        finally:
            if locked:
                lock.release()

    def _stop_over_new_connection_within(self) -> None:
        """:meth:`_stop_over_new_connection` in a thread of its own, waited for at most
        ``fresh_stop_timeout`` s: a TCP connect to an arm that is gone can block for the
        operating system's connect timeout, and the caller (a tick) must not."""
        if self._fresh_stop is None or not self._fresh_stop[0].is_alive():
            outcome: list[BackendError | None] = []

            def run() -> None:
                try:
                    self._stop_over_new_connection()
                    outcome.append(None)
                except BackendError as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=run, daemon=True, name="gen3-fresh-stop")
            self._fresh_stop = (thread, outcome)
            thread.start()
        thread, outcome = self._fresh_stop
        thread.join(self.fresh_stop_timeout)
        if thread.is_alive():
            raise BackendError(f"Gen3 at {self.ip}: Stop over a new connection not done "
                               f"within {self.fresh_stop_timeout:g} s (still trying); the "
                               f"command connection was lost: {self._lost}", kind="connection")
        if outcome and outcome[0] is not None:
            raise outcome[0]

    def _stop_over_new_connection(self) -> None:
        """Open a new TCP session only to send Stop, then close it (all with short
        timeouts): the arm must stop even when the session's socket is dead."""
        tcp_cls, router_cls, session_cls, session_pb2, base_cls = self._kortex
        transport = tcp_cls()
        router = router_cls(transport, self._on_router_error)
        session = None
        timeout_ms = max(self.rpc_timeout_ms, 200)
        try:
            transport.connect(self.ip, self._tcp_port)
            session = session_cls(router, self._on_connection_timeout)
            session.CreateSession(self._session_info(session_pb2), self._options(timeout_ms))
            base_cls(router).Stop(options=self._options(timeout_ms))
        except (self._kserver, self._kclient, OSError) as exc:   # incl. TimeoutError
            raise BackendError(f"Gen3 at {self.ip}: Stop over a new connection failed "
                               f"({exc}); the command connection was lost: {self._lost}",
                               kind="connection") from exc
        finally:
            if session is not None:
                session.CloseSession(self._options(timeout_ms))
            router.SetActivationStatus(False)
            try:
                transport.disconnect()
            except OSError:
                pass   # the Stop is what mattered

    def _watch(self) -> None:
        """Backend watchdog thread: Stop when moving and no command for watchdog_timeout."""
        while not self._closing.is_set():
            with self._state_lock:
                silent = time.monotonic() - self._fed
                due = self._moving and silent > self.watchdog_timeout
            if due:
                try:
                    self._send_stop(self._motion_lock, lock_timeout=self.watchdog_timeout)
                except BackendError:
                    self._closing.wait(self.watchdog_timeout)   # retry, not in a busy loop
                    continue
                self.watchdog_stops += 1
                if self.on_watchdog_stop is not None:
                    self.on_watchdog_stop(silent)
                continue
            wait = self.watchdog_timeout - silent if self._moving else self.watchdog_timeout
            self._closing.wait(min(max(wait, 0.002), self.watchdog_timeout))

    def clear_faults(self) -> None:
        """ClearFaults, then wait (``clear_timeout``) until the arm leaves the fault state,
        and put it back in single-level servoing if the fault clearing left it elsewhere."""
        self._call("ClearFaults", self._base.ClearFaults)
        deadline = time.monotonic() + self._clear_timeout
        fault_state = self._common.ARMSTATE_IN_FAULT
        while self._call("GetArmState", self._base.GetArmState).active_state == fault_state:
            if time.monotonic() > deadline:
                raise BackendError(
                    f"Gen3 at {self.ip}: still ARMSTATE_IN_FAULT {self._clear_timeout:g} s "
                    "after ClearFaults: the cause persists (see the fault banks in the Web "
                    "App)", kind="fault")
            time.sleep(0.02)
        mode = self._call("GetServoingMode", self._base.GetServoingMode).servoing_mode
        if mode != self._pb2.SINGLE_LEVEL_SERVOING:
            self._set_single_level()
        state = self._call("GetArmState", self._base.GetArmState).active_state
        if state != self._common.ARMSTATE_SERVOING_READY:
            raise BackendError(f"Gen3 at {self.ip}: after ClearFaults the arm is "
                               f"{self._common.ArmState.Name(state)}, not ready", kind="fault")

    def home(self, timeout: float, q: np.ndarray | None = None) -> None:
        """Move to ``q: (n,) rad`` with a joint-angle action, or (q None) run the arm's
        stored action ``home_action_name`` (Kinova's "Home"); wait for its end (END, or
        ABORT / PREPROCESS_ABORT with the reason) at most ``timeout`` s."""
        pb2 = self._pb2
        if q is None:
            requested = pb2.RequestedActionType()
            requested.action_type = pb2.REACH_JOINT_ANGLES
            actions = self._call("ReadAllActions", self._base.ReadAllActions, requested)
            name = self.home_action_name
            handle = next((a.handle for a in actions.action_list if a.name == name), None)
            if handle is None:
                raise BackendError(f"Gen3 at {self.ip}: no stored joint-angle action named "
                                   f"{name!r}", kind="config")
            what, execute, arg = name, self._base.ExecuteActionFromReference, handle
        else:
            action = pb2.Action()
            action.name = "uvs home"
            for i, value in enumerate(np.mod(np.rad2deg(np.asarray(q, dtype=float)), 360.0)):
                angle = action.reach_joint_angles.joint_angles.joint_angles.add()
                angle.joint_identifier = i
                angle.value = float(value)
            what, execute, arg = "the home pose", self._base.ExecuteAction, action
        ended = threading.Event()
        outcome: list = []
        final = (pb2.ACTION_END, pb2.ACTION_ABORT, pb2.ACTION_PREPROCESS_ABORT)

        def on_action(notification) -> None:
            if notification.action_event in final and not ended.is_set():
                outcome.append((notification.action_event, notification.abort_details))
                ended.set()

        self._moving = False
        subscription = self._call("OnNotificationActionTopic",
                                  self._base.OnNotificationActionTopic, on_action,
                                  pb2.NotificationOptions())
        try:
            self._call(f"ExecuteAction ({what})", execute, arg)
            finished = ended.wait(timeout)
        finally:
            try:
                self._call("Unsubscribe", self._base.Unsubscribe, subscription)
            except BackendError:
                pass   # the notification handle dies with the session anyway
        if not finished:
            self.stop()
            raise BackendError(f"Gen3 at {self.ip}: {what} did not finish within {timeout:g} "
                               "s; stopped", kind="timeout")
        event, details = outcome[0]
        if event != pb2.ACTION_END:
            raise BackendError(
                f"Gen3 at {self.ip}: {what} ended with {pb2.ActionEvent.Name(event)}: "
                f"{self._sub_name(details)}", kind="refused", sub_code=details)

    def close(self) -> None:
        """Stop the watchdog, Stop the arm, close the sessions and disconnect, each step
        even when an earlier one fails; BackendError lists what failed."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=1.0)
        failures = []
        try:
            self.stop()
        except BackendError as exc:
            failures.append(str(exc))
        if self._supervisor is not None:
            code = self._supervisor.close()
            if code != 0:
                failures.append(f"the supervisor process exited with {code}")
        failures += self._disconnect()
        if failures:
            raise BackendError(f"Gen3 at {self.ip}: closing: {'; '.join(failures)}",
                               kind="connection")
