# Over 600 lines: one node class whose parameters, watchdog tick, services and safety reports
# share its state; the arm code is in backends.py / gen3_backend.py, the guards in uvs_core.safety.
"""Node ``driver``: the bridge between the ROS graph and an arm (simulated or a Kinova Gen3).

Topics (relative names, so a namespace applies):
- publishes ``joint_states`` (sensor_msgs/JointState): name, position (rad;
  continuous joints of a real arm unwrapped, no jump at +-pi), velocity (rad/s:
  measured on a real arm; in simulation the velocity integrated this tick),
  every tick at ``rate`` in which the arm could be read, also while it is in fault;
- publishes ``task_state`` (uvs_interfaces/TaskState), same header stamp as
  the joint state of the tick: sim, x of the task model; gen3, the tool
  position reported by the arm (task "reach");
- subscribes ``joint_velocity_command`` (std_msgs/Float64MultiArray, rad/s,
  ``joint_states`` order: the ros2_control forward-command convention);
- publishes ``~/safety`` (std_msgs/String, reliable, transient-local depth 1):
  ``ok``, or ``; ``-joined ``<kind>: <reason>`` for what the command path
  refused or zeroed since the last tick, kinds ``unit_error``, ``second_source``,
  ``joint_limit``, ``envelope``, ``backend_error`` (commands latched off after a
  failed command until ``~/clear_faults`` or ``~/home``), ``supervisor`` (gen3: the
  supervisor process stopped the arm because the ticks stopped, or it died);
  published when the set of kinds changes.

Commands with NaN/Inf, the wrong length or a nonzero velocity on a joint
the task does not drive are refused (warning, zero velocity). Accepted
commands are scaled as a whole vector (direction kept) so no joint exceeds
min(``max_joint_velocity``, its own limit); a command beyond
``unit_error_factor`` times a joint's own limit is refused as a likely units
bug (warning, zero), not capped. A watchdog commands zero when no command
arrived for ``command_timeout`` s (receipt time, monotonic clock), checked
every tick. While the arm reports a fault, zero is commanded.

One source at a time: the first publisher (by publisher GID) whose command is
accepted owns the command topic while its commands are fresh (within
``command_timeout``); commands from any other publisher meanwhile are refused
(warning, ``~/safety``) and do not feed the watchdog. Ownership passes on once
the owner has been silent for ``command_timeout``.

Every backend, every tick (uvs_core.safety.guard_command, at the last measured
q): a joint is not moved when ``q + qdot * lookahead`` would pass a position
limit less ``limit_margin``, and the whole command is zeroed when the tool point
predicted ``lookahead`` s ahead (robot FK) would leave the envelope
(``envelope``: the robot YAML's ``safety`` box and table, its box only, or off;
``auto`` = box and table on gen3, box only on the sim, whose tasks sample
targets below the table).

Any error of the arm or of the link to it (a refusal, an RPC timeout, a broken
socket) zeroes the command and sends Stop; the ticks go on reading and
publishing. The gen3 backend also stops the arm from a thread of its own when
the ticks stop, and (parameter ``supervisor``, on by default) from a process of
its own with a Kortex session of its own, which a frozen driver process does not
freeze (see uvs_driver.gen3_backend.Gen3Backend, uvs_driver.supervisor).

Services: ``~/home``, ``~/stop`` (std_srvs/Trigger), and ``~/clear_faults``
for the gen3 backend, each in a callback group of its own and apart from the
ticks, so Stop is answered while a real arm homes. Each tick: apply the
command, step the simulation by 1/rate s (sim), read the arm, publish.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import (
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from uvs_core.safety import (
    DEFAULT_LOOKAHEAD,
    DEFAULT_UNIT_ERROR_FACTOR,
    Envelope,
    guard_command,
    unit_error,
)
from uvs_core.sim import scale_velocity
from uvs_core.tasks import TASK_NAMES, make_task
from uvs_driver.backends import BACKEND_NAMES, MAX_RATE, BackendError, Reading, make_backend
from uvs_interfaces.msg import TaskState
from uvs_ros import run_node
from uvs_ros.params import Param, ParamSpec, non_negative, positive
from uvs_ros.qos import COMMAND_READER_QOS, LATCHED_QOS, STATE_QOS
from uvs_ros.robot_model import load_node_robot, robot_model_params, robot_model_reason

__all__ = ["DriverNode", "main"]

# s to wait at shutdown for reliable subscribers to acknowledge the last state.
_LAST_WORD_TIMEOUT = 0.5
# Paper IV-A: dt = 0.05 s, joint speed cap 1.22 rad/s.
DEFAULT_RATE = 20.0
DEFAULT_MAX_JOINT_VELOCITY = 1.22
_WARN_PERIOD = 1.0  # s between repeated warnings of one kind
# Threads of the gen3 executor: the ticks, ~/home (blocks while the arm moves), ~/stop,
# ~/clear_faults; each has a callback group of its own.
_GEN3_THREADS = 4


ENVELOPE_MODES = ("auto", "robot", "box", "off")


def _rate_reason(values: dict) -> str | None:
    backend, rate = values["backend"], values["rate"]
    if backend in MAX_RATE and rate > MAX_RATE[backend]:
        return (f"rate {rate:g} Hz is above what the {backend} backend can follow "
                f"({MAX_RATE[backend]:g} Hz)")
    return None


# The driver's parameters (uvs_ros.params); config/driver.yaml is checked against them.
SPEC = ParamSpec({
    "backend": Param("sim",
        "Arm backend: the kinematic simulation or a Kinova Gen3 through the Kortex API.",
        read_only=True, choices=BACKEND_NAMES),
    **robot_model_params("kinematics, limits, safety envelope"),
    "task": Param("single_point",
        "Task: which joints are driven and, in simulation, what task_state holds.",
        read_only=True, choices=TASK_NAMES),
    "rate": Param(DEFAULT_RATE,
        "Tick rate, Hz: publish states, apply commands; the simulation steps 1/rate s per tick. "
        f"gen3: at most {MAX_RATE['gen3']:g} Hz (high-level Kortex commands over TCP).",
        range=(0.0, MAX_RATE["sim"]), checks=(positive,)),
    "command_timeout": Param(0.1,
        "Watchdog, s: command zero when no command arrived for this long.",
        range=(0.0, 10.0), checks=(positive,)),
    "max_joint_velocity": Param(DEFAULT_MAX_JOINT_VELOCITY,
        "Joint speed cap, rad/s: a command is scaled as a whole vector so no joint exceeds "
        "min(this, the joint's own limit).", range=(0.0, 10.0), checks=(positive,)),
    "home_timeout": Param(30.0,
        "Longest wait for ~/home to reach the home pose, s.", range=(0.0, 600.0),
        checks=(positive,)),
    "home_action": Param("",
        "gen3: '' sends ~/home to the task's start pose (the pose the simulation homes to) "
        "with a joint-angle action; else the name of an action stored on the arm (e.g. "
        "'Home', Kinova's, which is neither the model's home nor the task's start pose)."),
    "envelope": Param("auto",
        "Safety envelope of the tool point: robot = the robot YAML's safety box and table, "
        "box = its box only, off = none; auto = robot on gen3, box on sim.",
        read_only=True, choices=ENVELOPE_MODES),
    "lookahead": Param(DEFAULT_LOOKAHEAD,
        "Look-ahead, s: joints that would pass a limit (less limit_margin), or a tool point "
        "that would leave the envelope, within this time at the commanded velocity are "
        "stopped (the paper's reference simulator: 10 steps, 0.5 s).",
        range=(0.0, 10.0), checks=(positive,)),
    "limit_margin": Param(0.02,
        "Joint guard, rad kept inside each joint limit (the Gen3 firmware's limits are "
        "about 0.01 rad inside the paper's).", range=(0.0, 1.0), checks=(non_negative,)),
    "unit_error_factor": Param(DEFAULT_UNIT_ERROR_FACTOR,
        "A command beyond this times a joint's own velocity limit is refused as a likely "
        "units bug (not capped).", range=(1.0, 100.0), checks=(positive,)),
    "robot_ip": Param("192.168.1.10",
        "gen3: the arm's IP address.", read_only=True),
    "tcp_port": Param(10000,
        "gen3: Kortex TCP port (high-level API).", read_only=True, range=(1, 65535)),
    "udp_port": Param(10001,
        "gen3: Kortex UDP port for cyclic feedback; 0 reads feedback over TCP.",
        read_only=True, range=(0, 65535)),
    "username": Param("admin", "gen3: Kortex user name.", read_only=True),
    "password": Param("admin", "gen3: Kortex password.", read_only=True),
    "session_inactivity_timeout": Param(60000,
        "gen3: session inactivity timeout, ms.", read_only=True, range=(0, 86400000)),
    "connection_inactivity_timeout": Param(2000,
        "gen3: connection inactivity timeout, ms: the arm stops the session's motion when the "
        "driver goes silent this long.", read_only=True, range=(0, 86400000)),
    "check_tool_configuration": Param(True,
        "gen3: refuse to start unless the arm's configured tool frame is the robot "
        "description's tool point (tool_offset along the flange z).", read_only=True),
    "supervisor": Param(True,
        "gen3: start a supervisor process with a Kortex session of its own that sends Stop "
        "when the arm moves and the driver's ticks stop for 2 ticks (a frozen process, "
        "SIGSTOP, a debugger); the driver refuses to start when it cannot. Ignored on sim.",
        read_only=True),
}, checks=(robot_model_reason, _rate_reason))

# Parameters applied at run time as the node attribute "_<name>" (rate restarts the timer).
_RUNTIME = ("command_timeout", "max_joint_velocity", "home_timeout", "lookahead",
            "limit_margin", "unit_error_factor", "home_action")


class DriverNode(Node):
    """The driver bridge. Keyword arguments go to rclpy's Node (context,
    parameter_overrides, namespace, ...); the node name defaults to ``driver``.

    Raises ValueError for invalid parameters (unknown backend, task, robot, a
    rate the backend cannot follow) and BackendError when the arm cannot be
    reached or is set up differently from the robot description.

    Attributes for supervisors: ``backend_error`` (the last error of the arm or
    its link, None before any), ``arm_fault`` (the arm's fault from the latest
    reading, None when it takes commands), ``rejected_commands``.
    """

    def __init__(self, node_name: str = "driver", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        p = self._params = SPEC.declare(self)
        backend_name = p["backend"]

        self.robot = load_node_robot(self, p["robot"])
        self.task = make_task(p["task"], self.robot)
        self._backend_name = backend_name
        self._rate = p["rate"]
        for name in _RUNTIME:
            setattr(self, "_" + name, p[name])
        mode = p["envelope"]
        if mode == "auto":
            mode = "robot" if p["backend"] == "gen3" else "box"
        self.envelope = {"robot": self.robot.envelope,
                         "box": self.robot.envelope.without_table(),
                         "off": Envelope()}[mode]
        self._envelope_mode = mode
        gen3 = {}
        if backend_name == "gen3":
            gen3 = dict(ip=p["robot_ip"], tcp_port=p["tcp_port"], udp_port=p["udp_port"],
                        username=p["username"], password=p["password"],
                        session_inactivity_timeout_ms=p["session_inactivity_timeout"],
                        connection_inactivity_timeout_ms=p["connection_inactivity_timeout"])
            if not p["check_tool_configuration"]:
                gen3["tool_offset"] = None
            gen3["supervisor"] = p["supervisor"]
        self.backend = make_backend(backend_name, self.task, 1.0 / self._rate, **gen3)
        self._closed = False
        n = self.backend.n
        self._active = np.zeros(n, dtype=bool)
        self._active[self.task.active] = True

        # Guards the command state and the backend between the tick, the
        # command subscription and the services (MultiThreadedExecutor).
        self._lock = threading.Lock()
        self._command = np.zeros(n)          # rad/s, last accepted command
        self._command_time: float | None = None  # time.monotonic() at its receipt
        self._watchdog_tripped = True
        self._homing = False
        self.rejected_commands = 0
        self.backend_error: str | None = None
        # A failed command (an RPC that timed out, a broken socket) leaves the arm's state
        # in doubt: commands are refused until an operator calls ~/clear_faults or ~/home.
        self.command_latch: str | None = None
        first = self.backend.read_state()
        self._q = first.q                    # rad, latest reading (the guard looks ahead of it)
        self.arm_fault: str | None = first.fault
        if hasattr(self.backend, "on_watchdog_stop"):
            self.backend.on_watchdog_stop = self._on_backend_watchdog
        self._source: bytes | None = None    # publisher GID owning the command topic
        self._events: dict[str, str] = {}     # kind -> reason since the last tick
        self._safety_kinds: tuple[str, ...] | None = None
        self.safety_status = ""
        self._supervisor_stops = getattr(self.backend, "supervisor_stops", 0)
        self._supervisor_lost = False

        # One group each, so no service waits for another or for a tick (a real arm's
        # Home runs for seconds; Stop must be answered meanwhile).
        self._tick_group = MutuallyExclusiveCallbackGroup()
        self._stop_group = MutuallyExclusiveCallbackGroup()
        self._home_group = MutuallyExclusiveCallbackGroup()
        self._clear_group = MutuallyExclusiveCallbackGroup()
        self._joint_pub = self.create_publisher(JointState, "joint_states", STATE_QOS)
        self._task_pub = self.create_publisher(TaskState, "task_state", STATE_QOS)
        self._safety_pub = self.create_publisher(String, "~/safety", LATCHED_QOS)
        # A deeper reader queue than COMMAND_QOS's depth 1 (compatible with it): with depth 1
        # a second publisher's message replaces the owner's before it is read, and the
        # intruder would starve the owner into a watchdog stop and take over.
        self._command_sub = self.create_subscription(
            Float64MultiArray, "joint_velocity_command", self._on_command, COMMAND_READER_QOS,
            callback_group=self._tick_group)
        self._home_srv = self.create_service(Trigger, "~/home", self._on_home,
                                             callback_group=self._home_group)
        self._stop_srv = self.create_service(Trigger, "~/stop", self._on_stop,
                                             callback_group=self._stop_group)
        self._clear_srv = None
        if self.backend.has_faults:
            self._clear_srv = self.create_service(Trigger, "~/clear_faults",
                                                  self._on_clear_faults,
                                                  callback_group=self._clear_group)
        self._timer = self.create_timer(1.0 / self._rate, self._tick,
                                        callback_group=self._tick_group)
        SPEC.watch(self, self._params, self._apply_parameters)
        self.get_logger().info(
            f"{backend_name} backend, robot {self.robot.name}, task {self.task.name} "
            f"(active joints {[self.robot.joint_names[i] for i in self.task.active]}), "
            f"{self._rate:g} Hz, watchdog {self._command_timeout:g} s, "
            f"cap {self._max_joint_velocity:g} rad/s, envelope {mode}, "
            f"look-ahead {self._lookahead:g} s")
        if self.arm_fault:
            self.get_logger().warning(f"the arm reports a fault: {self.arm_fault}; call "
                                      "~/clear_faults before commanding it")

    # ------------------------------------------------------------------ parameters

    def _apply_parameters(self, changed: set[str]) -> None:
        rate = self._params["rate"]
        if "rate" in changed and rate != self._rate:
            with self._lock:
                self._rate = rate
                self.backend.set_tick_period(1.0 / self._rate)
                self.destroy_timer(self._timer)
                self._timer = self.create_timer(1.0 / self._rate, self._tick,
                                                callback_group=self._tick_group)
        for name in changed & set(_RUNTIME):
            setattr(self, "_" + name, self._params[name])

    # ------------------------------------------------------------------ commands

    @property
    def velocity_limits(self) -> np.ndarray:
        """(n,) rad/s, the per-joint cap applied to commands."""
        return np.minimum(self._max_joint_velocity, self.robot.velocity_limits)

    def _command_problem(self, qdot: np.ndarray) -> str | None:
        if qdot.shape != (self.backend.n,):
            return (f"has {qdot.size} velocities, expected {self.backend.n} "
                    f"(joint_states order: {', '.join(self.backend.joint_names)})")
        if not np.all(np.isfinite(qdot)):
            bad = [self.backend.joint_names[i] for i in np.flatnonzero(~np.isfinite(qdot))]
            return f"has NaN or Inf for {', '.join(bad)}"
        inactive = np.flatnonzero((qdot != 0.0) & ~self._active)
        if inactive.size:
            names = ", ".join(self.backend.joint_names[i] for i in inactive)
            return f"moves {names}, which task {self.task.name} does not drive"
        beyond = unit_error(qdot, self.robot.velocity_limits, self._unit_error_factor)
        if beyond:
            worst = max(beyond, key=lambda i: abs(qdot[i]) / self.robot.velocity_limits[i])
            return (f"asks {abs(qdot[worst]):g} rad/s of {self.backend.joint_names[worst]}, "
                    f"over {self._unit_error_factor:g} x its limit "
                    f"{self.robot.velocity_limits[worst]:g} rad/s (units?)")
        return None

    def _on_command(self, msg: Float64MultiArray, info: dict) -> None:
        # Two parameters: rclpy passes the MessageInfo (publisher GID) along.
        qdot = np.asarray(msg.data, dtype=float)
        problem = self._command_problem(qdot)
        gid = info.get("publisher_gid") if info else None
        source = bytes(gid["data"]) if gid else None
        received = time.monotonic()
        intruder = False
        with self._lock:
            owner_fresh = (self._command_time is not None
                           and received - self._command_time <= self._command_timeout)
            if (source is not None and self._source is not None and source != self._source
                    and owner_fresh):
                intruder = True
                self.rejected_commands += 1
                self._events["second_source"] = (
                    "a second publisher on joint_velocity_command refused "
                    f"({self.count_publishers(self._command_sub.topic_name)} publishers)")
            else:
                self._source = source
                self._command_time = received
                if problem:
                    self._command = np.zeros(self.backend.n)
                    self.rejected_commands += 1
                    if problem.startswith("asks"):
                        self._events["unit_error"] = f"command {problem}; refused"
                else:
                    self._command = qdot.copy()
        if intruder:
            self.get_logger().warning(
                "joint_velocity_command from a second publisher refused: another source "
                "commands the arm (one source at a time)", throttle_duration_sec=_WARN_PERIOD)
        elif problem:
            self.get_logger().warning(f"joint_velocity_command refused, commanding zero: it "
                                   f"{problem}", throttle_duration_sec=_WARN_PERIOD)

    def _clear_command(self) -> None:
        """Zero the command (lock held): a new command is needed to move again."""
        self._command = np.zeros(self.backend.n)
        self._command_time = None
        self._watchdog_tripped = True

    def _fresh_command(self, now: float) -> np.ndarray:
        """(n,) rad/s: the latest command, capped, or zero when it is stale or commands
        are latched off after a failed command (lock held)."""
        if self.command_latch is not None:
            self._events["backend_error"] = self.command_latch
            return np.zeros(self.backend.n)
        fresh = (self._command_time is not None
                 and now - self._command_time <= self._command_timeout)
        if fresh:
            self._watchdog_tripped = False
            return scale_velocity(self._command, self.velocity_limits)
        if not self._watchdog_tripped:
            self._watchdog_tripped = True
            self.get_logger().info(
                f"no joint_velocity_command for {self._command_timeout:g} s: commanding zero")
        return np.zeros(self.backend.n)

    def _guard(self, qdot: np.ndarray) -> np.ndarray:
        """(n,) rad/s: zero for a faulted arm; else the joint look-ahead guard and the
        envelope at the last measured q (lock held)."""
        if not np.any(qdot):
            return qdot
        if self.arm_fault:
            return np.zeros_like(qdot)
        verdict = guard_command(self.robot, self.envelope, self._q, qdot, self._lookahead,
                                margin=self._limit_margin)
        if verdict.modified:
            kind = "envelope" if verdict.reason.startswith("envelope") else "joint_limit"
            self._events[kind] = verdict.reason
            self.get_logger().warning(verdict.reason, throttle_duration_sec=_WARN_PERIOD)
        return verdict.qdot

    def _on_backend_error(self, what: str, exc: BackendError) -> None:
        """An error of the arm or its link (lock held): zero the command and send Stop."""
        self.backend_error = str(exc)
        self._clear_command()
        self.get_logger().error(f"{what}: {exc}; commanding zero and Stop",
                                throttle_duration_sec=_WARN_PERIOD)
        if what == "command" and self.command_latch is None:
            self.command_latch = (f"a command failed ({exc}); commands refused until "
                                  f"~/clear_faults or ~/home")
            self.get_logger().error(f"latched: {self.command_latch}")
        try:
            self.backend.stop()
        except BackendError as stop_exc:
            self.get_logger().error(f"Stop after a {what} error failed too: {stop_exc}",
                                    throttle_duration_sec=_WARN_PERIOD)

    def _on_backend_watchdog(self, silent: float) -> None:
        # From the backend's watchdog thread: the ticks stopped while the arm moved.
        self.get_logger().error(f"no tick for {silent:.3f} s while the arm moved: the "
                                "backend's watchdog sent Stop")

    # ------------------------------------------------------------------ tick

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return
            try:
                if not self._homing:
                    commanded = self._guard(self._fresh_command(now))
                    try:
                        self.backend.command(commanded)
                    except BackendError as exc:
                        self._on_backend_error("command", exc)
                    self.backend.step(1.0 / self._rate)
                try:
                    reading = self.backend.read_state()
                except BackendError as exc:
                    # Nothing to publish: the arm's state is unknown this tick.
                    self._on_backend_error("reading the arm", exc)
                    return
            finally:
                self._check_supervisor()
                events, self._events = self._events, {}
            self._q = reading.q
            if reading.fault != self.arm_fault:
                if reading.fault:
                    self.get_logger().error(f"the arm reports a fault: {reading.fault}; "
                                            "commanding zero; call ~/clear_faults")
                else:
                    self.get_logger().info("the arm takes commands again")
                self.arm_fault = reading.fault
            stamp = self.get_clock().now().to_msg()
        self._publish_state(reading, stamp)
        self._publish_safety(events)

    def _check_supervisor(self) -> None:
        """Report (log, ~/safety) Stops of the gen3 supervisor process since the last tick:
        this process was frozen, or its ticks late by 2 periods; and a supervisor that
        died (lock held)."""
        stops = getattr(self.backend, "supervisor_stops", 0)
        if stops != self._supervisor_stops:
            self._supervisor_stops = stops
            reason = (f"no tick for {self.backend.supervisor_last_age:.3f} s while the arm "
                      "moved: the supervisor process sent Stop")
            self._events["supervisor"] = reason
            self.get_logger().error(reason, throttle_duration_sec=_WARN_PERIOD)
        alive = getattr(self.backend, "supervisor_alive", lambda: None)()
        if alive is False:
            self._events["supervisor"] = ("the supervisor process exited: only the firmware's "
                                          "connection_inactivity_timeout stops a frozen driver")
            if not self._supervisor_lost:
                self._supervisor_lost = True
                self.get_logger().error(self._events["supervisor"])

    def _publish_safety(self, events: dict[str, str]) -> None:
        """Publish ~/safety when the set of kinds changed since the last publication."""
        kinds = tuple(sorted(events))
        if kinds == self._safety_kinds:
            return
        self._safety_kinds = kinds
        self.safety_status = "; ".join(f"{k}: {events[k]}" for k in kinds) or "ok"
        self._safety_pub.publish(String(data=self.safety_status))

    def _publish_state(self, reading: Reading, stamp) -> None:
        """Publish joint_states (position rad, velocity rad/s as read) and task_state."""
        joint_state = JointState()
        joint_state.header.stamp = stamp
        joint_state.name = list(self.backend.joint_names)
        joint_state.position = reading.q.tolist()
        joint_state.velocity = reading.qdot.tolist()
        task_state = TaskState()
        task_state.header.stamp = stamp
        task_state.task = self.backend.task_name
        task_state.labels = list(self.backend.labels)
        x = reading.x
        if x is not None:
            task_state.position = x.tolist()
            task_state.valid = bool(np.all(np.isfinite(x)))
            if self.backend.task_name == self.task.name:
                task_state.valid = task_state.valid and bool(self.task.valid(x))
        self._joint_pub.publish(joint_state)
        self._task_pub.publish(task_state)

    # ------------------------------------------------------------------ services

    def _home_target(self) -> np.ndarray | None:
        """(n,) rad, the task's start pose; None: the backend's stored home action."""
        if self._home_action and hasattr(self.backend, "home_action_name"):
            self.backend.home_action_name = self._home_action
            return None
        return np.asarray(self.task.q_fixed, dtype=float)

    def _on_home(self, request: Trigger.Request, response: Trigger.Response):
        timeout = self._home_timeout
        target = self._home_target()
        try:
            if self.backend.concurrent_home:
                with self._lock:
                    self._homing = True
                    self._clear_command()
                    self.backend.stop()
                try:
                    self.backend.home(timeout, target)
                finally:
                    with self._lock:
                        self._homing = False
            else:
                with self._lock:
                    self._clear_command()
                    self.backend.home(timeout, target)
        except BackendError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().error(f"home failed: {exc}")
            return response
        response.success, response.message = True, "at home"
        self._unlatch("homed")
        self.get_logger().info("homed")
        return response

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response):
        with self._lock:
            self._clear_command()
            self._answer(response, "stop", self.backend.stop,
                         "stopped; send a new command to move")
        return response

    def _on_clear_faults(self, request: Trigger.Request, response: Trigger.Response):
        with self._lock:
            self._clear_command()
        # Outside the lock: clearing waits for the arm; the ticks keep publishing.
        if self._answer(response, "clear_faults", self.backend.clear_faults,
                        "faults cleared; the arm takes commands"):
            self._unlatch("faults cleared")
            self.get_logger().info("faults cleared")
        return response

    def _answer(self, response: Trigger.Response, what: str, call, done: str) -> bool:
        """Fill ``response`` with the outcome of the backend ``call``; whether it worked."""
        try:
            call()
        except BackendError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().error(f"{what} failed: {exc}")
            return False
        response.success, response.message = True, done
        return True

    def _unlatch(self, why: str) -> None:
        """An operator acted: commands are taken again (a new one is needed to move)."""
        with self._lock:
            if self.command_latch is not None:
                self.get_logger().info(f"{why}: commands accepted again")
            self.command_latch = None

    # ------------------------------------------------------------------ shutdown

    def close_backend(self) -> None:
        """Stop and release the arm (idempotent); called by destroy_node."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._clear_command()
        try:
            self.backend.close()
        except BackendError as exc:
            self.get_logger().error(f"closing the {type(self.backend).__name__}: {exc}")

    def on_shutdown(self) -> None:
        """Last word before the process exits (uvs_ros.run_node): stop the arm and publish
        its state, so every subscriber and bag ends on a stopped arm."""
        with self._lock:
            if self._closed:
                return
            self._clear_command()
            try:
                self.backend.stop()
                reading = self.backend.read_state()
            except BackendError as exc:
                self.get_logger().error(f"stopping the arm at shutdown: {exc}")
                return
            stamp = self.get_clock().now().to_msg()
        self._publish_state(reading, stamp)
        # Reliable subscribers (a bag, a monitor) get it before the process is gone.
        for publisher in (self._joint_pub, self._task_pub):
            publisher.wait_for_all_acked(Duration(seconds=_LAST_WORD_TIMEOUT))
        self.get_logger().info("shutdown: commanded zero joint velocity")

    def destroy_node(self) -> None:
        if hasattr(self, "backend"):
            self.close_backend()
        super().destroy_node()


def main(args=None) -> int:
    def executor_for(node: DriverNode):
        # Multi-threaded only where Home blocks (a real arm runs its Home action while the
        # ticks and ~/stop go on); the sim homes at once, and a single thread halves the
        # driver's CPU. Enough threads for every callback group to run at once.
        return (MultiThreadedExecutor(num_threads=_GEN3_THREADS)
                if node.backend.concurrent_home else SingleThreadedExecutor())

    # Bad parameters or an unreachable arm: one FATAL line with the reason, exit code 1.
    return run_node(DriverNode, "driver", args=args, make_executor=executor_for,
                    fatal=(ValueError, BackendError))


if __name__ == "__main__":
    raise SystemExit(main())
