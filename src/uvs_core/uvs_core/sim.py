"""Vectorised kinematic simulation of many arms: q <- q + dt * qdot (paper IV-A).

Commands are joint velocities of the task's active joints. A command over the
velocity limits is scaled as a whole vector (direction kept); positions are
clipped to the joint limits and the clipping is reported. Inactive joints stay
at the task's ``q_fixed``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from uvs_core.tasks import Task

__all__ = ["scale_velocity", "StepResult", "Simulation"]


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
    clipped: (B, k) bool, active joints stopped at a position limit;
    qdot: (B, k) rad/s, the velocity actually applied before clipping.
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
    velocity_limits: (k,) or scalar rad/s for the active joints; default the
    robot's limits of the active joints.
    """

    def __init__(self, task: Task, dt: float = 0.05, batch: int = 1,
                 velocity_limits: np.ndarray | float | None = None) -> None:
        if not dt > 0:
            raise ValueError("dt must be > 0")
        if int(batch) < 1:
            raise ValueError("batch must be >= 1")
        self.task = task
        self.robot = task.robot
        self.dt = float(dt)
        self.batch = int(batch)
        if velocity_limits is None:
            velocity_limits = self.robot.velocity_limits[task.active]
        limits = np.broadcast_to(np.asarray(velocity_limits, dtype=float), (task.k,)).copy()
        if np.any(limits <= 0):
            raise ValueError("velocity limits must be > 0")
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

        qdot_active: (B, k) or (k,) rad/s for the active joints.
        """
        qdot = np.asarray(qdot_active, dtype=float)
        if qdot.shape not in ((self.task.k,), (self.batch, self.task.k)):
            raise ValueError(f"qdot must have shape ({self.task.k},) or "
                             f"({self.batch}, {self.task.k}), got {qdot.shape}")
        qdot = np.broadcast_to(qdot, (self.batch, self.task.k))
        ratio = _ratio(qdot, self.velocity_limits)
        applied = qdot / ratio[:, None]
        q = self.q.copy()
        q[:, self.task.active] += self.dt * applied
        q, hit = self.robot.clip(q)
        self.q = q
        self._x = self.task.x_from_q(q)
        return StepResult(q=q.copy(), x=self._x.copy(), scaled=ratio > 1.0,
                          clipped=hit[:, self.task.active], qdot=applied)
