"""The controller's parameters: one spec (uvs_ros.params) for the node, its YAML and
the offline tools (benchmarks/parity.py builds the live law from it).

Imports no rclpy beyond uvs_ros.params' descriptors; the control law's settings come
out as a uvs_core ControlConfig (``control_config``), the convergence tolerance in
task units as ``tolerance``.
"""

from __future__ import annotations

import math

from uvs_core.control import JOINT_LIMIT_POLICIES, VELOCITY_LIMIT_MODES, ControlConfig
from uvs_core.tasks import TASK_NAMES, cond_thresholds
from uvs_ros.params import Param, ParamSpec
from uvs_ros.robot_model import robot_model_params, robot_model_reason

__all__ = ["ENVELOPE_MODES", "PARAMETERS", "SPEC", "TARGET_VELOCITY_MODES", "control_config",
           "tolerance", "validate_parameters"]

ENVELOPE_MODES = ("robot", "box", "off")
TARGET_VELOCITY_MODES = ("message", "estimate", "off")
# Convergence tolerance when the parameter is 0 ("by task units"): 5 mm per
# point for tasks in metres (norm over the stacked points), 2 px for image tasks.
_AUTO_TOLERANCE_M = 0.005
_AUTO_TOLERANCE_PX = 2.0

_DEFAULT = ControlConfig()


def _by_task(which: int) -> str:
    """'single_point 17, ...': each task's default condition threshold (0 slowdown, 1 halt)."""
    return ", ".join(f"{name} {cond_thresholds(name)[which]:g}" for name in TASK_NAMES)


#: name -> Param of every controller parameter, in the order config/controller.yaml lists them
PARAMETERS = {
    "task": Param("single_point",
        "Servo task: what x is, which joints are driven.", read_only=True, choices=TASK_NAMES),
    **robot_model_params("joint limits, markers"),
    "rate": Param(20.0,
        "Control rate, Hz (paper: 20, dt = 0.05 s).", range=(1.0, 1000.0)),
    "gain": Param(_DEFAULT.gain,
        "lambda of Eq. 1, 1/s: qdot = gain * J+ (x* - x) (paper 1.0).",
        range=(0.0, 100.0), constraints="> 0"),
    "damping": Param(_DEFAULT.damping,
        "Damped-least-squares lambda, task units; 0 = plain pseudo-inverse (paper).",
        range=(0.0, 1000.0)),
    "cond_slowdown": Param(0.0,
        "Condition number where slowing down starts, of the task's measure (J for "
        "single_point and visual_servo, the tool's twist Jacobian for multi_point); 0 = by "
        f"task ({_by_task(0)}); .inf disables. Only motion that does not lower the "
        "condition number is slowed.",
        constraints="0 (by task), or >= 1 and <= cond_halt"),
    "cond_halt": Param(0.0,
        "Condition number (the task's measure) where the command reaches zero and the "
        f"servo halts; 0 = by task ({_by_task(1)}); .inf disables (paper).",
        constraints="0 (by task), or >= cond_slowdown"),
    "uncertainty_slowdown": Param(math.inf,
        "Estimator uncertainty u (EstimateJacobian.uncertainty, dimensionless; nk_ens: "
        "the members' spread over |J|) above which the gain scales down, linearly to 0 at "
        "uncertainty_halt; above uncertainty_halt it acts as equal to it; .inf = off. "
        "u = NaN (an estimator without one) never slows.",
        constraints=">= 0; .inf = off"),
    "uncertainty_halt": Param(math.inf,
        "Estimator uncertainty u at or above which the command is zero and the servo halts "
        "with reason 'uncertain'; .inf = off. u = NaN never halts.",
        constraints=">= 0; .inf = off"),
    "max_joint_velocity": Param(_DEFAULT.max_joint_velocity,
        "Joint speed cap, rad/s (paper 1.22), applied as velocity_limit_mode says. Each "
        "joint's own limit applies too.", range=(0.0, 10.0),
        constraints="> 0"),
    "velocity_limit_mode": Param(_DEFAULT.velocity_limit_mode,
        "scale: a command over the cap is scaled as a whole vector, so the task-space step "
        "keeps its direction (MoveIt Servo's rule). clip: each joint is clipped on its own "
        "(the paper's rollout, `uvs benchmark`): faster on long multi-point moves, but the "
        "step turns away from the error (docs/parity.md).",
        choices=VELOCITY_LIMIT_MODES),
    "joint_limit_margin": Param(_DEFAULT.joint_limit_margin,
        "rad kept free before each position limit; what a command that would enter the "
        "margin within one period does is joint_limit_policy's (continuous joints exempt).",
        range=(0.0, 1.0)),
    "joint_limit_policy": Param("lock",
        "lock: lock the joints that would enter the margin and solve the task with the "
        "others (the redundant arm's way round a limit); HALTED with 'joint limit' only when "
        "that would not reduce the error. halt: zero the whole arm at once (the paper's "
        "evaluation).", choices=JOINT_LIMIT_POLICIES),
    "joint_limit_lookahead": Param(0.6,
        "s over which joint limits are predicted (0 = one period). The driver's look-ahead "
        "guard (its `lookahead`, 0.5 s) plus a period, the command's age when the driver "
        "applies it: so the driver's guard, which zeroes a joint without re-solving the "
        "task, is not what keeps the arm off its limits.",
        range=(0.0, 5.0)),
    "nullspace_gain": Param(_DEFAULT.nullspace_gain,
        "Weight of Eq. 1's (I - J+ J) y term pulling limited joints to mid-range; 0 = off "
        "(paper, and the default: with a learned J the projector leaks into the task and "
        "biases it; see docs/parity.md).", range=(0.0, 100.0)),
    "convergence_tolerance": Param(0.0,
        "Converged when |x* - x| is below this, task units (m or px); 0 = by task: "
        "5 mm per point in metres, 2 px for image tasks; pose: max(|p* - p|, 0.1 m/rad x "
        "angle) below it (5 mm: 5 mm and 0.05 rad).", range=(0.0, 1000.0)),
    "stall_window": Param(20,
        "Cycles over which the error must fall by more than stall_fraction, else STALLED.",
        range=(1, 100000)),
    "stall_fraction": Param(0.05,
        "Relative error decrease over stall_window that counts as progress.",
        range=(0.0, 0.99)),
    "estimator_timeout": Param(0.04,
        "Longest wait for the estimator's answer, s; must be shorter than the period "
        "1/rate. No answer in time: zero command, HALTED.", range=(0.0, 10.0),
        constraints="> 0 and < 1/rate"),
    "jacobian_hold": Param(0.075,
        "When the estimator misses its deadline, servo on with its last answer (of the "
        "current target) if it is at most this old, s; else zero command, HALTED. 0 = halt "
        "at the first miss. The default (1.5 periods at 20 Hz) bridges one late answer on "
        "a loaded machine and still halts at the second miss in a row: a dead estimator "
        "stops the arm within estimator_timeout + 2 periods.",
        range=(0.0, 1.0)),
    "target_timeout": Param(0.0,
        "A target from the target topic older than this (s, receipt time) is stale: zero "
        "command, HALTED until the next one. 0 = topic targets never go stale (one-shot "
        "targets); a tracked target marker publishes every frame (servo.launch.py "
        "target_source:=marker sets 0.5).", range=(0.0, 60.0)),
    "target_velocity": Param("message",
        "Velocity of a target from the target topic, fed forward (qdot = J+ (xdot* + gain "
        "(x* - x))): message = its TaskState.velocity field (empty: none; a trajectory "
        "streamer sets it); estimate = the median velocity between successive targets of "
        "the last target_velocity_window s (by receipt time; a tracked target marker); "
        "off = none (feedback alone lags a target moving at v by v / gain).",
        choices=TARGET_VELOCITY_MODES),
    "target_velocity_window": Param(0.2,
        "target_velocity estimate: s of topic targets whose successive velocities' median "
        "is the estimate (longer: less noise, more delay).", range=(0.0, 5.0),
        constraints="> 0"),
    "target_velocity_timeout": Param(0.25,
        "A topic target's velocity is fed forward, and x* extrapolated with it, while the "
        "message is at most this old, s; then the target is held still.",
        range=(0.0, 10.0)),
    "state_timeout": Param(0.25,
        "joint_states / task_state older than this (s, receipt time) are stale: zero "
        "command, HALTED.", range=(0.0, 60.0), constraints="> 0"),
    "fault_latch_after": Param(1.0,
        "A fault halt (estimator unavailable, late, failed; stale states) lasting this long, "
        "s, latches until ~/resume or a new target; shorter ones resume by themselves. Also "
        "how long without any answer makes the estimator 'unavailable'.",
        range=(0.0, 60.0), constraints="> 0"),
    "envelope": Param("box",
        "Safety envelope targets must lie in: robot = the robot YAML's safety box and table "
        "(a real arm), box = its box only (the sim, whose tasks sample targets below the "
        "table), off = none.", read_only=True, choices=ENVELOPE_MODES),
    "frame_id": Param("base_link",
        "Robot base frame: frame of the markers and of the status header."),
}

_CONTROL_FIELDS = ("gain", "damping", "cond_slowdown", "cond_halt", "max_joint_velocity",
                   "joint_limit_margin", "nullspace_gain", "joint_limit_policy",
                   "velocity_limit_mode")
# parameter name -> ControlConfig field, where they differ
_CONTROL_RENAMED = {"joint_limit_lookahead": "limit_lookahead"}


def control_config(values: dict) -> ControlConfig:
    """The ControlConfig of a complete set of parameter values (valid task name); a
    condition threshold of 0 takes the task's default (uvs_core.tasks.cond_thresholds)."""
    fields = {name: values[name] for name in _CONTROL_FIELDS}
    fields.update({field: values[name] for name, field in _CONTROL_RENAMED.items()})
    for name, by_task in zip(("cond_slowdown", "cond_halt"), cond_thresholds(values["task"])):
        if fields[name] == 0.0:
            fields[name] = by_task
    return ControlConfig(**fields, dt=1.0 / values["rate"])


def validate_parameters(values: dict) -> str | None:
    """Why this complete set of parameter values is unacceptable, or None (the checks
    beyond each parameter's own: SPEC runs those first)."""
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
    if not (math.isfinite(values["target_velocity_window"])
            and values["target_velocity_window"] > 0):
        return "target_velocity_window must be > 0"
    if not (math.isfinite(values["target_velocity_timeout"])
            and values["target_velocity_timeout"] >= 0):
        return "target_velocity_timeout must be >= 0"
    if not str(values["frame_id"]).strip():
        return "frame_id must not be empty"
    try:
        control_config(values)
    except ValueError as exc:
        if values["cond_slowdown"] == 0.0 or values["cond_halt"] == 0.0:
            return f"{exc} (0 = the task's default)"
        return str(exc)
    return None


#: The controller's ParamSpec: PARAMETERS, then robot_model_reason and validate_parameters.
SPEC = ParamSpec(PARAMETERS, checks=(robot_model_reason, validate_parameters))


def tolerance(values: dict, task) -> float:
    """Convergence tolerance in task units: the ``convergence_tolerance`` parameter, or
    when it is 0 the task's default (5 mm per point, 2 px; pose: 5 mm, with 0.1 m/rad
    for the angle in Task.distance)."""
    if values["convergence_tolerance"] > 0:
        return float(values["convergence_tolerance"])
    if task.units == "px":
        return _AUTO_TOLERANCE_PX
    if task.name == "pose":
        # Task.distance: 5 mm of position and 0.05 rad (2.9 deg) of angle
        return _AUTO_TOLERANCE_M
    return _AUTO_TOLERANCE_M * math.sqrt(task.m / 3.0)
