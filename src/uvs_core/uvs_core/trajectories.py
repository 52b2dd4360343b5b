"""Moving targets: circles and lines in task space, sampled with their velocity.

A :class:`TargetPath` is a point path p(t) (m, base frame) that starts at a given
point and moves at constant speed: a circle through the start point, or a
straight segment from the start point and back (a triangle wave along a
direction). ``sample(times)`` gives p(t) and dp/dt (m/s) exactly (analytic), so a
trajectory of targets carries its velocity, the feed-forward of the control law
(``uvs_core.control.control_step(..., x_star_dot=...)``).

:func:`task_targets` turns a path into targets of a point task: every point of
the task's x moves with the path (the single point, or the four points of the
multi-point frame translated rigidly), so x*(t) = x0 + (p(t) - p(0)) for each
point, x0 the task state the path starts from.

Used by ``uvs benchmark --moving`` (uvs_core.evaluation.tracking_rollout) and by
the sim camera's moving target marker. No rclpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PATH_KINDS", "TargetPath", "benchmark_paths", "task_targets", "plane_axes"]

#: TargetPath.kind choices
PATH_KINDS = ("circle", "line")

_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def plane_axes(normal) -> tuple[np.ndarray, np.ndarray]:
    """Two orthonormal (3,) vectors (u, v) spanning the plane of unit normal ``normal``,
    with u x v = normal; u is the base x axis projected in the plane (else y)."""
    n = np.asarray(normal, dtype=float)
    n = n / np.linalg.norm(n)
    for seed in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)):
        u = np.asarray(seed) - np.dot(seed, n) * n
        if np.linalg.norm(u) > 1e-6:
            break
    u = u / np.linalg.norm(u)
    return u, np.cross(n, u)


@dataclass(frozen=True)
class TargetPath:
    """A constant-speed path of a point target starting at ``start``.

    kind: "circle": a circle of ``size`` m radius through ``start``, in the plane of
        normal ``axis``, centre start - size * u (u, v = plane_axes(axis)), travelled
        counter-clockwise about ``axis`` at ``speed`` m/s (period 2 pi size / speed).
        "line": from ``start`` along the unit ``axis`` for ``size`` m and back, again and
        again, at ``speed`` m/s (period 2 size / speed; the velocity reverses at the ends).
    start: (3,) m, base frame. axis: (3,) normal (circle) or direction (line), any
        length > 0. size: m > 0. speed: m/s > 0.
    """

    kind: str
    start: tuple[float, float, float]
    axis: tuple[float, float, float]
    size: float = 0.1
    speed: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in PATH_KINDS:
            raise ValueError(f"kind must be one of {', '.join(PATH_KINDS)}, got {self.kind!r}")
        start = np.asarray(self.start, dtype=float)
        axis = np.asarray(self.axis, dtype=float)
        if start.shape != (3,) or not np.all(np.isfinite(start)):
            raise ValueError(f"start must be 3 finite numbers (m), got {self.start!r}")
        if axis.shape != (3,) or not np.all(np.isfinite(axis)) or not np.linalg.norm(axis) > 0:
            raise ValueError(f"axis must be a non-zero 3-vector, got {self.axis!r}")
        for name in ("size", "speed"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        object.__setattr__(self, "start", tuple(float(v) for v in start))
        object.__setattr__(self, "axis", tuple(float(v) for v in axis / np.linalg.norm(axis)))
        object.__setattr__(self, "size", float(self.size))
        object.__setattr__(self, "speed", float(self.speed))

    @property
    def period(self) -> float:
        """s, time of one lap (circle) or one out-and-back (line)."""
        if self.kind == "circle":
            return 2.0 * math.pi * self.size / self.speed
        return 2.0 * self.size / self.speed

    def describe(self) -> str:
        """'circle r 0.1 m, 0.05 m/s, normal [0 0 1]' and the like."""
        axis = np.array2string(np.asarray(self.axis), precision=2, suppress_small=True)
        if self.kind == "circle":
            return f"circle r {self.size:g} m at {self.speed:g} m/s, normal {axis}"
        return f"line {self.size:g} m out and back at {self.speed:g} m/s along {axis}"

    def sample(self, times) -> tuple[np.ndarray, np.ndarray]:
        """p(t) and dp/dt at ``times`` (T,) s: ((T, 3) m, (T, 3) m/s). Any t, also < 0
        (the path is periodic)."""
        t = np.asarray(times, dtype=float)[:, None]
        start = np.asarray(self.start)
        axis = np.asarray(self.axis)
        if self.kind == "circle":
            u, v = plane_axes(axis)
            omega = self.speed / self.size
            phase = omega * t
            centre = start - self.size * u
            p = centre + self.size * (np.cos(phase) * u + np.sin(phase) * v)
            dp = self.speed * (-np.sin(phase) * u + np.cos(phase) * v)
            return p, dp
        # Triangle wave: distance s(t) along axis in [0, size], rising first.
        period = self.period
        tau = np.mod(t, period)
        rising = tau < period / 2.0
        s = np.where(rising, self.speed * tau, self.speed * (period - tau))
        p = start + s * axis
        dp = np.where(rising, self.speed, -self.speed) * axis
        return p, dp


def task_targets(task, x0, path: TargetPath, times) -> tuple[np.ndarray, np.ndarray]:
    """Targets of a point task following ``path`` from the task state x0.

    task: a uvs_core.tasks.Task in metres whose x stacks 3-D points (single_point,
    multi_point). x0: (m,) m, the state the path starts from (every point of it moves
    with p(t) - p(0)). times: (T,) s. Returns (x* (T, m) m, ẋ* (T, m) m/s).
    """
    x0 = np.asarray(x0, dtype=float)
    if task.units != "m" or x0.shape != (task.m,) or task.m % 3:
        raise ValueError(f"task {task.name} is not a task of stacked 3-D points in metres")
    p, dp = path.sample(times)
    offset = p - np.asarray(path.start)
    points = task.m // 3
    return x0 + np.tile(offset, points), np.tile(dp, points)


def benchmark_paths(start, size: float = 0.1, speed: float = 0.05,
                    quick: bool = False) -> list[TargetPath]:
    """The paths of ``uvs benchmark --moving`` from the point ``start`` (3,) m: circles of
    radius ``size`` in the base xy, xz and yz planes, and lines of ``size`` out and back
    along x, y and z (--quick: the xy circle and the line along x); all at
    ``speed`` m/s."""
    start = tuple(float(v) for v in np.asarray(start, dtype=float))
    planes = ("z",) if quick else ("z", "y", "x")
    lines = ("x",) if quick else ("x", "y", "z")
    return ([TargetPath("circle", start, _AXES[a], size, speed) for a in planes]
            + [TargetPath("line", start, _AXES[a], size, speed) for a in lines])
