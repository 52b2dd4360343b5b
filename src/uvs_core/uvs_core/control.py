# Over 600 lines: control_step is one algorithm (paper Eq. 1 and each safety stage in the
# order it applies) that the controller node and the benchmark must run identically.
"""The servo control law (paper Eq. 1, Algorithm 1) and convergence / stall bookkeeping.

One implementation serves the controller node (one arm, one step per cycle)
and the offline benchmark (many trajectories stepped together), so every
function here is vectorised over a batch ``B`` and a batched call equals a
loop of single calls.

Shapes: ``m`` task dimension (Jacobian rows), ``k`` active joints (Jacobian
columns), ``B`` batch. Units: x in task units (m or px), J in task units/rad,
joint positions in rad, velocities in rad/s.

The law, per trajectory::

    e     = x* - x
    qdot  = J+ (xdot* + gain e) + gain (I - J+ J) y
                                                Eq. 1 with the feed-forward of a moving
                                                target's velocity xdot* (0: Eq. 1 as is);
                                                y pulls joints to mid-range
    qdot *= s_cond                              slow down near a singularity
    qdot *= s_vel                               whole-vector velocity cap
    qdot  = 0 if a joint would pass limit - margin within dt

``J+`` is the Moore-Penrose pseudo-inverse (``damping == 0``, as in the paper)
or the damped least-squares inverse ``J^T (J J^T + lambda^2 I)^-1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

__all__ = [
    "ControlConfig", "ControlInfo", "control_step", "pseudo_inverse", "condition_number",
    "task_rank", "midrange_gradient", "uncertainty_scale", "ServoMonitor", "JOINT_LIMIT_POLICIES",
    "VELOCITY_LIMIT_MODES",
    "HALT_NONE", "HALT_NONFINITE_JACOBIAN", "HALT_NONFINITE_STATE", "HALT_SINGULAR",
    "HALT_JOINT_LIMIT", "HALT_REASONS",
]

# Reason codes of ControlInfo.reason (int8 per trajectory).
#: ControlConfig.joint_limit_policy choices
JOINT_LIMIT_POLICIES = ("halt", "lock", "mask")
#: ControlConfig.velocity_limit_mode choices
VELOCITY_LIMIT_MODES = ("scale", "clip")

HALT_NONE = 0
HALT_NONFINITE_JACOBIAN = 1
HALT_NONFINITE_STATE = 2
HALT_SINGULAR = 3
HALT_JOINT_LIMIT = 4
HALT_REASONS = {
    HALT_NONE: "",
    HALT_NONFINITE_JACOBIAN: "non-finite jacobian",
    HALT_NONFINITE_STATE: "non-finite position or target",
    HALT_SINGULAR: "near singularity",
    HALT_JOINT_LIMIT: "joint limit",
}

# A condition number that fell by less than this fraction since the previous
# step counts as "not moving away from the singularity" (see control_step).
_APPROACH_TOLERANCE = 0.01


@dataclass(frozen=True)
class ControlConfig:
    """Options of the control law; validated on construction (ValueError says which).

    gain: lambda of Eq. 1, 1/s (paper 1.0).
    damping: damped-least-squares lambda, task units; 0 = plain pseudo-inverse (paper).
    cond_slowdown, cond_halt: condition-number thresholds (defaults: MoveIt Servo's
        17 and 30): the command scales linearly from 1 at cond_slowdown to 0 at
        cond_halt and halts beyond; ``inf`` disables (the paper's evaluation).
        ``1 <= cond_slowdown <= cond_halt``. They apply to the task's condition
        measure (control_step's rank and condition_transform); each task has its
        own defaults (Task.cond_thresholds, see for_task).
    max_joint_velocity: rad/s (paper 1.22); what a faster command does is
        velocity_limit_mode's. ``inf`` disables.
    velocity_limit_mode: "scale": the whole command is scaled down until every joint
        is within its cap, so the direction of joint motion, hence of the task-space
        step, is kept (MoveIt Servo's rule; the default). "clip": each joint is clipped
        to its cap on its own (the paper's reference rollout, `uvs benchmark`): faster
        on many-joint commands, but the task-space step turns away from the error.
    joint_limit_margin: rad kept free before each position limit.
    nullspace_gain: weight of Eq. 1's (I - J+ J) y term, y the gradient that pulls
        limited joints to the middle of their range; 0 = off (paper).
    dt: s, control period, used to predict joint-limit crossings.
    joint_limit_policy: what a command that would take a joint past limit - margin
        within limit_lookahead does. "halt": zero the whole command (reason joint
        limit; the paper's evaluation and earlier uvs). "lock": that joint moves at the
        fastest speed that keeps it inside within the look-ahead (0 once in the margin)
        and the others solve the rest of the task (saturation in the null space; the
        redundant Gen3 usually still has a way); halt only when that solution would not
        reduce the error. "mask": that joint is not moved and the others keep their
        command, never halting (the paper's reference simulator, with limit_lookahead
        0.5 s = its 10 steps; the driver's guard does the same): no re-solve, so the
        task-space step is not the one asked for.
    limit_lookahead: s over which joint limits are predicted; 0 = dt. The driver's
        guard zeroes a joint that would pass its limit within its own look-ahead (0.5 s):
        the controller predicts as far, so the driver's guard is not what stops it.
    """

    gain: float = 1.0
    damping: float = 0.0
    cond_slowdown: float = 17.0
    cond_halt: float = 30.0
    max_joint_velocity: float = 1.22
    joint_limit_margin: float = 0.05
    nullspace_gain: float = 0.0
    dt: float = 0.05
    joint_limit_policy: str = "halt"
    limit_lookahead: float = 0.0
    velocity_limit_mode: str = "scale"

    def __post_init__(self) -> None:
        if self.joint_limit_policy not in JOINT_LIMIT_POLICIES:
            raise ValueError(f"joint_limit_policy must be one of "
                             f"{', '.join(JOINT_LIMIT_POLICIES)}, got {self.joint_limit_policy!r}")
        if self.velocity_limit_mode not in VELOCITY_LIMIT_MODES:
            raise ValueError(f"velocity_limit_mode must be one of "
                             f"{', '.join(VELOCITY_LIMIT_MODES)}, got "
                             f"{self.velocity_limit_mode!r}")
        for f in fields(self):
            if f.name in ("joint_limit_policy", "velocity_limit_mode"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
            value = float(value)
            object.__setattr__(self, f.name, value)
            if math.isnan(value):
                raise ValueError(f"{f.name} must not be NaN")
        finite = ("gain", "damping", "joint_limit_margin", "nullspace_gain", "dt",
                  "limit_lookahead")
        for name in finite:
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if not self.gain > 0:
            raise ValueError(f"gain must be > 0, got {self.gain}")
        for name in ("damping", "joint_limit_margin", "nullspace_gain", "limit_lookahead"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0, got {self.dt}")
        if not self.max_joint_velocity > 0:
            raise ValueError(f"max_joint_velocity must be > 0, got {self.max_joint_velocity}")
        if not 1.0 <= self.cond_slowdown <= self.cond_halt:
            raise ValueError("condition thresholds must satisfy 1 <= cond_slowdown <= "
                             f"cond_halt, got {self.cond_slowdown} and {self.cond_halt}")

    @classmethod
    def for_task(cls, task, **overrides) -> ControlConfig:
        """Defaults with the task's condition thresholds (``task.cond_thresholds``);
        keyword overrides win. task: a uvs_core.tasks.Task."""
        slowdown, halt = task.cond_thresholds
        return cls(**{"cond_slowdown": slowdown, "cond_halt": halt, **overrides})

    @classmethod
    def paper(cls, dt: float = 0.05) -> ControlConfig:
        """The paper's evaluation: gain 1, plain pseudo-inverse, no condition checks,
        1.22 rad/s cap, no joint-limit margin, no null-space term."""
        return cls(gain=1.0, damping=0.0, cond_slowdown=math.inf, cond_halt=math.inf,
                   max_joint_velocity=1.22, joint_limit_margin=0.0, nullspace_gain=0.0,
                   dt=dt)


class ControlInfo(NamedTuple):
    """What control_step decided, per trajectory (leading shape () or (B,)).

    condition: condition number of J (of W J with a condition_transform W) over its
        first ``rank`` singular values (inf when singular, NaN when J is not finite).
    cond_scale: factor from the condition check, in [0, 1].
    velocity_scale: factor from the velocity cap, in (0, 1].
    scale: the product, 0 where halted.
    halted: bool, the command was zeroed.
    reason: int8 code (HALT_*; HALT_REASONS maps it to text).
    error_norm: |x* - x| in task units (NaN when x or x* is not finite).
    limit_joints: (..., k) bool, joints that would have passed limit - margin within
        the look-ahead (under the lock policy: the joints held at their bound).
    """

    condition: np.ndarray
    cond_scale: np.ndarray
    velocity_scale: np.ndarray
    scale: np.ndarray
    halted: np.ndarray
    reason: np.ndarray
    error_norm: np.ndarray
    limit_joints: np.ndarray

    def describe(self, index: int | None = None, joint_names=None) -> str:
        """Human-readable reason for one trajectory ("" when not halted).

        index: row of a batched info (None for an unbatched one).
        joint_names: (k,) names of the active joints, for joint-limit messages.
        """
        def pick(a):
            a = np.asarray(a)
            return a if index is None else a[index]

        code = int(pick(self.reason))
        text = HALT_REASONS[code]
        if code == HALT_SINGULAR:
            text += f" (condition number {float(pick(self.condition)):.4g})"
        elif code == HALT_JOINT_LIMIT:
            idx = np.flatnonzero(pick(self.limit_joints))
            names = [str(joint_names[i]) if joint_names is not None else f"joint {i}"
                     for i in idx]
            text += ": " + ", ".join(names)
        return text


def uncertainty_scale(uncertainty, slowdown: float, halt: float) -> np.ndarray:
    """Factor of the gain for the estimator's uncertainty of J (0 = halt).

    uncertainty: u, scalar or (B,), dimensionless (EstimateJacobian.uncertainty;
    NaN = unknown). slowdown, halt: thresholds, >= 0, ``inf`` = off. Returns,
    shaped like u: 1 where u <= slowdown or u is NaN (an estimator that knows
    nothing of its uncertainty leaves the law unchanged), falling linearly to 0
    at halt, and 0 where u >= halt (the caller halts). A slowdown above halt
    acts as equal to it (halt only, no ramp); slowdown alone (halt = inf) does
    nothing, as the ramp has no end.
    """
    u = np.asarray(uncertainty, dtype=float)
    slowdown = min(float(slowdown), float(halt))
    scale = np.ones_like(u)
    if math.isinf(halt):
        return scale
    with np.errstate(invalid="ignore", divide="ignore"):
        ramp = (halt - u) / (halt - slowdown) if halt > slowdown else np.zeros_like(u)
    known = ~np.isnan(u)
    scale = np.where(known & (u > slowdown), np.clip(ramp, 0.0, 1.0), scale)
    scale = np.where(known & (u >= halt), 0.0, scale)
    return scale


def task_rank(task) -> int:
    """Rank a task's Jacobian can have: min(m, k, 6).

    Every task's x is a function of the tool pose (6 degrees of freedom), so
    e.g. the 12x7 multi-point Jacobian has rank 6 at most; its condition number
    is taken over the first 6 singular values, not all 7 (the 7th is always 0).
    """
    return int(min(task.m, task.k, 6))


def _as_batch(a, width: int, batch: int, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.shape not in ((width,), (batch, width)):
        raise ValueError(f"{what} must have shape ({width},) or ({batch}, {width}), "
                         f"got {a.shape}")
    return np.broadcast_to(a, (batch, width))


def _svd(jac: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched thin SVD of (B, m, k): U (B, m, r), s (B, r), Vt (B, r, k)."""
    return np.linalg.svd(jac, full_matrices=False)


def _inverse_from_svd(u, s, vt, damping: float) -> np.ndarray:
    """(B, k, m) pseudo-inverse (damping 0) or damped least-squares inverse."""
    if damping > 0.0:
        s_inv = s / (s * s + damping * damping)
    else:
        # numpy's pinv cut-off: singular values below max(m, k) * eps * s_max are zero.
        cutoff = max(u.shape[-2], vt.shape[-1]) * np.finfo(float).eps * s[..., :1]
        with np.errstate(divide="ignore"):
            s_inv = np.where(s > cutoff, 1.0 / np.where(s > 0, s, 1.0), 0.0)
    return np.swapaxes(vt, -1, -2) @ (s_inv[..., :, None] * np.swapaxes(u, -1, -2))


def _condition_from_svd(s: np.ndarray, rank: int) -> np.ndarray:
    big, small = s[..., 0], s[..., rank - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = big / small
    return np.where(small > 0, cond, np.inf)


def pseudo_inverse(jac: np.ndarray, damping: float = 0.0) -> np.ndarray:
    """J+ of J: (..., m, k) -> (..., k, m). damping 0: Moore-Penrose; > 0: damped LS
    ``J^T (J J^T + damping^2 I)^-1``."""
    jac = np.asarray(jac, dtype=float)
    lead = jac.shape[:-2]
    flat = jac.reshape(-1, *jac.shape[-2:])
    out = _inverse_from_svd(*_svd(flat), damping)
    return out.reshape(*lead, jac.shape[-1], jac.shape[-2])


def condition_number(jac: np.ndarray, rank: int | None = None,
                     transform: np.ndarray | None = None) -> np.ndarray:
    """s_1 / s_rank of W J: (..., m, k) -> (...,); inf when s_rank is 0, NaN when J is
    not finite.

    rank: how many singular values count (default min(m, k); see task_rank).
    transform: (m', m) row map W applied before the singular values are taken
        (a task's ``condition_transform``); None = identity.
    """
    jac = np.asarray(jac, dtype=float)
    if transform is not None:
        jac = np.asarray(transform, dtype=float) @ jac
    r = min(jac.shape[-2:]) if rank is None else int(rank)
    finite = np.all(np.isfinite(jac), axis=(-2, -1))
    s = np.linalg.svd(np.where(finite[..., None, None], jac, 0.0), compute_uv=False)
    return np.where(finite, _condition_from_svd(s, r), np.nan)


def midrange_gradient(qa: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """y of Eq. 1 that pulls joints to the middle of their range, 1/rad * rad = rad.

    y = -grad H, H(q) = 1/2 sum_i ((q_i - mid_i) / half_i)^2 over limited joints;
    continuous joints (infinite limits) get 0. qa: (..., k) rad -> (..., k).
    """
    qa = np.asarray(qa, dtype=float)
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    limited = np.isfinite(lower) & np.isfinite(upper)
    lo, hi = np.where(limited, lower, -1.0), np.where(limited, upper, 1.0)
    mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    return np.where(limited, -(qa - mid) / (half * half), 0.0)


def control_step(
    jac: np.ndarray,
    x: np.ndarray,
    x_star: np.ndarray,
    qa: np.ndarray | None = None,
    config: ControlConfig | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    *,
    velocity_limits: np.ndarray | None = None,
    prev_condition: np.ndarray | None = None,
    rank: int | None = None,
    condition_transform: np.ndarray | None = None,
    inverse_rank: int | None = None,
    x_star_dot: np.ndarray | None = None,
    error_fn=None,
) -> tuple[np.ndarray, ControlInfo]:
    """One step of the inverse-Jacobian controller (paper Eq. 1 / Algorithm 1).

    jac: (B, m, k) or (m, k) Jacobian estimate, task units/rad.
    x: (B, m) or (m,) current task state; x_star: (B, m) or (m,) target.
    qa: (B, k) or (k,) rad, active joint positions; needed for the joint-limit
        check and the null-space term (skipped when None).
    config: ControlConfig (default ControlConfig()).
    lower, upper: (k,) or (B, k) rad, position limits of the active joints
        (continuous joints -inf / +inf, never checked); None skips the check.
    velocity_limits: (k,) rad/s per-joint caps applied together with
        config.max_joint_velocity (the smaller wins), whole vector scaled.
    prev_condition: (B,) or () condition numbers of the previous step of each
        trajectory, NaN where unknown. When given, the condition slowdown/halt
        applies only where the condition number has not fallen by 1 % or more
        since then, i.e. where the arm is not moving away from the singularity
        (MoveIt Servo slows only motion towards a singularity; a learned J
        cannot be evaluated at a predicted pose, so the trend stands in). An
        arm starting at a singular pose (the Gen3's straight home) can leave it,
        and one halted near a singularity stays halted until the caller resets
        prev_condition to NaN (a new target). None: applies wherever the
        condition number is high.
    rank: singular values counted by the condition number (default min(m, k);
        see task_rank).
    inverse_rank: singular values the inverse uses (None: all above numpy's pinv
        cut-off, the paper's). The controller node passes the task's rank: a learned
        12x7 multi-point J's 7th singular value is noise (the true one is 0), and its
        inverse dominated the command (Broyden's fitted J: condition 4.8e3).
    condition_transform: (m', m) row map W: the condition number is that of W J
        (a task's ``condition_transform``, which makes it measure the distance from
        a singularity of the arm whatever units x stacks); None = J's own. Only the
        condition check uses it; the inverse is always that of J.
    x_star_dot: (B, m) or (m,) velocity of the target, task units/s (a moving
        target's ẋ*): the feed-forward term, qdot = J+ (ẋ* + gain (x* - x)), so a target
        moving at ẋ* is followed without the lag ẋ*/gain of the feedback alone. None (or
        zeros) gives the law without it, bit for bit. Every safety rule applies to the
        sum (condition slowdown and halt, velocity cap, joint-limit policy; under "lock"
        the progress check asks that the step still goes along ẋ* + gain e); a
        non-finite ẋ* halts as a non-finite target does.
    error_fn: the task's error, (x (B, m), x* (B, m)) -> e (B, m) (``Task.error``; the
        pose task's orientation error is the log map of R* R^T, not a difference).
        None: e = x* - x, the same numbers as every other task's Task.error.

    Returns (qdot, info): qdot (B, k) or (k,) rad/s, zero where halted, and a
    ControlInfo with the same leading shape. Non-finite J, x, x* or qa give a
    zero command with a reason instead of raising.
    """
    config = ControlConfig() if config is None else config
    jac = np.asarray(jac, dtype=float)
    if jac.ndim not in (2, 3):
        raise ValueError(f"J must have shape (m, k) or (B, m, k), got {jac.shape}")
    single = jac.ndim == 2
    if single:
        jac = jac[None]
    b, m, k = jac.shape
    r = min(m, k) if rank is None else int(rank)
    if not 1 <= r <= min(m, k):
        raise ValueError(f"rank must be in 1..{min(m, k)}, got {rank}")
    x = _as_batch(x, m, b, "x")
    x_star = _as_batch(x_star, m, b, "x_star")
    xsd = None if x_star_dot is None else _as_batch(x_star_dot, m, b, "x_star_dot")
    qa_b = None if qa is None else _as_batch(qa, k, b, "qa")

    finite_j = np.all(np.isfinite(jac), axis=(1, 2))
    finite_x = np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(x_star), axis=1)
    if xsd is not None:
        finite_x &= np.all(np.isfinite(xsd), axis=1)
    if qa_b is not None:
        finite_x &= np.all(np.isfinite(qa_b), axis=1)
    ok = finite_j & finite_x
    if error_fn is None:
        error = x_star - x
    else:
        with np.errstate(invalid="ignore"):
            error = np.asarray(error_fn(x, x_star), dtype=float)
        if error.shape != (b, m):
            raise ValueError(f"error_fn must return shape ({b}, {m}), got {error.shape}")
    with np.errstate(invalid="ignore"):
        error_norm = np.linalg.norm(error, axis=1)
    jz = np.where(ok[:, None, None], jac, 0.0)
    ez = np.where(ok[:, None], error, 0.0)
    if xsd is not None and np.any(xsd != 0.0):
        # The feed-forward as an error: J+ (xdot* + gain e) = gain J+ (e + xdot* / gain), so
        # the rest of the law (slowdown, lock's re-solve, caps) is unchanged; rows with a
        # zero xdot* get e + 0 = e, the same numbers as without it.
        ez = ez + np.where(ok[:, None], xsd, 0.0) / config.gain

    u, s, vt = _svd(jz)
    if inverse_rank is not None and inverse_rank < s.shape[-1]:
        s_inv_src = s.copy()
        s_inv_src[..., int(inverse_rank):] = 0.0
    else:
        s_inv_src = s
    if condition_transform is not None:
        w = np.asarray(condition_transform, dtype=float)
        if w.ndim != 2 or w.shape[1] != m or not np.all(np.isfinite(w)):
            raise ValueError(f"condition_transform must be a finite (m', {m}) matrix, "
                             f"got shape {w.shape}")
        if not 1 <= r <= min(w.shape[0], k):
            raise ValueError(f"rank must be in 1..{min(w.shape[0], k)} with "
                             f"condition_transform, got {r}")
        s_cond = np.linalg.svd(w @ jz, compute_uv=False)
    else:
        s_cond = s
    condition = np.where(finite_j, _condition_from_svd(s_cond, r), np.nan)
    # Condition-number slowdown: 1 below cond_slowdown, linear to 0 at cond_halt.
    with np.errstate(invalid="ignore"):
        if math.isinf(config.cond_halt):
            cond_scale = np.ones(b)
        elif config.cond_halt == config.cond_slowdown:
            cond_scale = np.where(condition < config.cond_halt, 1.0, 0.0)
        else:
            cond_scale = np.clip((config.cond_halt - condition)
                                 / (config.cond_halt - config.cond_slowdown), 0.0, 1.0)
        singular = condition >= config.cond_halt
        if prev_condition is not None:
            prev = np.broadcast_to(np.asarray(prev_condition, dtype=float), (b,))
            leaving = condition < prev * (1.0 - _APPROACH_TOLERANCE)
            unknown = np.isnan(prev)
            free = leaving | unknown
            cond_scale = np.where(free, 1.0, cond_scale)
            singular &= ~free
    cond_scale = np.where(ok, cond_scale, 0.0)
    singular &= ok

    limits = np.full(k, config.max_joint_velocity)
    if velocity_limits is not None:
        limits = np.minimum(limits, np.broadcast_to(np.asarray(velocity_limits, float), (k,)))
    checks_limits = qa_b is not None and lower is not None and upper is not None
    horizon = config.limit_lookahead or config.dt
    y = None
    if checks_limits:
        qa_ok = np.where(ok[:, None], qa_b, 0.0)
        lo = np.broadcast_to(np.asarray(lower, float), (b, k)) + config.joint_limit_margin
        hi = np.broadcast_to(np.asarray(upper, float), (b, k)) - config.joint_limit_margin
        # The fastest each joint may move and still be inside limit - margin in `horizon`
        # (continuous joints: unbounded); 0 for a joint already in its margin.
        with np.errstate(invalid="ignore"):
            v_hi = np.maximum((hi - qa_ok) / horizon, 0.0)
            v_lo = np.minimum((lo - qa_ok) / horizon, 0.0)
        if config.nullspace_gain > 0.0:
            y = config.nullspace_gain * midrange_gradient(qa_ok, lower, upper)

    def command(fixed: np.ndarray | None, values: np.ndarray | None):
        """qdot (B, k), its velocity scale and qdot before the cap; the `fixed` joints move
        at `values` (rad/s, before the cap) and the others serve the rest of the task
        velocity."""
        if fixed is None:
            uu, ss, vv, jl, e_rest = u, s_inv_src, vt, jz, ez
        else:
            jl = np.where(fixed[:, None, :], 0.0, jz)
            uu, ss, vv = _svd(jl)
            if inverse_rank is not None and inverse_rank < ss.shape[-1]:
                ss[..., int(inverse_rank):] = 0.0
            # what the fixed joints already do, in error units (gain and slowdown undone)
            with np.errstate(divide="ignore", invalid="ignore"):
                per = np.where(cond_scale > 0, 1.0 / (config.gain * cond_scale), 0.0)
            e_rest = ez - per[:, None] * (jz @ np.where(fixed, values, 0.0)[:, :, None])[..., 0]
        j_inv = _inverse_from_svd(uu, ss, vv, config.damping)      # (B, k, m)
        qd = (j_inv @ e_rest[:, :, None])[:, :, 0]
        if y is not None:
            yl = y if fixed is None else np.where(fixed, 0.0, y)
            projector = np.eye(k) - j_inv @ jl
            qd = qd + (projector @ yl[:, :, None])[:, :, 0]
        qd = config.gain * qd * cond_scale[:, None]
        if fixed is not None:
            qd = np.where(fixed, values, qd)
        # Whole-vector cap (direction kept), as uvs_core.sim.scale_velocity; the fixed
        # joints' bounds hold under it (it only shrinks towards 0).
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(qd) / limits
        ratio = np.maximum(np.max(np.where(np.isnan(ratio), 0.0, ratio), axis=1,
                                  initial=0.0), 1.0)
        if config.velocity_limit_mode == "clip":
            # Each joint on its own (the paper's rollout); the scale reported is the
            # largest joint's, as for "scale".
            return np.clip(qd, -limits, limits), 1.0 / ratio, qd
        return qd / ratio[:, None], 1.0 / ratio, qd

    def passing(qd: np.ndarray) -> np.ndarray:
        """(B, k) joints that qd takes past limit - margin within the horizon."""
        if not checks_limits:
            return np.zeros((b, k), dtype=bool)
        return ((qd > v_hi) & (qd > 0)) | ((qd < v_lo) & (qd < 0))

    qdot, velocity_scale, uncapped = command(None, None)
    limit_joints = passing(qdot)
    at_limit = np.any(limit_joints, axis=1) & ok & ~singular
    if config.joint_limit_policy == "lock" and np.any(at_limit):
        # Saturation in the null space (after Flacco et al.'s SNS): a joint that would
        # pass its limit - margin within the horizon moves at the fastest speed that does
        # not (0 once in the margin), and the others solve the rest of the task; repeat
        # while another would (at most k rounds).
        fixed = limit_joints & at_limit[:, None]
        values = np.clip(uncapped, v_lo, v_hi)
        for _ in range(k):
            qd, vs, raw = command(fixed, values)
            more = passing(qd) & ~fixed & at_limit[:, None]
            if not np.any(more):
                break
            values = np.where(more, np.clip(raw, v_lo, v_hi), values)
            fixed |= more
        # The saturated solution counts when it still moves x towards x*: (J qd) . e > 0.
        progress = np.einsum("bm,bmk,bk->b", ez, jz, qd) > 0.0
        moves = at_limit & progress & ~np.any(passing(qd), axis=1)
        qdot = np.where(moves[:, None], qd, qdot)
        velocity_scale = np.where(moves, vs, velocity_scale)
        limit_joints = np.where(at_limit[:, None], fixed, limit_joints)
        at_limit &= ~moves

    if config.joint_limit_policy == "mask":
        qdot = np.where(limit_joints & at_limit[:, None], 0.0, qdot)
        at_limit[:] = False

    reason = np.full(b, HALT_NONE, dtype=np.int8)
    reason[at_limit] = HALT_JOINT_LIMIT
    reason[singular] = HALT_SINGULAR
    reason[~finite_x] = HALT_NONFINITE_STATE
    reason[~finite_j] = HALT_NONFINITE_JACOBIAN
    halted = reason != HALT_NONE
    qdot = np.where(halted[:, None], 0.0, qdot)
    scale = np.where(halted, 0.0, cond_scale * velocity_scale)

    info = ControlInfo(condition=condition, cond_scale=cond_scale,
                       velocity_scale=velocity_scale, scale=scale, halted=halted,
                       reason=reason, error_norm=error_norm, limit_joints=limit_joints)
    if single:
        return qdot[0], ControlInfo(*(a[0] for a in info))
    return qdot, info


class ServoMonitor:
    """Convergence and stall detection for B servo trajectories, one update per step.

    tolerance: task units; converged while |x* - x| < tolerance. Once converged a
        trajectory stays converged until the error exceeds resume_factor *
        tolerance (a target that moved, or drift), so a noisy error at the
        threshold does not toggle the command.
    stall_window: steps; stalled when, not converged, the error has not fallen
        by more than stall_fraction (relative) over the last stall_window steps.
        The defaults (20 steps, 5 %) mean "less than 5 % progress in 1 s" at
        20 Hz; gain 1 at 20 Hz shrinks the error ~64 % in that time.
    batch: B.

    History only counts steps that are neither converged nor reset: call
    ``reset`` when a trajectory's target changes or its command was halted.
    """

    def __init__(self, tolerance: float, stall_window: int = 20, stall_fraction: float = 0.05,
                 resume_factor: float = 1.5, batch: int = 1) -> None:
        if not (math.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be a finite number > 0, got {tolerance}")
        if int(stall_window) < 1:
            raise ValueError(f"stall_window must be >= 1, got {stall_window}")
        if not 0.0 <= stall_fraction < 1.0:
            raise ValueError(f"stall_fraction must be in [0, 1), got {stall_fraction}")
        if not resume_factor >= 1.0:
            raise ValueError(f"resume_factor must be >= 1, got {resume_factor}")
        self.tolerance = float(tolerance)
        self.stall_window = int(stall_window)
        self.stall_fraction = float(stall_fraction)
        self.resume_factor = float(resume_factor)
        self.batch = int(batch)
        self._history = np.full((self.stall_window + 1, self.batch), np.nan)
        self._count = np.zeros(self.batch, dtype=np.int64)
        self._t = 0
        self.converged = np.zeros(self.batch, dtype=bool)
        self.stalled = np.zeros(self.batch, dtype=bool)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the history (and convergence) of the masked trajectories (all by default)."""
        mask = np.ones(self.batch, dtype=bool) if mask is None else np.asarray(mask, bool)
        mask = np.broadcast_to(mask, (self.batch,))
        self._count[mask] = 0
        self.converged[mask] = False
        self.stalled[mask] = False

    def update(self, error_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Record one step's |x* - x| ((B,) or scalar). Returns (converged, stalled), (B,)
        bool each (scalars' callers take [0]). A NaN error counts as neither."""
        err = np.broadcast_to(np.asarray(error_norm, dtype=float), (self.batch,))
        finite = np.isfinite(err)
        threshold = np.where(self.converged, self.resume_factor * self.tolerance,
                             self.tolerance)
        self.converged = finite & (err < threshold)
        moving = finite & ~self.converged
        self._count = np.where(moving, self._count + 1, 0)
        slot = self._t % (self.stall_window + 1)
        self._history[slot] = err
        old = self._history[(self._t - self.stall_window) % (self.stall_window + 1)]
        self._t += 1
        full = self._count > self.stall_window
        with np.errstate(invalid="ignore"):
            self.stalled = full & moving & (err > old * (1.0 - self.stall_fraction))
        return self.converged.copy(), self.stalled.copy()
