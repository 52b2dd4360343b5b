"""Node ``controller``: the paper's Algorithm 1 every cycle, at ``rate`` Hz.

Each cycle, with a target x* set: take the newest joint positions q and task
state x, ask the Jacobian estimator service for J(q, x) (waiting at most
``estimator_timeout``), and command qdot = uvs_core.control.control_step(J,
x, x*, ...). Anything that makes the command unsafe (no answer in time, a
failed or non-finite answer, wrong dimensions, stale or missing states, a
lost marker, a singularity or a joint limit) commands zero and reports
HALTED with the reason.

Uncertainty: an estimator that reports its uncertainty u of J (EstimateJacobian's
``uncertainty``, dimensionless; nk_ens) scales the gain by 1 up to
``uncertainty_slowdown``, linearly down to 0 at ``uncertainty_halt``, and beyond it
commands zero and reports HALTED with reason ``uncertain (...)`` (no latch: it clears
with a new target or when u falls). NaN (unknown, every other estimator) leaves the
law unchanged; both thresholds default to .inf (off). ServoStatus carries u and the
gain's factor.

Faults latch: a halt caused by the estimator (unavailable, late, failed, a
malformed answer) or by stale or malformed joint/task states that lasts
``fault_latch_after`` s (default 1) holds the arm at zero until an operator
acts (``~/resume``, ``~/set_target``, a ``target`` message that moves x*
beyond the convergence tolerance, or ``~/cancel``), even after
the cause has cleared: ServoStatus.latched is true and the reason ends with
`` [latched: ...]`` (the current cause, or ``cause cleared`` and the one that
latched). Shorter faults (late answers on a loaded machine), a lost marker,
no states yet at start, a singularity or a joint limit halt without
latching: servoing resumes by itself once they clear. When no request has
been answered for ``fault_latch_after`` s the reason is ``estimator
unavailable`` (a killed estimator's service stays discovered for DDS's 20 s
lease, so "service ready" alone cannot tell).

Targets are checked against the safety envelope (``envelope``: the robot
YAML's ``safety`` box and table, the box only (default: the sim's tasks sample
targets below the table), or off; point tasks, each point) and refused with
the reason; image targets (px) cannot be checked here, the driver guards the
commands of every task.

Topics (relative names, so a namespace applies):
- subscribes ``joint_states`` (sensor_msgs/JointState) and ``task_state``
  (uvs_interfaces/TaskState; valid=false means the marker is lost), both on
  best-effort depth 1 (matches reliable and sensor-data publishers);
- subscribes ``target`` (uvs_interfaces/TaskState): each message updates x*
  (a moving target); the convergence bookkeeping restarts only when the
  target moved by more than ``convergence_tolerance`` (for a target with a
  velocity: from where that velocity said it would be). A moving target's
  velocity ẋ* (``target_velocity``: the message's ``velocity`` field, or
  estimated from successive targets, or off) is fed forward, qdot = J+ (ẋ* +
  gain (x* - x)), and x* is extrapolated by ẋ* times the message's age, while
  the message is at most ``target_velocity_timeout`` old (then the target is held
  still where it was). A moving target within the tolerance reports CONVERGED
  and is still followed (the command is not zeroed), and is never STALLED (a
  steady tracking error is no stall). A target from this
  topic can be lost: a message with valid=false (a tracked target marker out
  of sight), or no message for ``target_timeout`` s (when > 0), commands zero
  and reports HALTED ``target lost`` / ``target stale`` until a valid target
  arrives (no latch); a target set by ``~/set_target`` never goes stale;
- publishes ``joint_velocity_command`` (std_msgs/Float64MultiArray, rad/s,
  one per joint in /joint_states order, zero for joints the task does not
  drive), every cycle, zero when idle, halted or converged;
- publishes ``~/status`` (uvs_interfaces/ServoStatus) every cycle and
  ``~/markers`` (visualization_msgs/MarkerArray, in ``frame_id``).

Services: ``~/set_target`` (uvs_interfaces/SetTarget: checks length,
finiteness and the envelope; always restarts the bookkeeping, even for the
same target, and clears a latched halt), ``~/cancel`` (std_srvs/Trigger:
forget the target, idle, zero), ``~/resume`` (std_srvs/Trigger: clear a
latched halt, keep the target).
Client: ``estimate_jacobian`` (uvs_interfaces/EstimateJacobian). Its request pairs x
with the joint positions x was measured at: the joint state whose header stamp equals
the task state's (the driver stamps both with one reading; the sim camera stamps its
frame with the joint state it drew, and the tracker keeps it), else the nearest in the
last second. An online estimator (Broyden) learns from successive (q, x) pairs, and a
q one message newer than its x makes a secant of noise (measured: docs/parity.md).
The control law itself (joint limits) uses the newest joint state.

The control cycle runs on a thread of its own at ``rate`` (deadline-scheduled on a
monotonic clock), not in an executor callback: it blocks up to ``estimator_timeout``
on the estimator's answer, and a blocked executor worker makes rclpy's executors
re-offer queued callbacks in a busy loop (measured: 0.4-2.6 s stalls at 20 Hz,
benchmarks/servo_loop.py). The executor that spins the node (any kind; main()
uses a SingleThreadedExecutor) only delivers messages, service calls and the
estimator's answers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import replace

import numpy as np
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from uvs_control.markers import servo_markers
from uvs_control.pose_target import pose_target
from uvs_control.qos import COMMAND_QOS, MARKER_QOS, STATE_QOS, STATUS_QOS, TARGET_QOS
from uvs_core.control import (
    JOINT_LIMIT_POLICIES,
    VELOCITY_LIMIT_MODES,
    ControlConfig,
    ServoMonitor,
    control_step,
    task_rank,
    uncertainty_scale,
)
from uvs_core.safety import Envelope
from uvs_core.tasks import TASK_NAMES, cond_thresholds, error_fn, make_task
from uvs_interfaces.msg import ServoStatus, TaskState
from uvs_interfaces.srv import EstimateJacobian, SetTarget
from uvs_ros import run_node
from uvs_ros.robot_model import ROBOT_MODEL_PARAMETERS, load_node_robot, robot_model_reason

__all__ = ["ControllerNode", "PARAMETERS", "validate_parameters", "main"]

NODE_NAME = "controller"
STATE_NAMES = {ServoStatus.IDLE: "idle", ServoStatus.SERVOING: "servoing",
               ServoStatus.CONVERGED: "converged", ServoStatus.STALLED: "stalled",
               ServoStatus.HALTED: "halted"}
# Convergence tolerance when the parameter is 0 ("by task units"): 5 mm per
# point for tasks in metres (norm over the stacked points), 2 px for image tasks.
_AUTO_TOLERANCE_M = 0.005
_AUTO_TOLERANCE_PX = 2.0
_WARN_PERIOD = 1.0  # s between repeated warnings of one kind
_LATCH_HINT = " [latched: set a target or call ~/resume]"
# Halts that latch when they last fault_latch_after (faults of the graph). Others resume
# by themselves once they clear: no states yet at start, a lost marker, and the control
# law's own halts (singularity, joint limit, non-finite Jacobian).
_LATCHING = ("estimator unavailable", "estimator timeout", "estimator failed",
             "estimator returned", "joint states stale", "task state stale",
             "joint_states lacks", "task state has")
ENVELOPE_MODES = ("robot", "box", "off")
TARGET_VELOCITY_MODES = ("message", "estimate", "off")
MARKER_RATE = 20.0  # Hz, the most ~/markers is published (RViz needs no more)

_STR, _DOUBLE, _INT = (ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_DOUBLE,
                       ParameterType.PARAMETER_INTEGER)


def _descriptor(description: str, type_: int, read_only: bool = False,
                floats: tuple[float, float] | None = None,
                ints: tuple[int, int] | None = None,
                constraints: str = "") -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=description, type=type_, read_only=read_only,
                                     additional_constraints=constraints)
    if floats is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=floats[0], to_value=floats[1], step=0.0)]
    if ints is not None:
        descriptor.integer_range = [IntegerRange(from_value=ints[0], to_value=ints[1], step=1)]
    return descriptor


_DEFAULT = ControlConfig()


def _by_task(which: int) -> str:
    """'single_point 17, ...': each task's default condition threshold (0 slowdown, 1 halt)."""
    return ", ".join(f"{name} {cond_thresholds(name)[which]:g}" for name in TASK_NAMES)


# name: (default, descriptor)
PARAMETERS = {
    "task": ("single_point", _descriptor(
        "Servo task: what x is, which joints are driven.", _STR, read_only=True,
        constraints=f"one of {', '.join(TASK_NAMES)}")),
    "robot": ("gen3", _descriptor(
        "Robot model (joint limits, markers): a name under config/robots, a robot YAML "
        "or URDF path, or robot_description (the URDF on that topic, from a robot driver).",
        _STR, read_only=True)),
    **ROBOT_MODEL_PARAMETERS,
    "rate": (20.0, _descriptor(
        "Control rate, Hz (paper: 20, dt = 0.05 s).", _DOUBLE, floats=(1.0, 1000.0))),
    "gain": (_DEFAULT.gain, _descriptor(
        "lambda of Eq. 1, 1/s: qdot = gain * J+ (x* - x) (paper 1.0).",
        _DOUBLE, floats=(0.0, 100.0), constraints="> 0")),
    "damping": (_DEFAULT.damping, _descriptor(
        "Damped-least-squares lambda, task units; 0 = plain pseudo-inverse (paper).",
        _DOUBLE, floats=(0.0, 1000.0))),
    "cond_slowdown": (0.0, _descriptor(
        "Condition number where slowing down starts, of the task's measure (J for "
        "single_point and visual_servo, the tool's twist Jacobian for multi_point); 0 = by "
        f"task ({_by_task(0)}); .inf disables. Only motion that does not lower the "
        "condition number is slowed.",
        _DOUBLE, constraints="0 (by task), or >= 1 and <= cond_halt")),
    "cond_halt": (0.0, _descriptor(
        "Condition number (the task's measure) where the command reaches zero and the "
        f"servo halts; 0 = by task ({_by_task(1)}); .inf disables (paper).", _DOUBLE,
        constraints="0 (by task), or >= cond_slowdown")),
    "uncertainty_slowdown": (math.inf, _descriptor(
        "Estimator uncertainty u (EstimateJacobian.uncertainty, dimensionless; nk_ens: "
        "the members' spread over |J|) above which the gain scales down, linearly to 0 at "
        "uncertainty_halt; above uncertainty_halt it acts as equal to it; .inf = off. "
        "u = NaN (an estimator without one) never slows.", _DOUBLE,
        constraints=">= 0; .inf = off")),
    "uncertainty_halt": (math.inf, _descriptor(
        "Estimator uncertainty u at or above which the command is zero and the servo halts "
        "with reason 'uncertain'; .inf = off. u = NaN never halts.", _DOUBLE,
        constraints=">= 0; .inf = off")),
    "max_joint_velocity": (_DEFAULT.max_joint_velocity, _descriptor(
        "Joint speed cap, rad/s (paper 1.22), applied as velocity_limit_mode says. Each "
        "joint's own limit applies too.", _DOUBLE, floats=(0.0, 10.0),
        constraints="> 0")),
    "velocity_limit_mode": (_DEFAULT.velocity_limit_mode, _descriptor(
        "scale: a command over the cap is scaled as a whole vector, so the task-space step "
        "keeps its direction (MoveIt Servo's rule). clip: each joint is clipped on its own "
        "(the paper's rollout, `uvs benchmark`): faster on long multi-point moves, but the "
        "step turns away from the error (docs/parity.md).", _STR,
        constraints=f"one of {', '.join(VELOCITY_LIMIT_MODES)}")),
    "joint_limit_margin": (_DEFAULT.joint_limit_margin, _descriptor(
        "rad kept free before each position limit; what a command that would enter the "
        "margin within one period does is joint_limit_policy's (continuous joints exempt).",
        _DOUBLE, floats=(0.0, 1.0))),
    "joint_limit_policy": ("lock", _descriptor(
        "lock: lock the joints that would enter the margin and solve the task with the "
        "others (the redundant arm's way round a limit); HALTED with 'joint limit' only when "
        "that would not reduce the error. halt: zero the whole arm at once (the paper's "
        "evaluation).", _STR, constraints=f"one of {', '.join(JOINT_LIMIT_POLICIES)}")),
    "joint_limit_lookahead": (0.6, _descriptor(
        "s over which joint limits are predicted (0 = one period). The driver's look-ahead "
        "guard (its `lookahead`, 0.5 s) plus a period, the command's age when the driver "
        "applies it: so the driver's guard, which zeroes a joint without re-solving the "
        "task, is not what keeps the arm off its limits.",
        _DOUBLE, floats=(0.0, 5.0))),
    "nullspace_gain": (_DEFAULT.nullspace_gain, _descriptor(
        "Weight of Eq. 1's (I - J+ J) y term pulling limited joints to mid-range; 0 = off "
        "(paper, and the default: with a learned J the projector leaks into the task and "
        "biases it; see docs/parity.md).", _DOUBLE, floats=(0.0, 100.0))),
    "convergence_tolerance": (0.0, _descriptor(
        "Converged when |x* - x| is below this, task units (m or px); 0 = by task: "
        "5 mm per point in metres, 2 px for image tasks; pose: max(|p* - p|, 0.1 m/rad x "
        "angle) below it (5 mm: 5 mm and 0.05 rad).", _DOUBLE, floats=(0.0, 1000.0))),
    "stall_window": (20, _descriptor(
        "Cycles over which the error must fall by more than stall_fraction, else STALLED.",
        _INT, ints=(1, 100000))),
    "stall_fraction": (0.05, _descriptor(
        "Relative error decrease over stall_window that counts as progress.",
        _DOUBLE, floats=(0.0, 0.99))),
    "estimator_timeout": (0.04, _descriptor(
        "Longest wait for the estimator's answer, s; must be shorter than the period "
        "1/rate. No answer in time: zero command, HALTED.", _DOUBLE, floats=(0.0, 10.0),
        constraints="> 0 and < 1/rate")),
    "jacobian_hold": (0.075, _descriptor(
        "When the estimator misses its deadline, servo on with its last answer (of the "
        "current target) if it is at most this old, s; else zero command, HALTED. 0 = halt "
        "at the first miss. The default (1.5 periods at 20 Hz) bridges one late answer on "
        "a loaded machine and still halts at the second miss in a row: a dead estimator "
        "stops the arm within estimator_timeout + 2 periods.",
        _DOUBLE, floats=(0.0, 1.0))),
    "target_timeout": (0.0, _descriptor(
        "A target from the target topic older than this (s, receipt time) is stale: zero "
        "command, HALTED until the next one. 0 = topic targets never go stale (one-shot "
        "targets); a tracked target marker publishes every frame (servo.launch.py "
        "target_source:=marker sets 0.5).", _DOUBLE, floats=(0.0, 60.0))),
    "target_velocity": ("message", _descriptor(
        "Velocity of a target from the target topic, fed forward (qdot = J+ (xdot* + gain "
        "(x* - x))): message = its TaskState.velocity field (empty: none; a trajectory "
        "streamer sets it); estimate = the median velocity between successive targets of "
        "the last target_velocity_window s (by receipt time; a tracked target marker); "
        "off = none (feedback alone lags a target moving at v by v / gain).",
        _STR, constraints=f"one of {', '.join(TARGET_VELOCITY_MODES)}")),
    "target_velocity_window": (0.2, _descriptor(
        "target_velocity estimate: s of topic targets whose successive velocities' median "
        "is the estimate (longer: less noise, more delay).", _DOUBLE, floats=(0.0, 5.0),
        constraints="> 0")),
    "target_velocity_timeout": (0.25, _descriptor(
        "A topic target's velocity is fed forward, and x* extrapolated with it, while the "
        "message is at most this old, s; then the target is held still.",
        _DOUBLE, floats=(0.0, 10.0))),
    "state_timeout": (0.25, _descriptor(
        "joint_states / task_state older than this (s, receipt time) are stale: zero "
        "command, HALTED.", _DOUBLE, floats=(0.0, 60.0), constraints="> 0")),
    "fault_latch_after": (1.0, _descriptor(
        "A fault halt (estimator unavailable, late, failed; stale states) lasting this long, "
        "s, latches until ~/resume or a new target; shorter ones resume by themselves. Also "
        "how long without any answer makes the estimator 'unavailable'.", _DOUBLE,
        floats=(0.0, 60.0), constraints="> 0")),
    "envelope": ("box", _descriptor(
        "Safety envelope targets must lie in: robot = the robot YAML's safety box and table "
        "(a real arm), box = its box only (the sim, whose tasks sample targets below the "
        "table), off = none.", _STR, read_only=True,
        constraints=f"one of {', '.join(ENVELOPE_MODES)}")),
    "frame_id": ("base_link", _descriptor(
        "Robot base frame: frame of the markers and of the status header.", _STR)),
}

_CONTROL_FIELDS = ("gain", "damping", "cond_slowdown", "cond_halt", "max_joint_velocity",
                   "joint_limit_margin", "nullspace_gain", "joint_limit_policy",
                   "velocity_limit_mode")
# parameter name -> ControlConfig field, where they differ
_CONTROL_RENAMED = {"joint_limit_lookahead": "limit_lookahead"}


def _control_config(values: dict) -> ControlConfig:
    """The ControlConfig of a complete set of parameter values (valid task name); a
    condition threshold of 0 takes the task's default (uvs_core.tasks.cond_thresholds)."""
    fields = {name: values[name] for name in _CONTROL_FIELDS}
    fields.update({field: values[name] for name, field in _CONTROL_RENAMED.items()})
    for name, by_task in zip(("cond_slowdown", "cond_halt"), cond_thresholds(values["task"])):
        if fields[name] == 0.0:
            fields[name] = by_task
    return ControlConfig(**fields, dt=1.0 / values["rate"])


def validate_parameters(values: dict) -> str | None:
    """Why this complete set of parameter values is unacceptable, or None."""
    if values["task"] not in TASK_NAMES:
        return f"task {values['task']!r} unknown; choose one of {', '.join(TASK_NAMES)}"
    reason = robot_model_reason(values)
    if reason:
        return reason
    if values["joint_limit_policy"] not in JOINT_LIMIT_POLICIES:
        return (f"joint_limit_policy {values['joint_limit_policy']!r} unknown; choose one of "
                f"{', '.join(JOINT_LIMIT_POLICIES)}")
    if values["velocity_limit_mode"] not in VELOCITY_LIMIT_MODES:
        return (f"velocity_limit_mode {values['velocity_limit_mode']!r} unknown; choose one "
                f"of {', '.join(VELOCITY_LIMIT_MODES)}")
    for name in ("rate", "estimator_timeout", "state_timeout", "fault_latch_after"):
        value = values[name]
        if not (math.isfinite(value) and value > 0):
            return f"{name} must be a finite number > 0, got {value}"
    if not values["estimator_timeout"] < 1.0 / values["rate"]:
        return (f"estimator_timeout {values['estimator_timeout']:g} s must be shorter than "
                f"the period 1/rate = {1.0 / values['rate']:g} s")
    for name in ("uncertainty_slowdown", "uncertainty_halt"):
        if not values[name] >= 0.0:
            return f"{name} must be >= 0 (.inf = off), got {values[name]}"
    if not (math.isfinite(values["target_timeout"]) and values["target_timeout"] >= 0):
        return "target_timeout must be >= 0 (0: topic targets never go stale)"
    if not (math.isfinite(values["convergence_tolerance"])
            and values["convergence_tolerance"] >= 0):
        return "convergence_tolerance must be >= 0 (0: by task units)"
    if values["stall_window"] < 1:
        return "stall_window must be >= 1"
    if not 0.0 <= values["stall_fraction"] < 1.0:
        return "stall_fraction must be in [0, 1)"
    if values["target_velocity"] not in TARGET_VELOCITY_MODES:
        return (f"target_velocity {values['target_velocity']!r} unknown; choose one of "
                f"{', '.join(TARGET_VELOCITY_MODES)}")
    if not (math.isfinite(values["target_velocity_window"])
            and values["target_velocity_window"] > 0):
        return "target_velocity_window must be > 0"
    if not (math.isfinite(values["target_velocity_timeout"])
            and values["target_velocity_timeout"] >= 0):
        return "target_velocity_timeout must be >= 0"
    if values["envelope"] not in ENVELOPE_MODES:
        return f"envelope {values['envelope']!r} unknown; choose one of " \
               f"{', '.join(ENVELOPE_MODES)}"
    if not str(values["frame_id"]).strip():
        return "frame_id must not be empty"
    try:
        _control_config(values)
    except ValueError as exc:
        if values["cond_slowdown"] == 0.0 or values["cond_halt"] == 0.0:
            return f"{exc} (0 = the task's default)"
        return str(exc)
    return None


class ControllerNode(Node):
    """The servo controller; see the module docstring.

    Keyword arguments go to rclpy's Node (context, parameter_overrides,
    namespace, ...): ``ControllerNode(context=ctx, parameter_overrides=[...])``.
    Raises ValueError for invalid parameters (unknown task or robot, ...).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        reason = validate_parameters(values)
        if reason:
            raise ValueError(f"{self.get_name()}: {reason}")
        self._values = values

        self.robot = load_node_robot(self, values["robot"])
        self.task = make_task(values["task"], self.robot)
        active = self.task.active
        self._lower = self.robot.lower[active]
        self._upper = self.robot.upper[active]
        self._velocity_limits = self.robot.velocity_limits[active]
        self._active_names = [self.robot.joint_names[i] for i in active]
        self._rank = task_rank(self.task)
        self.envelope = {"robot": self.robot.envelope,
                         "box": self.robot.envelope.without_table(),
                         "off": Envelope()}[values["envelope"]]

        # Guards everything the cycle shares with subscriptions, services and
        # parameter callbacks (they run in other callback groups).
        self._lock = threading.Lock()
        self._config = _control_config(values)
        self._monitor = self._new_monitor(values)
        self._joint_state: JointState | None = None
        self._joint_time = -math.inf          # time.monotonic() at receipt
        # (stamp ns, JointState) of the last second of joint states, for the estimator's
        # (q, x) pairs (see _positions_at)
        self._joint_history: deque[tuple[int, JointState]] = deque(maxlen=200)
        self._task_state: TaskState | None = None
        self._task_time = -math.inf
        self._target: np.ndarray | None = None
        self._anchor: np.ndarray | None = None   # target when bookkeeping last restarted
        # Where x* came from: its receipt time (monotonic) when from the target topic,
        # None when from ~/set_target; and whether the topic has since said it is lost.
        self._target_time: float | None = None
        self._target_lost = False
        # The topic target's velocity ẋ* (m,) task units/s (None: none) and the stamp of
        # its message, s (header stamp, else receipt); recent (stamp, x*) for the estimate.
        self._target_velocity: np.ndarray | None = None
        self._target_stamp: float | None = None
        self._target_history: deque[tuple[float, np.ndarray]] = deque(maxlen=200)
        self._step = 0
        self._latched = ""          # the fault that latched the halt; "" when not latched
        self._unanswered_since: float | None = None  # monotonic, first unanswered request
        # The last good answer of this target's run: (J (m, k), estimator name, monotonic,
        # its uncertainty u).
        self._last_jacobian: tuple[np.ndarray, str, float, float] | None = None
        # u of the last answer received (NaN: unknown or none); the cycle thread's own.
        self._answer_uncertainty = math.nan
        self.held_cycles = 0                 # cycles servoed on a held J (since start)
        self.dropped_cycles = 0              # cycles dropped for a target changed mid-cycle
        self._fault_since: float | None = None       # monotonic, start of the fault halt run
        # Counts operator targets (~/set_target, a far move, ~/cancel, ~/resume): a cycle
        # that waited for the estimator across one describes the old target and is dropped.
        self._target_gen = 0
        self._latched_now = False   # whether this cycle's status is a latched halt
        # Direction of the condition check (see control_step's prev_condition): the
        # condition number at the last pose seen, the pose, and the reference it was
        # compared with. A cycle that sees the same pose again (no new joint state
        # yet) repeats the last comparison instead of reading "no change" as
        # "approaching the singularity".
        self._cond_pose: np.ndarray | None = None
        self._cond_last = math.nan
        self._cond_ref = math.nan
        self._joint_order: tuple[tuple[str, ...], np.ndarray | None] = ((), None)
        self._last_logged = (ServoStatus.IDLE, "")
        # Markers are for people watching RViz: at most MARKER_RATE Hz whatever the control
        # rate (at 100 Hz they were a third of the cycle's work).
        self._last_markers = -math.inf

        self._client_group = MutuallyExclusiveCallbackGroup()
        self._io_group = MutuallyExclusiveCallbackGroup()
        self._command_pub = self.create_publisher(
            Float64MultiArray, "joint_velocity_command", COMMAND_QOS)
        self._status_pub = self.create_publisher(ServoStatus, "~/status", STATUS_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, "~/markers", MARKER_QOS)
        self._joint_sub = self.create_subscription(
            JointState, "joint_states", self._on_joint_state, STATE_QOS,
            callback_group=self._io_group)
        self._task_sub = self.create_subscription(
            TaskState, "task_state", self._on_task_state, STATE_QOS,
            callback_group=self._io_group)
        self._target_sub = self.create_subscription(
            TaskState, "target", self._on_target, TARGET_QOS, callback_group=self._io_group)
        self._target_pose_sub = self.create_subscription(
            PoseStamped, "target_pose", self._on_target_pose, TARGET_QOS,
            callback_group=self._io_group)
        self._set_target_srv = self.create_service(
            SetTarget, "~/set_target", self._on_set_target, callback_group=self._io_group)
        self._cancel_srv = self.create_service(
            Trigger, "~/cancel", self._on_cancel, callback_group=self._io_group)
        self._resume_srv = self.create_service(
            Trigger, "~/resume", self._on_resume, callback_group=self._io_group)
        self._client = self.create_client(
            EstimateJacobian, "estimate_jacobian", callback_group=self._client_group)
        self._stop = threading.Event()
        self._cycle_thread = threading.Thread(target=self._run_cycles, name="uvs-controller-cycle",
                                              daemon=True)
        self._cycle_thread.start()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.get_logger().info(
            f"task {self.task.name} (m={self.task.m}, joints {self._active_names}), "
            f"{values['rate']:g} Hz, gain {values['gain']:g}, estimator "
            f"{self._client.srv_name}, tolerance {self.tolerance:g} {self.task.units}, "
            f"condition slowdown/halt {self._config.cond_slowdown:g}/"
            f"{self._config.cond_halt:g}")

    # ------------------------------------------------------------------ parameters

    @property
    def control_config(self) -> ControlConfig:
        """The ControlConfig of the next cycle."""
        return self._config

    @property
    def tolerance(self) -> float:
        """Convergence tolerance in task units (the parameter, or the task default)."""
        return self._tolerance(self._values)

    def _tolerance(self, values: dict) -> float:
        if values["convergence_tolerance"] > 0:
            return float(values["convergence_tolerance"])
        if self.task.units == "px":
            return _AUTO_TOLERANCE_PX
        if self.task.name == "pose":
            # Task.distance: 5 mm of position and 0.05 rad (2.9 deg) of angle
            return _AUTO_TOLERANCE_M
        return _AUTO_TOLERANCE_M * math.sqrt(self.task.m / 3.0)

    def _new_monitor(self, values: dict) -> ServoMonitor:
        return ServoMonitor(self._tolerance(values), stall_window=values["stall_window"],
                            stall_fraction=values["stall_fraction"])

    def _validate_parameters(self, params) -> SetParametersResult:
        values = dict(self._values)
        values.update({p.name: p.value for p in params if p.name in PARAMETERS})
        reason = validate_parameters(values)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        changed = {p.name for p in params if p.name in PARAMETERS}
        if not changed:
            return
        with self._lock:
            self._values.update({p.name: p.value for p in params if p.name in PARAMETERS})
            self._config = _control_config(self._values)
            if changed & {"convergence_tolerance", "stall_window", "stall_fraction"}:
                self._monitor = self._new_monitor(self._values)
        self.get_logger().info("parameters: " + ", ".join(
            f"{name}={self._values[name]}" for name in sorted(changed)))

    # ------------------------------------------------------------------ cycle thread

    def _run_cycles(self) -> None:
        """Call _cycle every 1/rate s until destroy_node(); a late cycle does not burst."""
        deadline = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                period = 1.0 / self._values["rate"]
            deadline += period
            now = time.monotonic()
            if deadline < now - period:         # more than a period behind: skip ahead
                deadline = now
            if self._stop.wait(max(0.0, deadline - now)):
                break
            if not self.context.ok():
                break
            try:
                self._cycle()
            except InvalidHandle:
                break                            # the node is being destroyed

    def destroy_node(self) -> None:
        self._stop.set()
        if self._cycle_thread.is_alive() and self._cycle_thread is not threading.current_thread():
            self._cycle_thread.join(timeout=2.0)
        super().destroy_node()

    # ------------------------------------------------------------------ inputs

    def _on_joint_state(self, msg: JointState) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self._joint_state, self._joint_time = msg, time.monotonic()
            self._joint_history.append((stamp, msg))

    def _positions_at(self, ts: TaskState, latest: np.ndarray) -> np.ndarray:
        """Joint positions (the JointState's own order) measured with task state ts: the
        joint state of equal stamp, else the nearest within 1 s; `latest` when the stamps
        are zero or nothing is that close (lock held)."""
        stamp = ts.header.stamp.sec * 1_000_000_000 + ts.header.stamp.nanosec
        latest_msg = self._joint_state
        if stamp == 0 or not self._joint_history:
            return latest
        best, best_gap = None, 1_000_000_000
        for js_stamp, msg in reversed(self._joint_history):
            gap = abs(js_stamp - stamp)
            if gap < best_gap:
                best, best_gap = msg, gap
            if gap == 0 or js_stamp < stamp - best_gap:
                break
        if best is None or best is latest_msg or tuple(best.name) != tuple(latest_msg.name) \
                or len(best.position) != latest.size:
            return latest
        return np.asarray(best.position, dtype=float)

    def _on_task_state(self, msg: TaskState) -> None:
        with self._lock:
            self._task_state, self._task_time = msg, time.monotonic()

    def _target_problem(self, target: np.ndarray) -> str | None:
        if target.shape != (self.task.m,):
            return (f"target has {target.size} values; task {self.task.name} needs "
                    f"{self.task.m} ({', '.join(self.task.labels)})")
        if not np.all(np.isfinite(target)):
            return "target has NaN or Inf"
        # The pose task's x ends with a rotation vector (rad): only its position is a place.
        outside = self.envelope.target_problem(
            target[:3] if self.task.name == "pose" else target, self.task.units)
        if outside:
            return f"{outside}: outside the safety envelope"
        return None

    def _set_target(self, target: np.ndarray, restart: bool = False,
                    received: float | None = None, velocity: np.ndarray | None = None,
                    stamp: float | None = None) -> None:
        """Take a new x* (lock held). Bookkeeping restarts, and a latched halt clears, when
        it moved beyond the tolerance or ``restart`` (an operator's ~/set_target); a small
        move (a moving target's next sample) only updates x*. ``received``: monotonic
        receipt time of a target from the topic (it can go stale), None for the service.
        ``velocity``: (m,) ẋ* of a topic target, None for none; ``stamp``: s, its
        message's time (header stamp, else receipt). A target that moves with a velocity
        is compared with where the previous one's velocity took it, not with the anchor."""
        self._target_time, self._target_lost = received, False
        reference = self._anchor
        moving = (self._target_velocity is not None and self._target is not None
                  and self._target_stamp is not None and stamp is not None)
        if moving:
            reference = self._target + self._target_velocity * max(
                0.0, min(stamp - self._target_stamp, self._values["target_velocity_timeout"]))
        if (restart or reference is None
                or float(self.task.distance(reference, target)) > self.tolerance):
            self._unlatch("new target")
            self._target_gen += 1
            self._fault_since = None
            self._anchor = target.copy()
            self._last_jacobian = None
            self._step = 0
            self._monitor.reset()
            # One free step for the condition check, so a servo halted near a
            # singularity can try the new direction (see control_step).
            self._cond_last = self._cond_ref = math.nan
        elif moving or velocity is not None:
            self._anchor = target.copy()       # a stream: the anchor follows it
        self._target = target.copy()
        self._target_velocity = None if velocity is None else velocity.copy()
        self._target_stamp = stamp
        if received is None:
            self._target_history.clear()

    def _estimate_velocity(self, stamp: float, target: np.ndarray) -> np.ndarray | None:
        """ẋ* from the topic targets of the last target_velocity_window s: the median, per
        coordinate, of the velocities between successive ones (a jump of the target, one
        outlier among them, is not read as motion); None with no earlier target in the
        window (lock held). stamp: s, monotonic receipt time."""
        history = self._target_history
        if history and stamp <= history[-1][0]:
            history.pop()
        history.append((stamp, target.copy()))
        window = self._values["target_velocity_window"]
        while len(history) > 1 and stamp - history[0][0] > window:
            history.popleft()
        if len(history) < 2:
            return None
        stamps = np.array([t for t, _ in history])
        points = np.stack([x for _, x in history])
        steps = np.diff(points, axis=0) / np.diff(stamps)[:, None]
        return np.median(steps, axis=0)

    def _target_now(self, now: float) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(x* (m,), ẋ* (m,) or None) for a cycle at monotonic ``now`` (lock held): a topic
        target with a velocity, at most target_velocity_timeout old, is extrapolated to now
        and fed forward; else it is held still."""
        if self._target is None:
            return None, None
        target = self._target.copy()
        velocity = self._target_velocity
        if velocity is None or self._target_time is None or not np.any(velocity != 0.0):
            return target, None
        age = now - self._target_time
        if age > self._values["target_velocity_timeout"]:
            return target, None
        return target + velocity * max(age, 0.0), velocity.copy()

    def _on_target(self, msg: TaskState) -> None:
        if not msg.valid:
            with self._lock:
                from_topic = self._target is not None and self._target_time is not None
                if from_topic:
                    # The topic's target is gone (its marker out of sight): stop, not
                    # servo on to where it was.
                    self._target_lost = True
            if not from_topic:
                self.get_logger().warning("target topic: ignored, target is marked invalid",
                                          throttle_duration_sec=_WARN_PERIOD)
            return
        target = np.asarray(msg.position, dtype=float)
        problem = self._target_problem(target)
        if problem:
            self.get_logger().warning(f"target topic: ignored, {problem}",
                                      throttle_duration_sec=_WARN_PERIOD)
            return
        received = time.monotonic()
        header = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        stamp = header if header > 0.0 else received
        mode = self._values["target_velocity"]
        velocity = None
        if mode == "message" and len(msg.velocity):
            velocity = np.asarray(msg.velocity, dtype=float)
            if velocity.shape != target.shape or not np.all(np.isfinite(velocity)):
                self.get_logger().warning(
                    f"target topic: ignored, velocity has {velocity.size} values or NaN/Inf; "
                    f"expected {target.size} finite ones (or none)",
                    throttle_duration_sec=_WARN_PERIOD)
                return
        with self._lock:
            if mode == "estimate":
                # Receipt times: a camera pipeline's stamp is the frame's joint state, which
                # says when the arm was seen, not when the target was (two frames may share it).
                velocity = self._estimate_velocity(received, target)
            self._set_target(target, received=received, velocity=velocity, stamp=stamp)

    def _on_target_pose(self, msg: PoseStamped) -> None:
        """A tool pose target (geometry_msgs/PoseStamped, in the base frame ``frame_id``),
        converted to x* by the task (Task.x_from_pose); an operator's target, as
        ~/set_target's. Refused with a warning naming the reason otherwise."""
        target, problem = pose_target(self.task, msg, self._values["frame_id"])
        if problem is None:
            problem = self._target_problem(target)
        if problem:
            self.get_logger().warning(f"target_pose: ignored, {problem}",
                                      throttle_duration_sec=_WARN_PERIOD)
            return
        with self._lock:
            self._set_target(target, restart=True)
        self.get_logger().info(f"target_pose: target set: "
                               f"{np.array2string(target, precision=4)}")

    def _on_set_target(self, request: SetTarget.Request, response: SetTarget.Response):
        target = np.asarray(request.target, dtype=float)
        problem = self._target_problem(target)
        if problem:
            response.success, response.message = False, problem
            return response
        with self._lock:
            self._set_target(target, restart=True)
        response.success = True
        response.message = f"target set: {np.array2string(target, precision=4)} " \
                           f"{self.task.units}"
        self.get_logger().info(response.message)
        return response

    def _on_cancel(self, request: Trigger.Request, response: Trigger.Response):
        self._cancel()
        response.success, response.message = True, "target cancelled; idle, zero command"
        self.get_logger().info(response.message)
        return response

    def _on_resume(self, request: Trigger.Request, response: Trigger.Response):
        with self._lock:
            latched = self._latched
            self._unlatch("~/resume")
            self._target_gen += 1
            self._fault_since = None
            self._monitor.reset()
            self._cond_last = self._cond_ref = math.nan
        response.success = True
        response.message = (f"resumed after: {latched}" if latched
                            else "nothing latched; servoing as before")
        return response

    def _unlatch(self, why: str) -> None:
        """Clear a latched halt (lock held)."""
        if self._latched:
            self.get_logger().info(f"latched halt ({self._latched}) cleared by {why}")
        self._latched = ""

    def _cancel(self) -> None:
        """Drop the target and command zero once."""
        with self._lock:
            self._unlatch("~/cancel")
            self._target_gen += 1
            self._fault_since = None
            self._target = self._anchor = self._target_time = None
            self._target_velocity = self._target_stamp = None
            self._target_history.clear()
            self._target_lost = False
            self._step = 0
            self._monitor.reset()
            order = self._joint_order
            names = order[0] if order[1] is not None else self.robot.joint_names
        self._command_pub.publish(Float64MultiArray(data=[0.0] * len(names)))

    def on_shutdown(self) -> None:
        """Last word before the process exits (uvs_ros.run_node): stop the cycle, then
        command zero, so the driver stops at once rather than after its watchdog."""
        self._stop.set()
        if self._cycle_thread.is_alive():
            self._cycle_thread.join(timeout=2.0)
        self._cancel()
        self._command_pub.wait_for_all_acked(Duration(seconds=0.5))

    # ------------------------------------------------------------------ cycle

    def _joint_index(self, names: tuple[str, ...], count: int) -> np.ndarray | None:
        """(n,) index into a JointState's arrays for each robot joint, or None."""
        if self._joint_order[0] == names:
            return self._joint_order[1]
        if not names and count == self.robot.n:
            index = np.arange(self.robot.n)   # unnamed: robot order
        elif set(self.robot.joint_names) <= set(names):
            index = np.array([names.index(j) for j in self.robot.joint_names])
        else:
            index = None
        self._joint_order = (names, index)
        return index

    def _read_inputs(self, now: float):
        """(q (n,) robot order, x (m,), js_positions, js_names, problem) from the newest
        messages (lock held); problem is a reason to halt, or None."""
        js, ts = self._joint_state, self._task_state
        timeout = self._values["state_timeout"]
        q = x = positions = None
        names: tuple[str, ...] = ()
        if js is not None:
            names = tuple(js.name)
            positions = np.asarray(js.position, dtype=float)
            index = self._joint_index(names, positions.size)
            if index is not None and positions.size >= len(names):
                q = positions[index]
        if ts is not None and len(ts.position) == self.task.m:
            x = np.asarray(ts.position, dtype=float)
        if js is None:
            return q, x, positions, names, "no joint states"
        if now - self._joint_time > timeout:
            return q, x, positions, names, \
                f"joint states stale ({now - self._joint_time:.2f} s old)"
        if q is None:
            missing = sorted(set(self.robot.joint_names) - set(names))
            return q, x, positions, names, \
                f"joint_states lacks {', '.join(missing) or 'positions'}"
        if ts is None:
            return q, x, positions, names, "no task state"
        if now - self._task_time > timeout:
            return q, x, positions, names, \
                f"task state stale ({now - self._task_time:.2f} s old)"
        if not ts.valid:
            return q, x, positions, names, "marker lost"
        if x is None:
            return q, x, positions, names, \
                f"task state has {len(ts.position)} values, expected {self.task.m}"
        if self._target_lost:
            return q, x, positions, names, "target lost (the target topic says invalid)"
        positions = self._positions_at(ts, positions)
        target_timeout = self._values["target_timeout"]
        if (self._target_time is not None and target_timeout > 0
                and now - self._target_time > target_timeout):
            return q, x, positions, names, \
                f"target stale ({now - self._target_time:.2f} s old)"
        return q, x, positions, names, None

    def _request_jacobian(self, positions: np.ndarray, x: np.ndarray, timeout: float):
        """(J (m, k), estimator name, problem): ask the estimator, wait at most timeout.
        The answer's uncertainty goes to self._answer_uncertainty (NaN without one)."""
        self._answer_uncertainty = math.nan
        if not self._client.service_is_ready():
            return None, "", f"estimator unavailable: no service {self._client.srv_name}"
        request = EstimateJacobian.Request(joint_positions=positions.tolist(),
                                           task_position=x.tolist())
        answered = threading.Event()
        future = self._client.call_async(request)
        future.add_done_callback(lambda _: answered.set())
        if not answered.wait(timeout):
            self._client.remove_pending_request(future)
            future.cancel()
            now = time.monotonic()
            if self._unanswered_since is None:
                self._unanswered_since = now - timeout
            silent = now - self._unanswered_since
            if silent >= self._values["fault_latch_after"]:
                return None, "", f"estimator unavailable: no answer for {silent:.1f} s"
            return None, "", f"estimator timeout (no answer within {timeout * 1e3:.0f} ms)"
        self._unanswered_since = None
        response = future.result()
        if response is None:
            return None, "", "estimator failed: no response"
        name = response.estimator
        if not response.success:
            return None, name, f"estimator failed: {response.message}"
        m, k, n = self.task.m, self.task.k, self.robot.n
        rows, cols = int(response.rows), int(response.cols)
        if rows * cols != len(response.jacobian) or rows != m or cols not in (k, n):
            return None, name, (f"estimator returned a {rows}x{cols} Jacobian with "
                                f"{len(response.jacobian)} values, expected {m}x{k}")
        jac = np.asarray(response.jacobian, dtype=float).reshape(rows, cols)
        self._answer_uncertainty = float(response.uncertainty)
        if cols != k:                       # full-arm columns: keep the driven joints
            jac = jac[:, self.task.active]
        return jac, name, None

    def _hold_jacobian(self, jac, estimator: str, problem: str | None, now: float):
        """Remember a good answer; on a missed deadline, the last one while it is younger
        than jacobian_hold (estimator name marked "(held)"). Failures never hold."""
        if problem is None:
            self._last_jacobian = (jac, estimator, now, self._answer_uncertainty)
            return jac, estimator, problem
        last = self._last_jacobian
        if (problem.startswith("estimator timeout") and last is not None
                and now - last[2] <= self._values["jacobian_hold"]):
            self.held_cycles += 1
            self._answer_uncertainty = last[3]
            return last[0], f"{last[1]} (held)", None
        return jac, estimator, problem

    def _cycle(self) -> None:
        now = time.monotonic()
        # The status describes this cycle's inputs: stamped when the cycle started, not
        # after the estimator's answer (whose round trip varies).
        stamp = self.get_clock().now().to_msg()
        with self._lock:
            target, target_velocity = self._target_now(now)
            generation = self._target_gen
            q, x, positions, names, problem = self._read_inputs(now)
            config, timeout = self._config, self._values["estimator_timeout"]
            u_slowdown = self._values["uncertainty_slowdown"]
            u_halt = self._values["uncertainty_halt"]
            if q is not None and self._cond_pose is not None \
                    and np.array_equal(q, self._cond_pose):
                prev_condition = self._cond_ref
            else:
                prev_condition = self._cond_last
            joint_index = self._joint_order[1] if names == self._joint_order[0] else None

        state, reason, estimator, condition = ServoStatus.IDLE, "", "", 0.0
        qdot = info = None
        uncertainty, gain_scale = math.nan, 1.0
        if target is not None:
            if problem is None:
                jac, estimator, problem = self._request_jacobian(positions, x, timeout)
                jac, estimator, problem = self._hold_jacobian(jac, estimator, problem, now)
            if problem is None:
                uncertainty = self._answer_uncertainty
                gain_scale = float(uncertainty_scale(uncertainty, u_slowdown, u_halt))
                if gain_scale <= 0.0:
                    problem = (f"uncertain (estimator uncertainty {uncertainty:.3g} >= "
                               f"uncertainty_halt {u_halt:g})")
                elif gain_scale < 1.0:
                    config = replace(config, gain=config.gain * gain_scale)
            if problem is not None:
                state, reason = ServoStatus.HALTED, problem
            elif self._latched:
                state, reason = ServoStatus.HALTED, ""
            else:
                qdot, info = control_step(
                    jac, x, target, q[self.task.active], config, self._lower, self._upper,
                    velocity_limits=self._velocity_limits, prev_condition=prev_condition,
                    rank=self._rank, condition_transform=self.task.condition_transform,
                    inverse_rank=self._rank, x_star_dot=target_velocity,
                    error_fn=error_fn(self.task))
                condition = float(info.condition)
                if info.halted:
                    state = ServoStatus.HALTED
                    reason = info.describe(joint_names=self._active_names)

        full = np.zeros(self.robot.n)          # robot joint order
        with self._lock:
            if target is not None and self._target is None:
                # Cancelled while waiting for the estimator: idle, zero.
                target, state, reason = None, ServoStatus.IDLE, ""
            elif target is not None and generation != self._target_gen:
                # A new target, ~/resume or ~/cancel came while this cycle waited for the
                # estimator: its outcome (a fault, a latch) belongs to the old one. The
                # next cycle starts within a period; the driver holds this one's gap.
                self.dropped_cycles += 1
                return
            fault = (target is not None and state == ServoStatus.HALTED
                     and reason.startswith(_LATCHING))
            if not fault:
                self._fault_since = None
            elif self._fault_since is None:
                self._fault_since = now
            if (fault and not self._latched
                    and now - self._fault_since >= self._values["fault_latch_after"]):
                self._latched = reason
            latched = bool(target is not None and self._latched)
            if latched:
                state = ServoStatus.HALTED
                reason = (reason or f"cause cleared ({self._latched})") + _LATCH_HINT
                info = None
            if target is not None:
                if info is not None and not math.isnan(condition):
                    self._cond_pose, self._cond_ref = q, prev_condition
                    self._cond_last = condition
                if state == ServoStatus.HALTED:
                    # Halted cycles are no evidence of a stall.
                    self._monitor.reset()
                else:
                    converged, stalled = self._monitor.update(
                        float(info.error_norm) if self.task.name != "pose"
                        else float(self.task.distance(x, target)))
                    if target_velocity is not None:
                        # A moving target: followed on target too, and a steady tracking
                        # error is no stall.
                        full[self.task.active] = qdot
                        state = ServoStatus.CONVERGED if converged[0] \
                            else ServoStatus.SERVOING
                    elif converged[0]:
                        state = ServoStatus.CONVERGED
                    else:
                        full[self.task.active] = qdot
                        state = ServoStatus.STALLED if stalled[0] else ServoStatus.SERVOING
                        if stalled[0]:
                            reason = (f"error fell less than {self._monitor.stall_fraction:.0%}"
                                      f" in {self._monitor.stall_window} cycles")
                self._step += 1
            step = self._step
            self._log_transition(state, reason)
        self._latched_now = latched
        if joint_index is None or not names:   # unnamed JointState: robot order
            command = full
        else:                                   # /joint_states order
            command = np.zeros(len(names))
            command[joint_index] = full
        self._command_pub.publish(Float64MultiArray(data=command.tolist()))
        self._publish_status(state, reason, estimator, condition, target, x, command, step,
                             stamp, uncertainty=uncertainty, gain_scale=gain_scale)
        if q is not None and now - self._last_markers >= 1.0 / MARKER_RATE:
            self._last_markers = now
            text = STATE_NAMES[state]
            if target is not None and x is not None:
                text += f" |e| {float(self.task.distance(x, target)):.4g} {self.task.units}"
            if estimator:
                text += f" [{estimator}, cond {condition:.3g}]"
            if reason:
                text += f"\n{reason}"
            pose = self.task.name == "pose" and target is not None
            self._marker_pub.publish(servo_markers(
                self.robot, q, target[:3] if pose else target, self.task.units,
                self._values["frame_id"], stamp, status_text=text,
                target_rotation=self.task.rotation(target) if pose else None))

    def _log_transition(self, state: int, reason: str) -> None:
        """Log a change of state or of the kind of reason once (lock held)."""
        kind = (state, reason.split(" (")[0])
        if kind == self._last_logged:
            return
        self._last_logged = kind
        if state == ServoStatus.HALTED:
            self.get_logger().warning(f"halted: {reason}")
        else:
            self.get_logger().info(STATE_NAMES[state] + (f": {reason}" if reason else ""))

    def _publish_status(self, state, reason, estimator, condition, target, x, command,
                        step, stamp, uncertainty=math.nan, gain_scale=1.0) -> None:
        status = ServoStatus()
        status.header.stamp = stamp
        status.header.frame_id = self._values["frame_id"]
        status.state = state
        status.state_name = STATE_NAMES[state]
        status.reason = reason
        status.task = self.task.name
        status.estimator = estimator
        if target is not None and x is not None:
            status.error_norm = float(self.task.distance(x, target))
        status.condition_number = condition if math.isfinite(condition) else float("inf")
        status.target = [] if target is None else target.tolist()
        status.position = [] if x is None else x.tolist()
        status.command = command.tolist()
        status.step = step
        status.latched = self._latched_now
        status.uncertainty = float(uncertainty)
        status.gain_scale = float(gain_scale)
        self._status_pub.publish(status)


def main(args=None) -> int:
    # The cycle runs on its own thread (see the module docstring); bad parameters: one
    # FATAL line, exit code 1.
    return run_node(ControllerNode, NODE_NAME, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
