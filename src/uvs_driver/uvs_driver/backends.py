"""Arm backends of the driver bridge: a kinematic simulation or a real Kinova Gen3.

No rclpy here: the driver node owns the ROS side and calls one of these.
Every backend speaks the same units and order:

- joint positions ``q: (n,) rad`` and commands ``qdot: (n,) rad/s`` in the
  order of ``joint_names`` (the order of ``/joint_states``);
- task state ``x: (m,)`` in the units of ``task_name`` (m or px), or None.

A backend does not limit velocities or watch for stale commands; the driver
node does both before calling :meth:`Backend.command`.
"""

from __future__ import annotations

import abc
import threading

import numpy as np

from uvs_core.sim import Simulation
from uvs_core.tasks import Task

__all__ = [
    "BACKEND_NAMES",
    "KORTEX_INSTALL_HINT",
    "Backend",
    "BackendError",
    "Gen3Backend",
    "KortexMissingError",
    "SimBackend",
    "make_backend",
    "wrap_to_pi",
]

BACKEND_NAMES = ("sim", "gen3")

KORTEX_INSTALL_HINT = (
    "the gen3 backend needs Kinova's Kortex Python API (module 'kortex_api'), which is not on "
    "PyPI: download kortex_api-2.6.0.post3-py3-none-any.whl from Kinova's site "
    "(github.com/Kinovarobotics/kortex, 'Download links') and install it with "
    "'pip install --no-deps kortex_api-2.6.0.post3-py3-none-any.whl protobuf==3.20.3' "
    "(--no-deps: the wheel pins protobuf 3.5.1, which fails on Python >= 3.10). "
    "The PyPI packages named 'kortex' and 'proto-kortex' are unrelated"
)


class BackendError(RuntimeError):
    """The arm refused or failed a request; the message says which and why."""


class KortexMissingError(BackendError, ImportError):
    """kortex_api is not installed; the message says how to install it."""


def wrap_to_pi(angle: np.ndarray) -> np.ndarray:
    """Wrap angles to (-pi, pi]. angle: (...,) rad -> (...,) rad."""
    angle = np.asarray(angle, dtype=float)
    return np.pi - np.mod(np.pi - angle, 2.0 * np.pi)


class Backend(abc.ABC):
    """One arm, commanded with joint velocities.

    Attributes:
        joint_names: (n,) joint names, the order of q and qdot.
        task_name: name carried by the task state (TaskState.task).
        labels: (m,) names of the components of x.
        has_faults: the arm has faults that ``clear_faults`` can clear.
        concurrent_home: ``home`` may run in one thread while ``read`` runs in
            another (a real arm moving home for seconds); otherwise the driver
            serialises ``home`` with its ticks.
    """

    joint_names: tuple[str, ...] = ()
    task_name: str = ""
    labels: tuple[str, ...] = ()
    has_faults = False
    concurrent_home = False

    @property
    def n(self) -> int:
        """Number of joints."""
        return len(self.joint_names)

    @abc.abstractmethod
    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Current state: (q (n,) rad, x (m,) or None when the task state is unknown)."""

    @abc.abstractmethod
    def command(self, qdot: np.ndarray) -> None:
        """Hold joint velocities ``qdot: (n,) rad/s`` until the next command or stop."""

    def step(self, dt: float) -> None:  # noqa: B027 - a real arm moves by itself
        """Advance a simulated arm by ``dt`` s under the held command; no-op on real arms."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop all motion now (zero velocity)."""

    @abc.abstractmethod
    def home(self, timeout: float) -> None:
        """Move to the home pose within ``timeout`` s; BackendError when it cannot."""

    def clear_faults(self) -> None:  # noqa: B027 - only real arms have faults
        """Clear the arm's faults; nothing to do for a simulated arm."""

    def close(self) -> None:
        """Stop and release the arm; safe to call twice."""
        self.stop()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class SimBackend(Backend):
    """The kinematic simulation q(t + dt) = q(t) + dt * qdot of ``uvs_core.sim`` (paper IV-A).

    Commands are full-length (n,) vectors in ``joint_names`` order. A task with
    k < n active joints (visual_servo) keeps the others at its ``q_fixed``:
    :meth:`command` rejects (ValueError) a nonzero velocity on an inactive
    joint rather than silently dropping part of the command; the driver node
    checks this before calling, so the whole command is refused and logged.

    task: the Task simulated (x = task.x_from_q(q)). dt: s, default step.
    """

    concurrent_home = False

    def __init__(self, task: Task, dt: float = 0.05) -> None:
        self.task = task
        self.robot = task.robot
        self.joint_names = tuple(self.robot.joint_names)
        self.task_name = task.name
        self.labels = tuple(task.labels)
        self.active_mask = np.zeros(self.robot.n, dtype=bool)
        self.active_mask[task.active] = True
        self._sim = Simulation(task, dt=dt)
        self._qdot = np.zeros(self.robot.n)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(q (n,) rad, x (m,) task state of the model)."""
        return self._sim.q[0].copy(), self._sim.x[0].copy()

    def command(self, qdot: np.ndarray) -> None:
        qdot = np.asarray(qdot, dtype=float)
        if qdot.shape != (self.robot.n,):
            raise ValueError(f"command must have {self.robot.n} velocities, got {qdot.shape}")
        if not np.all(np.isfinite(qdot)):
            raise ValueError("command has NaN or Inf")
        if np.any(qdot[~self.active_mask] != 0.0):
            raise ValueError(f"task {self.task.name} does not drive joints "
                             f"{[n for n, a in zip(self.joint_names, self.active_mask) if not a]}")
        self._qdot = qdot.copy()

    def step(self, dt: float) -> None:
        """Integrate the held command for ``dt`` s (positions clipped to the joint limits)."""
        if dt != self._sim.dt:
            q = self._sim.q[0].copy()
            self._sim = Simulation(self.task, dt=dt)
            self._sim.reset(q)
        self._sim.step(self._qdot[self.task.active])

    def stop(self) -> None:
        self._qdot = np.zeros(self.robot.n)

    def home(self, timeout: float) -> None:
        """Jump to the task's home (``task.q_fixed``) at once and stop."""
        self.stop()
        self._sim.reset()


class Gen3Backend(Backend):
    """A Kinova Gen3 through Kinova's Kortex Python API (``kortex_api``), high-level servoing.

    On construction: TCP transport to ``ip:tcp_port``, a RouterClient, a
    session (username, password, inactivity timeouts in ms), BaseClient, and
    BaseCyclicClient for feedback (over UDP ``udp_port`` with a session of its
    own, as Kinova's examples do, or over the TCP router when ``udp_port`` is
    0), then single-level servoing mode. Anything failing on the way closes
    what was opened.

    Commands go out as ``Base_pb2.JointSpeeds`` in deg/s (0-based joint
    identifiers, duration 0: the speed holds until the next command or Stop,
    so the driver's watchdog must send zeros). Feedback positions (deg,
    0..360) are wrapped to (-pi, pi] rad. The task state is the tool position
    ``tool_pose_x/y/z`` (m, base frame) reported by the arm, task name "reach".

    joint_names: (n,) names for the actuators, in actuator order (n must equal
    the arm's actuator count). kortex_api is imported here only, so the rest
    of the driver runs without it; KortexMissingError says how to install it.
    """

    has_faults = True
    concurrent_home = True
    task_name = "reach"
    labels = ("x", "y", "z")

    def __init__(self, joint_names, ip: str = "192.168.1.10", tcp_port: int = 10000,
                 udp_port: int = 10001, username: str = "admin", password: str = "admin",
                 session_inactivity_timeout_ms: int = 60000,
                 connection_inactivity_timeout_ms: int = 2000,
                 close_timeout_ms: int = 1000) -> None:
        try:
            from kortex_api.autogen.client_stubs.BaseClientRpc import BaseClient
            from kortex_api.autogen.client_stubs.BaseCyclicClientRpc import BaseCyclicClient
            from kortex_api.autogen.messages import Base_pb2, Session_pb2
            from kortex_api.Exceptions.KClientException import KClientException
            from kortex_api.Exceptions.KServerException import KServerException
            from kortex_api.RouterClient import RouterClient, RouterClientSendOptions
            from kortex_api.SessionManager import SessionManager
            from kortex_api.TCPTransport import TCPTransport
            from kortex_api.UDPTransport import UDPTransport
        except ImportError as exc:
            raise KortexMissingError(f"{KORTEX_INSTALL_HINT} ({exc})") from exc

        self.joint_names = tuple(joint_names)
        self._base_pb2 = Base_pb2
        self._send_options = RouterClientSendOptions
        self._close_timeout_ms = int(close_timeout_ms)
        # What the Kortex API raises on refused or failed calls.
        self._errors = (KServerException, KClientException)
        self._closed = False
        self._close_lock = threading.Lock()
        # (transport, session manager or None) per connection, closed in reverse order.
        self._connections: list[tuple[object, object | None]] = []
        self.ip = ip
        try:
            router = self._connect(TCPTransport, RouterClient, SessionManager, Session_pb2,
                                   ip, tcp_port, username, password,
                                   session_inactivity_timeout_ms,
                                   connection_inactivity_timeout_ms)
            feedback_router = router
            if udp_port:
                feedback_router = self._connect(UDPTransport, RouterClient, SessionManager,
                                                Session_pb2, ip, udp_port, username, password,
                                                session_inactivity_timeout_ms,
                                                connection_inactivity_timeout_ms)
            self._base = BaseClient(router)
            self._cyclic = BaseCyclicClient(feedback_router)
            mode = Base_pb2.ServoingModeInformation()
            mode.servoing_mode = Base_pb2.SINGLE_LEVEL_SERVOING
            self._base.SetServoingMode(mode)
            actuators = len(self._cyclic.RefreshFeedback().actuators)
            if actuators != self.n:
                raise BackendError(f"the arm at {ip} has {actuators} actuators, the robot "
                                   f"description {self.n} joints {list(self.joint_names)}")
        except BaseException as exc:
            self._disconnect()
            if isinstance(exc, self._errors):
                raise BackendError(f"Gen3 at {ip}: connection failed: {exc}") from exc
            raise

    def _connect(self, transport_cls, router_cls, session_cls, session_pb2, ip, port,
                 username, password, session_timeout_ms, connection_timeout_ms):
        transport = transport_cls()
        router = router_cls(transport, router_cls.basicErrorCallback)
        self._connections.append((transport, None))
        transport.connect(ip, int(port))
        info = session_pb2.CreateSessionInfo()
        info.username = username
        info.password = password
        info.session_inactivity_timeout = int(session_timeout_ms)
        info.connection_inactivity_timeout = int(connection_timeout_ms)
        session = session_cls(router)
        session.CreateSession(info)
        self._connections[-1] = (transport, session)
        return router

    def _disconnect(self) -> None:
        """Close every session, then disconnect every transport, even when one fails."""
        while self._connections:
            transport, session = self._connections.pop()
            try:
                if session is not None:
                    options = self._send_options()
                    options.timeout_ms = self._close_timeout_ms
                    session.CloseSession(options)
            except self._errors:
                pass  # the session dies with the transport anyway
            finally:
                transport.disconnect()

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except self._errors as exc:
            raise BackendError(f"Gen3 at {self.ip}: {what} failed: {exc}") from exc

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(q (n,) rad in (-pi, pi], x (3,) m tool position in the base frame)."""
        feedback = self._call("RefreshFeedback", self._cyclic.RefreshFeedback)
        deg = np.array([feedback.actuators[i].position for i in range(self.n)], dtype=float)
        base = feedback.base
        x = np.array([base.tool_pose_x, base.tool_pose_y, base.tool_pose_z], dtype=float)
        return wrap_to_pi(np.deg2rad(deg)), x

    def command(self, qdot: np.ndarray) -> None:
        """Send joint speeds ``qdot: (n,) rad/s`` (as deg/s, duration 0)."""
        qdot = np.asarray(qdot, dtype=float)
        if qdot.shape != (self.n,) or not np.all(np.isfinite(qdot)):
            raise ValueError(f"command must be {self.n} finite velocities, got {qdot}")
        speeds = self._base_pb2.JointSpeeds()
        for i, value in enumerate(np.rad2deg(qdot)):
            speed = speeds.joint_speeds.add()
            speed.joint_identifier = i
            speed.value = float(value)
            speed.duration = 0
        self._call("SendJointSpeedsCommand", self._base.SendJointSpeedsCommand, speeds)

    def stop(self) -> None:
        self._call("Stop", self._base.Stop)

    def clear_faults(self) -> None:
        self._call("ClearFaults", self._base.ClearFaults)

    def home(self, timeout: float) -> None:
        """Run the arm's stored "Home" action; wait for its end at most ``timeout`` s."""
        pb2 = self._base_pb2
        requested = pb2.RequestedActionType()
        requested.action_type = pb2.REACH_JOINT_ANGLES
        actions = self._call("ReadAllActions", self._base.ReadAllActions, requested)
        handle = next((a.handle for a in actions.action_list if a.name == "Home"), None)
        if handle is None:
            raise BackendError(f"Gen3 at {self.ip}: no stored action named 'Home'")
        ended = threading.Event()
        outcome: list[int] = []

        def on_action(notification) -> None:
            if notification.action_event in (pb2.ACTION_END, pb2.ACTION_ABORT):
                outcome.append(notification.action_event)
                ended.set()

        subscription = self._call("OnNotificationActionTopic",
                                  self._base.OnNotificationActionTopic, on_action,
                                  pb2.NotificationOptions())
        try:
            self._call("ExecuteActionFromReference", self._base.ExecuteActionFromReference,
                       handle)
            finished = ended.wait(timeout)
        finally:
            self._call("Unsubscribe", self._base.Unsubscribe, subscription)
        if not finished:
            self.stop()
            raise BackendError(f"Gen3 at {self.ip}: Home did not finish within {timeout:g} s; "
                               "stopped")
        if outcome[0] != pb2.ACTION_END:
            raise BackendError(f"Gen3 at {self.ip}: Home was aborted (faults? try clear_faults)")

    def close(self) -> None:
        """Stop the arm, close the sessions and disconnect, even when Stop fails."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.stop()
        finally:
            self._disconnect()


def make_backend(name: str, task: Task, dt: float, **gen3) -> Backend:
    """Backend by name: "sim" (SimBackend(task, dt)) or "gen3" (Gen3Backend(joint names of
    the task's robot, **gen3)). ValueError on an unknown name."""
    if name == "sim":
        return SimBackend(task, dt)
    if name == "gen3":
        return Gen3Backend(task.robot.joint_names, **gen3)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
