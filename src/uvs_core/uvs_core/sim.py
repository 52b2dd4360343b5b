"""Vectorised kinematic simulation of many arms: q <- q + dt * qdot (paper IV-A).

Commands are joint velocities of the task's active joints: rad/s for revolute
joints, m/s for prismatic ones (positions in rad or m). Two conventions
for each limit, chosen per Simulation:

- velocity ``"scale"`` (default): a command over the velocity limits is
  scaled as a whole vector, direction kept; ``"clip"``: each joint is
  clipped to its limit on its own, as the paper's reference simulator does
  (``np.clip(a, -1.22, 1.22)``; the direction changes).
- position ``"clip"`` (default): positions are clipped to the joint limits
  and the clipping is reported; ``"mask"``: as the reference simulator, a
  joint whose position ``mask_lookahead`` (10) steps ahead at this velocity,
  q + 10 qdot dt, would reach a limit gets zero velocity for the step.

Inactive joints stay at the task's ``q_fixed``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from uvs_core.tasks import Task

__all__ = ["scale_velocity", "StepResult", "Simulation", "VELOCITY_MODES", "LIMIT_MODES"]

#: how commands over the velocity limits are limited: whole vector, or per joint
VELOCITY_MODES = ("scale", "clip")
#: how the position limits are kept: clip positions, or zero joints about to pass them
LIMIT_MODES = ("clip", "mask")


def _ratio(qdot: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """max_i |qdot_i| / limit_i over the last axis, at least 1. -> (...,)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(qdot) / limits
    r = np.where(np.isnan(r), 0.0, r)     # 0 / 0: a zero command on a zero limit
    return np.maximum(np.max(r, axis=-1, initial=0.0), 1.0)


def scale_velocity(qdot: np.ndarray, limits: np.ndarray | float) -> np.ndarray:
    """Scale each command vector so every |qdot_i| <= limits_i, keeping its direction.

    qdot: (..., k) rad/s; limits: (k,) or scalar rad/s, > 0 (inf: no limit).
    Returns (..., k) rad/s; vectors within the limits are returned unchanged.
    """
    qdot = np.asarray(qdot, dtype=float)
    limits = np.broadcast_to(np.asarray(limits, dtype=float), qdot.shape[-1:])
    return qdot / _ratio(qdot, limits)[..., None]


class StepResult(NamedTuple):
    """Result of :meth:`Simulation.step`.

    q: (B, n) rad after the step; x: (B, m) task state after the step;
    scaled: (B,) bool, the command exceeded the velocity limits and was scaled;
    clipped: (B, k) bool, active joints stopped at a position limit (limit mode
    "clip": their position was clipped; "mask": their velocity was zeroed);
    qdot: (B, k) rad/s, the velocity actually applied (before position clipping).
    """

    q: np.ndarray
    x: np.ndarray
    scaled: np.ndarray
    clipped: np.ndarray
    qdot: np.ndarray


class Simulation:
    """B kinematic arms running one task, stepped together.

    task: the Task (active joints, q_fixed, forward map).
    dt: s per step. batch: number of arms B.
    velocity_limits: (k,) or scalar rad/s (m/s) for the active joints; default the
    robot's limits of the active joints. A prismatic joint never exceeds the
    robot's own limit (m/s), whatever cap is given.
    velocity_mode: "scale" or "clip", limit_mode: "clip" or "mask" (module
    docstring); mask_lookahead: steps ahead the "mask" mode looks, > 0.
    """

    def __init__(self, task: Task, dt: float = 0.05, batch: int = 1,
                 velocity_limits: np.ndarray | float | None = None,
                 velocity_mode: str = "scale", limit_mode: str = "clip",
                 mask_lookahead: float = 10.0) -> None:
        if not dt > 0:
            raise ValueError("dt must be > 0")
        if int(batch) < 1:
            raise ValueError("batch must be >= 1")
        if velocity_mode not in VELOCITY_MODES:
            raise ValueError(f"velocity_mode must be one of {', '.join(VELOCITY_MODES)}, "
                             f"got {velocity_mode!r}")
        if limit_mode not in LIMIT_MODES:
            raise ValueError(f"limit_mode must be one of {', '.join(LIMIT_MODES)}, "
                             f"got {limit_mode!r}")
        if not mask_lookahead > 0:
            raise ValueError(f"mask_lookahead must be > 0, got {mask_lookahead}")
        self.velocity_mode = velocity_mode
        self.limit_mode = limit_mode
        self.mask_lookahead = float(mask_lookahead)
        self.task = task
        self.robot = task.robot
        self.dt = float(dt)
        self.batch = int(batch)
        if velocity_limits is None:
            velocity_limits = self.robot.velocity_limits[task.active]
        limits = np.broadcast_to(np.asarray(velocity_limits, dtype=float), (task.k,)).copy()
        if np.any(limits <= 0):
            raise ValueError("velocity limits must be > 0")
        # A cap given for the arm (the protocol's 1.22 rad/s) is no licence for a prismatic
        # joint to pass its own limit in m/s.
        prismatic = self.robot.prismatic[task.active]
        limits[prismatic] = np.minimum(limits[prismatic],
                                       self.robot.velocity_limits[task.active][prismatic])
        self.velocity_limits = limits
        self.q = np.empty((self.batch, self.robot.n))
        self._x = np.empty((self.batch, task.m))
        self.reset()

    def reset(self, q0: np.ndarray | None = None) -> np.ndarray:
        """Put the arms at q0: (n,) or (B, n) rad (default the task's home).

        Inactive joints are set to q_fixed, positions clipped to the limits.
        Returns the task state x (B, m).
        """
        q0 = self.task.q_fixed if q0 is None else np.asarray(q0, dtype=float)
        if q0.shape not in ((self.robot.n,), (self.batch, self.robot.n)):
            raise ValueError(f"q0 must have shape ({self.robot.n},) or "
                             f"({self.batch}, {self.robot.n}), got {q0.shape}")
        q = self.task.expand(self.task.select(np.broadcast_to(q0, self.q.shape)))
        self.q = self.robot.clip(q)[0]
        self._x = self.task.x_from_q(self.q)
        return self._x.copy()

    @property
    def qa(self) -> np.ndarray:
        """(B, k) rad, active joint positions."""
        return self.task.select(self.q)

    @property
    def x(self) -> np.ndarray:
        """(B, m) current task state."""
        return self._x.copy()

    def step(self, qdot_active: np.ndarray) -> StepResult:
        """Apply joint velocities for one dt.

        qdot_active: (B, k) or (k,) rad/s (m/s for prismatic joints) for the active joints.
        """
        qdot = np.asarray(qdot_active, dtype=float)
        if qdot.shape not in ((self.task.k,), (self.batch, self.task.k)):
            raise ValueError(f"qdot must have shape ({self.task.k},) or "
                             f"({self.batch}, {self.task.k}), got {qdot.shape}")
        qdot = np.broadcast_to(qdot, (self.batch, self.task.k))
        if self.velocity_mode == "scale":
            ratio = _ratio(qdot, self.velocity_limits)
            applied = qdot / ratio[:, None]
            scaled = ratio > 1.0
        else:
            applied = np.clip(qdot, -self.velocity_limits, self.velocity_limits)
            scaled = np.any(applied != qdot, axis=1)
        active = self.task.active
        q = self.q.copy()
        if self.limit_mode == "mask":
            ahead = q[:, active] + self.mask_lookahead * self.dt * applied
            lower, upper = self.robot.lower[active], self.robot.upper[active]
            stopped = ~((ahead > lower) & (ahead < upper))
            applied = np.where(stopped, 0.0, applied)
            q[:, active] += self.dt * applied
        else:
            q[:, active] += self.dt * applied
            q, hit = self.robot.clip(q)
            stopped = hit[:, active]
        self.q = q
        self._x = self.task.x_from_q(q)
        return StepResult(q=q.copy(), x=self._x.copy(), scaled=scaled,
                          clipped=stopped, qdot=applied)
