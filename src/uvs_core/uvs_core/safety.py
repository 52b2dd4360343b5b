"""Safety envelope and look-ahead guards for joint velocity commands (no ROS).

The driver calls :func:`guard_command` on every command before it reaches any
backend; the controller calls :meth:`Envelope.target_problem` on every target.

- Joint guard (the paper's code): a joint is not moved when
  ``q + qdot * lookahead`` would pass one of its position limits (continuous
  joints exempt); a joint already past a limit may move back inside.
- Cartesian envelope: the tool point predicted one look-ahead ahead,
  ``p(q + qdot * lookahead)`` (robot FK, base frame), must stay inside an
  axis-aligned box and on the allowed side of a table plane
  ``normal . p >= height + margin``. A command that would leave the envelope
  zeroes the whole arm (its direction is no longer the one asked for if only
  some joints stop); a command that brings an arm already outside back
  towards the envelope is allowed, so the arm can always be recovered.
- Unit errors: a command beyond ``factor`` times a joint's velocity limit is
  refused as a likely units bug, not capped.

Configuration: the ``safety`` section of a robot YAML (schema at the top of
``config/robots/gen3.yaml``)::

    safety:
      box: {min: [x, y, z], max: [x, y, z]}      # m, base frame; .inf allowed
      table: {height: m, margin: m, normal: [0, 0, 1]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Envelope", "Verdict", "envelope_from_config", "guard_batch", "guard_command",
           "joint_lookahead_guard", "unit_error"]

DEFAULT_LOOKAHEAD = 0.5   # s: the paper's 10 * dt at dt = 0.05 s
DEFAULT_UNIT_ERROR_FACTOR = 2.0
_EPS = 1e-9               # m, tolerance on "the violation does not grow"


def _vector3(value: Any, what: str) -> np.ndarray:
    try:
        v = np.array([float(x) for x in value], dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected 3 numbers, got {value!r}") from None
    if v.shape != (3,) or np.any(np.isnan(v)):
        raise ValueError(f"{what}: expected 3 numbers, got {value!r}")
    return v


@dataclass(frozen=True, eq=False)
class Envelope:
    """Where the tool point may go, base frame.

    box_min, box_max: (3,) m, the axis-aligned box (±inf: unbounded).
    table_normal: (3,) unit vector pointing to the allowed side, or None for no table.
    table_offset: m, allowed iff ``table_normal . p >= table_offset`` (height + margin).
    """

    box_min: np.ndarray = field(default_factory=lambda: np.full(3, -np.inf))
    box_max: np.ndarray = field(default_factory=lambda: np.full(3, np.inf))
    table_normal: np.ndarray | None = None
    table_offset: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.box_min, float), np.asarray(self.box_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or np.any(lo >= hi):
            raise ValueError(f"safety box: min {lo} must be below max {hi} on every axis")
        object.__setattr__(self, "box_min", lo)
        object.__setattr__(self, "box_max", hi)
        if self.table_normal is not None:
            n = np.asarray(self.table_normal, float)
            norm = float(np.linalg.norm(n))
            if n.shape != (3,) or not norm > 0 or not math.isfinite(norm):
                raise ValueError(f"safety table: normal must be a nonzero 3-vector, got {n}")
            object.__setattr__(self, "table_normal", n / norm)
        object.__setattr__(self, "table_offset", float(self.table_offset))

    @property
    def bounded(self) -> bool:
        """Whether the envelope excludes anything."""
        return (self.table_normal is not None or bool(np.any(np.isfinite(self.box_min)))
                or bool(np.any(np.isfinite(self.box_max))))

    def without_table(self) -> Envelope:
        """The same box, no table plane."""
        return Envelope(self.box_min, self.box_max)

    def violation(self, p: np.ndarray) -> np.ndarray:
        """How far outside: p (..., 3) m -> (...,) m, 0 inside (sum over box faces and table)."""
        p = np.asarray(p, float)
        out = (np.maximum(self.box_min - p, 0.0) + np.maximum(p - self.box_max, 0.0)).sum(-1)
        if self.table_normal is not None:
            out = out + np.maximum(self.table_offset - p @ self.table_normal, 0.0)
        return out

    def point_problem(self, p: np.ndarray, what: str = "tool point") -> str | None:
        """Why point p (3,) m is outside the envelope, or None."""
        p = np.asarray(p, float)
        axes = "xyz"
        for i in range(3):
            if p[i] < self.box_min[i]:
                return f"{what} {axes[i]} = {p[i]:.3f} m below the safety box ({axes[i]} >= " \
                       f"{self.box_min[i]:g} m)"
            if p[i] > self.box_max[i]:
                return f"{what} {axes[i]} = {p[i]:.3f} m above the safety box ({axes[i]} <= " \
                       f"{self.box_max[i]:g} m)"
        if self.table_normal is not None:
            side = float(p @ self.table_normal)
            if side < self.table_offset:
                return f"{what} {self.table_offset - side:.3f} m into the table plane " \
                       f"(height + margin {self.table_offset:g} m)"
        return None

    def target_problem(self, target: np.ndarray, units: str) -> str | None:
        """Why a target of a point task (stacked points, m) is outside, or None.

        Image targets (units px) cannot be checked here: None (the driver still
        guards every command).
        """
        target = np.asarray(target, float)
        if units != "m" or target.size % 3:
            return None
        points = target.reshape(-1, 3)
        for i, p in enumerate(points):
            problem = self.point_problem(p, "target" if len(points) == 1 else f"target point {i}")
            if problem:
                return problem
        return None


def envelope_from_config(config: Mapping[str, Any] | None) -> Envelope:
    """An Envelope from a robot YAML's ``safety`` mapping (None or {}: unbounded)."""
    if not config:
        return Envelope()
    if not isinstance(config, Mapping):
        raise ValueError("'safety' must be a mapping with 'box' and/or 'table'")
    unknown = set(config) - {"box", "table"}
    if unknown:
        raise ValueError(f"safety: unknown keys {sorted(unknown)}; expected box, table")
    box = config.get("box") or {}
    lo = _vector3(box.get("min", [-np.inf] * 3), "safety.box.min")
    hi = _vector3(box.get("max", [np.inf] * 3), "safety.box.max")
    table = config.get("table")
    if not table:
        return Envelope(lo, hi)
    normal = _vector3(table.get("normal", [0.0, 0.0, 1.0]), "safety.table.normal")
    offset = float(table.get("height", 0.0)) + float(table.get("margin", 0.0))
    return Envelope(lo, hi, normal, offset)


@dataclass(frozen=True)
class Verdict:
    """What a guard did: qdot (n,) rad/s to apply, reason ("" when untouched)."""

    qdot: np.ndarray
    reason: str = ""

    @property
    def modified(self) -> bool:
        return bool(self.reason)


def unit_error(qdot: np.ndarray, velocity_limits: np.ndarray,
               factor: float = DEFAULT_UNIT_ERROR_FACTOR) -> list[int]:
    """Indices of joints commanded beyond factor * their limit (rad/s): likely a units bug."""
    return np.flatnonzero(np.abs(qdot) > factor * np.asarray(velocity_limits)).tolist()


def joint_lookahead_guard(q: np.ndarray, qdot: np.ndarray, lookahead: float,
                          lower: np.ndarray, upper: np.ndarray,
                          margin: float = 0.0) -> tuple[np.ndarray, list[int]]:
    """Zero each joint that would pass a position limit (less ``margin``) within
    ``lookahead`` s at its velocity (the paper's reference simulator looks 10 steps
    ahead).

    q: (n,) rad, qdot: (n,) rad/s, lower/upper: (n,) rad (±inf for continuous joints),
    margin: rad kept inside each limit.
    Returns (guarded qdot (n,), indices of the zeroed joints). Motion back
    towards the range is allowed even when the joint is outside it.
    """
    q, qdot = np.asarray(q, float), np.asarray(qdot, float)
    ahead = q + qdot * lookahead
    blocked = (((ahead > upper - margin) & (qdot > 0))
               | ((ahead < lower + margin) & (qdot < 0)))
    out = np.where(blocked, 0.0, qdot)
    return out, np.flatnonzero(blocked).tolist()


def guard_command(robot, envelope: Envelope, q: np.ndarray, qdot: np.ndarray,
                  lookahead: float = DEFAULT_LOOKAHEAD, margin: float = 0.0) -> Verdict:
    """The command to apply at q: joint guard, then the Cartesian envelope.

    robot: uvs_core.robot.Robot; q: (n,) rad, measured; qdot: (n,) rad/s, already
    capped; lookahead: s; margin: rad kept inside each joint limit.
    Returns a Verdict whose reason names what was zeroed.
    """
    q, qdot = np.asarray(q, float), np.asarray(qdot, float)
    guarded, blocked = joint_lookahead_guard(q, qdot, lookahead, robot.lower, robot.upper,
                                             margin)
    reasons = []
    if blocked:
        names = ", ".join(robot.joint_names[i] for i in blocked)
        reasons.append(f"joint limit within {lookahead:g} s: {names} not moved")
    if envelope.bounded and np.any(guarded):
        now = robot.position(q)
        ahead = robot.position(q + guarded * lookahead)
        grow = envelope.violation(ahead) - envelope.violation(now)
        if envelope.violation(ahead) > 0.0 and grow > -_EPS:
            problem = envelope.point_problem(ahead, f"tool point in {lookahead:g} s")
            reasons = [f"envelope: {problem}; command zeroed"]
            guarded = np.zeros_like(guarded)
    return Verdict(guarded, "; ".join(reasons))


def guard_batch(robot, envelope: Envelope, q: np.ndarray, qdot: np.ndarray,
                lookahead: float = DEFAULT_LOOKAHEAD) -> np.ndarray:
    """:func:`guard_command` for a batch, without reasons (babbling in simulation).

    q, qdot: (B, n) rad, rad/s. Returns the guarded (B, n) rad/s: joints that would
    pass a limit zeroed, and rows whose tool point would leave the envelope zeroed.
    """
    q, qdot = np.asarray(q, float), np.asarray(qdot, float)
    guarded, _ = joint_lookahead_guard(q, qdot, lookahead, robot.lower, robot.upper)
    if envelope.bounded:
        ahead = envelope.violation(robot.position(q + guarded * lookahead))
        leave = (ahead > 0.0) & (ahead - envelope.violation(robot.position(q)) > -_EPS)
        guarded = np.where(leave[:, None], 0.0, guarded)
    return guarded
