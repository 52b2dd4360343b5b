"""Servoing tasks: the forward map x(q_active) and its true Jacobian.

| task           | x (m,)                                              | J (m, k)     | units |
|----------------|-----------------------------------------------------|--------------|-------|
| single_point   | tool point p, base frame                            | 3 x n        | m     |
| multi_point    | p, p + s R e_x, p + s R e_y, p + s R e_z (R: tool)  | 12 x n       | m     |
| visual_servo   | tool point projected by a pinhole camera (u, v)     | 2 x 2        | px    |
| pose           | tool point p, rotation vector phi of R R_home^T     | 6 x n        | m, rad|

Every task says how far x is from a target (:meth:`Task.error`, the error e the
control law drives to zero): x* - x for every task but ``pose``, whose orientation
error is the rotation vector of R* R^T (the log map of SO(3)), never a difference
of rotation vectors.

A task drives ``k`` active joints (indices ``active`` into the robot's ``n``);
the others sit at ``q_fixed``. ``q_fixed`` is also the task's start pose
(``home``): babbling and servoing start there. Defaults come from code, then
the robot YAML's ``tasks: <name>:`` section, then the ``config`` argument of
:func:`make_task`.

Each task also says how the controller measures closeness to a singularity
(``condition_transform``, ``cond_thresholds``): the condition number of the
Jacobian of the degrees of freedom the task constrains, so that it means the
same thing (distance from a singularity of the arm) for every task. For the
point tasks that is J itself; multi_point's stacked 12 x k Jacobian is first
mapped to one with the tool's 6 x k twist Jacobian's singular values (see
:func:`twist_condition_transform`).

The rotations and the pinhole camera are ``uvs_core.geometry``, re-exported here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from uvs_core.geometry import (
    PinholeCamera,
    look_at,
    quaternion_matrix,
    so3_exp,
    so3_left_jacobian,
    so3_log,
)
from uvs_core.robot import Robot

__all__ = ["TASK_NAMES", "Task", "SinglePointTask", "MultiPointTask", "VisualServoTask",
           "PoseTask", "PinholeCamera", "make_task", "look_at", "twist_condition_transform",
           "cond_thresholds", "so3_exp", "so3_log", "so3_left_jacobian", "quaternion_matrix",
           "error_fn"]

TASK_NAMES = ("single_point", "multi_point", "visual_servo", "pose")

# Code defaults; a robot YAML (``tasks:``) or the caller's config override them.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "single_point": {},
    "multi_point": {"scale": 0.1},
    "visual_servo": {
        "active_joints": [1, 3],
        "camera": {"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0,
                   "width": 640, "height": 480,
                   "position": [0.0, -2.5, 0.3], "look_at": [0.0, 0.0, 0.3],
                   "up": [0.0, 0.0, 1.0], "min_depth": 0.05},
    },
    "pose": {},
}


def _merge(base: Mapping[str, Any], over: Mapping[str, Any] | None) -> dict[str, Any]:
    """Recursive dict merge; ``over`` wins."""
    out = dict(base)
    for key, value in (over or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


#: m per rad: the pose task's distance counts 0.1 rad (5.7 deg) of angle as 1 cm
POSE_METRES_PER_RAD = 0.1


def error_fn(task):
    """``task.error`` for control_step's ``error_fn``, or None where it is x* - x (the
    law's own subtraction, so those tasks' numbers stay bit for bit)."""
    own = getattr(type(task), "error", Task.error)   # duck-typed tasks: x* - x
    return None if own is Task.error else task.error


class Task:
    """A task: forward map x(q_active) and its true Jacobian.

    Attributes:
        name: one of TASK_NAMES.
        robot: the Robot.
        m: task dimension; k: number of active joints.
        active: (k,) int indices into the robot's joints (Jacobian columns).
        q_fixed: (n,) rad, inactive joint positions; also the start pose (``home``).
        units: "m" or "px".
        labels: (m,) names of the components of x.
        config: the merged configuration the task was built from.
        condition_transform: None, or (m', m) row map W: the controller's condition
            number is that of W J (uvs_core.control.condition_number); None = J's own.
        cond_thresholds: (cond_slowdown, cond_halt), the controller's default
            thresholds on that condition number (ControlConfig.for_task).
    """

    name = ""
    units = "m"
    condition_transform: np.ndarray | None = None
    # MoveIt Servo's defaults. single_point's 3 x 7 position Jacobian over uniform joint
    # samples of the Gen3: median 3.2, 97.7 % below 17, 99.2 % below 30.
    cond_thresholds: tuple[float, float] = (17.0, 30.0)

    def __init__(self, robot: Robot, config: Mapping[str, Any] | None = None) -> None:
        self.robot = robot
        self.config = dict(config or {})
        self.active = self._parse_active(self.config.get("active_joints"))
        self.active.setflags(write=False)
        self.k = len(self.active)
        self.q_fixed = self._parse_home(self.config.get("home"))
        self.q_fixed.setflags(write=False)
        self.labels: list[str] = []
        self.m = 0

    def _parse_active(self, spec: Any) -> np.ndarray:
        n = self.robot.n
        if spec is None:
            return np.arange(n)
        idx = []
        for item in spec:
            if isinstance(item, str):
                if item not in self.robot.joint_names:
                    raise ValueError(f"{self.name}: unknown joint {item!r}")
                idx.append(self.robot.joint_names.index(item))
            else:
                if not 0 <= int(item) < n:
                    raise ValueError(f"{self.name}: joint index {item} out of range 0..{n - 1}")
                idx.append(int(item))
        if not idx or len(set(idx)) != len(idx):
            raise ValueError(f"{self.name}: active_joints must be distinct and non-empty")
        return np.array(idx, dtype=np.int64)

    def _parse_home(self, spec: Any) -> np.ndarray:
        home = np.array(self.robot.home, dtype=float)
        if spec is None:
            return home
        if isinstance(spec, Mapping):
            for key, value in spec.items():
                j = self._parse_active([key])[0]
                home[j] = float(value)
        else:
            spec = np.asarray(spec, dtype=float)
            if spec.shape != home.shape:
                raise ValueError(f"{self.name}: home must have {self.robot.n} entries")
            home = spec.copy()
        if not self.robot.in_limits(home):
            raise ValueError(f"{self.name}: home {home.tolist()} is outside the joint limits")
        return home

    @property
    def home(self) -> np.ndarray:
        """(n,) rad, the task's start pose (same array as q_fixed)."""
        return self.q_fixed

    @property
    def home_active(self) -> np.ndarray:
        """(k,) rad, start pose of the active joints."""
        return self.q_fixed[self.active]

    def select(self, q: np.ndarray) -> np.ndarray:
        """q: (..., n) rad -> (..., k) rad, the active joints."""
        return np.asarray(q, dtype=float)[..., self.active]

    def expand(self, qa: np.ndarray) -> np.ndarray:
        """qa: (..., k) rad -> (..., n) rad with inactive joints at q_fixed."""
        qa = np.asarray(qa, dtype=float)
        if qa.ndim == 0 or qa.shape[-1] != self.k:
            raise ValueError(f"{self.name}: qa must have shape (..., {self.k}), got {qa.shape}")
        q = np.broadcast_to(self.q_fixed, qa.shape[:-1] + (self.robot.n,)).copy()
        q[..., self.active] = qa
        return q

    def x(self, qa: np.ndarray) -> np.ndarray:
        """Forward map. qa: (..., k) rad -> (..., m) in ``units``."""
        return self.x_from_q(self.expand(qa))

    def jacobian(self, qa: np.ndarray) -> np.ndarray:
        """True Jacobian dx/dqa. qa: (..., k) rad -> (..., m, k), units/rad."""
        return self.jacobian_from_q(self.expand(qa))

    def x_from_q(self, q: np.ndarray) -> np.ndarray:
        """Forward map of full joint positions. q: (..., n) rad -> (..., m)."""
        raise NotImplementedError

    def jacobian_from_q(self, q: np.ndarray) -> np.ndarray:
        """dx/dq_active at full joint positions. q: (..., n) rad -> (..., m, k)."""
        raise NotImplementedError

    def error(self, x: np.ndarray, x_star: np.ndarray) -> np.ndarray:
        """The servo error e the control law drives to zero: x, x_star (..., m) -> (..., m),
        task units. x* - x (exactly, bit for bit) for every task but ``pose``."""
        return np.asarray(x_star, dtype=float) - np.asarray(x, dtype=float)

    def distance(self, x: np.ndarray, x_star: np.ndarray) -> np.ndarray:
        """Closeness to the target the controller's tolerance applies to: x, x_star
        (..., m) -> (...,) task units; |x* - x| but for ``pose``."""
        return np.linalg.norm(self.error(x, x_star), axis=-1)

    def x_from_pose(self, position: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """Task state of a tool pose (a PoseStamped target): position (3,) m and
        rotation (3, 3), base frame -> (m,). ValueError where a pose is no target."""
        raise ValueError(f"{self.name}: a pose cannot be converted to this task's x")

    def valid(self, x: np.ndarray) -> np.ndarray:
        """x: (..., m) -> (...,) bool, whether x is observable (always True but visual_servo)."""
        return np.ones(np.shape(x)[:-1], dtype=bool)

    def sample_targets(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Targets: x of uniform joint samples within limits (active joints; the rest at
        q_fixed), keeping only observable ones. -> (count, m)."""
        count = int(count)
        out: list[np.ndarray] = []
        have = 0
        for _ in range(1000):
            if have >= count:
                break
            qa = self.select(self.robot.sample(rng, max(count - have, 16)))
            x = self.x(qa)
            x = x[self.valid(x) & np.all(np.isfinite(x), axis=-1)][: count - have]
            out.append(x)
            have += len(x)
        if have < count:
            raise ValueError(f"{self.name}: could not sample {count} observable targets")
        return np.concatenate(out, axis=0) if out else np.empty((0, self.m))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(robot={self.robot.name!r}, m={self.m}, "
                f"active={self.active.tolist()})")


class SinglePointTask(Task):
    """x = tool point position (3,), m, base frame; J (3, k) m/rad."""

    name = "single_point"
    units = "m"

    def __init__(self, robot: Robot, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(robot, config)
        self.m = 3
        self.labels = ["x", "y", "z"]

    def x_from_q(self, q: np.ndarray) -> np.ndarray:
        return self.robot.position(q)

    def jacobian_from_q(self, q: np.ndarray) -> np.ndarray:
        return self.robot.jacobian(q)[..., self.active]

    def x_from_pose(self, position: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """The pose's position (the orientation is not part of this task)."""
        return np.asarray(position, dtype=float).copy()


class MultiPointTask(Task):
    """x = (p, p + s R e_x, p + s R e_y, p + s R e_z) (12,), m, base frame.

    p: tool point, R: tool orientation, s: ``scale`` (m, default 0.1).
    J (12, k) m/rad: for a point r rigidly attached to the tool, v_r = v + w x (r - p).

    Condition measure: the condition number of W J over 6 singular values, W from
    :func:`twist_condition_transform`, i.e. that of the tool's 6 x k twist
    Jacobian (the measure MoveIt Servo uses for pose servoing), the same for any
    scale. J's own condition number mixes translation with rotation seen through
    s-metre lever arms, so it depends on s (median over uniform joint samples of
    the Gen3: 95 at s = 0.05, 51 at 0.1, 29 at 0.2) and at s = 0.1 is a median
    2.6x the twist measure; 77 % of the samples lie above MoveIt Servo's halt value
    30, which is why the servo halted everywhere with it.

    Thresholds (cond_thresholds = 100, 300), measured on the Gen3: a 6-DOF pose
    needs more of a 7-joint arm than a 3-DOF point, so the twist Jacobian is worse
    conditioned than the position Jacobian even far from any singularity (median
    17 over uniform joint samples; 99 % below 50 and all below 83 where joints 2, 4
    and 6 are each at least 0.3 rad from 0, where their axes align with their
    neighbours'); 17 / 30 would slow down in half the joint space and halt in a
    quarter of it. Above 100 lie 8 % of uniform samples, all within 0.26 rad of
    such an alignment. The halt value must also clear what a learned Jacobian
    reports around the singular straight home pose, where every servo run starts:
    the shipped nk_tanh blurs the singularity to a median 147, 99th percentile 211,
    max 249 within 0.1 rad of it (true J: hundreds to 1e16), and a halt value
    inside that band stops runs that are leaving it (54 of 110 targets halted on
    their first step with 50 / 100, 1 of 110 with 100 / 200, none with 100 / 300).
    Closed loop in the core simulation, 110 targets from home, 15 s each: with the
    true J, 54 converge with 100 / 300 against 56 with no condition check (5 halt
    near a singularity, 50 stop at a joint limit); with nk_tanh 23 and 23.
    """

    name = "multi_point"
    units = "m"
    cond_thresholds = (100.0, 300.0)

    def __init__(self, robot: Robot, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(robot, config)
        self.scale = float(self.config.get("scale", 0.1))
        if not self.scale > 0:
            raise ValueError("multi_point: scale must be > 0")
        self.m = 12
        self.labels = [f"p{i}_{c}" for i in range(4) for c in "xyz"]
        self.condition_transform = twist_condition_transform(self.scale)

    def x_from_q(self, q: np.ndarray) -> np.ndarray:
        t = self.robot.fk(q)
        p = t[..., :3, 3]
        pts = [p] + [p + self.scale * t[..., :3, c] for c in range(3)]
        return np.concatenate(pts, axis=-1)

    def x_from_pose(self, position: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """The 4 points of a tool at that pose."""
        p, r = np.asarray(position, dtype=float), np.asarray(rotation, dtype=float)
        return np.concatenate([p] + [p + self.scale * r[..., :3, c] for c in range(3)], axis=-1)

    def jacobian_from_q(self, q: np.ndarray) -> np.ndarray:
        t = self.robot.fk(q)
        jac = self.robot.jacobian(q, kind="pose")[..., self.active]
        jv, jw = jac[..., :3, :], jac[..., 3:, :]
        jw_cols = np.swapaxes(jw, -1, -2)                       # (..., k, 3)
        blocks = [jv]
        for c in range(3):
            d = self.scale * t[..., None, :3, c]                # (..., 1, 3) r - p
            blocks.append(jv + np.swapaxes(np.cross(jw_cols, d), -1, -2))
        return np.concatenate(blocks, axis=-2)


class VisualServoTask(Task):
    """x = (u, v) px, the tool point seen by a pinhole camera; J (2, k) px/rad.

    Config: ``active_joints`` (default joints 2 and 4), ``home`` (start pose
    overrides by joint), ``camera`` (see :meth:`PinholeCamera.from_config`).
    """

    name = "visual_servo"
    units = "px"

    def __init__(self, robot: Robot, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(robot, config)
        self.camera = PinholeCamera.from_config(self.config.get("camera", {}))
        self.m = 2
        self.labels = ["u", "v"]

    def x_from_q(self, q: np.ndarray) -> np.ndarray:
        return self.camera.project(self.robot.position(q))

    def jacobian_from_q(self, q: np.ndarray) -> np.ndarray:
        p = self.robot.position(q)
        return self.camera.project_jacobian(p) @ self.robot.jacobian(q)[..., self.active]

    def in_view_q(self, q: np.ndarray) -> np.ndarray:
        """q: (..., n) rad -> (...,) bool, whether the marker is in the image."""
        return self.camera.in_view(self.robot.position(q))

    def valid(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return ((x[..., 0] >= 0) & (x[..., 0] < self.camera.width)
                & (x[..., 1] >= 0) & (x[..., 1] < self.camera.height))

    def sample_targets(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Pixel targets of uniform samples of the active joints whose marker is in view.
        -> (count, 2) px; the projections of :meth:`sample_target_points` (same draws)."""
        return self.camera.project(self.sample_target_points(rng, count))

    def sample_target_points(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Tool points of uniform samples of the active joints (the rest at q_fixed) that
        the camera sees: where a target marker can be put so that the task joints can
        reach its pixel. -> (count, 3) m, base frame."""
        count = int(count)
        out: list[np.ndarray] = []
        have = 0
        for _ in range(1000):
            if have >= count:
                break
            q = self.expand(self.select(self.robot.sample(rng, max(count - have, 16))))
            keep = self.in_view_q(q)
            p = self.robot.position(q[keep])[: count - have]
            out.append(p)
            have += len(p)
        if have < count:
            raise ValueError("visual_servo: could not sample targets in view; check the camera")
        return np.concatenate(out, axis=0)


class PoseTask(Task):
    """x = (p, phi) (6,): tool point p (m, base frame) and the rotation vector phi (rad)
    of R R_home^T, the tool orientation R relative to its orientation at the task's
    home (so phi = 0 at the start pose), expressed in the base frame.

    Error (:meth:`error`): (p* - p, log(R* R^T)), the position error and the rotation
    vector that turns the tool onto the target orientation, both in the base frame;
    R* R^T = exp(phi*) exp(phi)^T, independent of the home orientation. It is computed
    on SO(3), so it is right at any angle (a difference of rotation vectors is not,
    and jumps where phi wraps at pi).

    J (6, k): the geometric Jacobian of the tool frame at the tool point (m/rad linear
    rows, the blog's z_i x (p - o_i); rad/rad angular rows, z_i): the derivative of
    the error, e(x(q), x(q + dq)) = J dq + O(dq^2). The estimators that learn from
    pairs of samples (NJ, Bi-NJ, LL-KNN, Broyden) take the error between them, not
    their difference, which would give d phi / dq = J_l(phi)^-1 J_w (J_l:
    :func:`so3_left_jacobian`, :meth:`coordinate_to_geometric` maps it) and jump at the
    wrap; Neural Kinematics learns :meth:`nk_features`.

    Condition measure: J is already the tool's twist Jacobian, the measure
    multi_point's transform gives (MoveIt Servo's), so its thresholds (100, 300)
    apply as they are (see MultiPointTask).
    """

    name = "pose"
    units = "m"
    cond_thresholds = (100.0, 300.0)

    def __init__(self, robot: Robot, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(robot, config)
        self.m = 6
        self.labels = ["x", "y", "z", "rx", "ry", "rz"]
        r_home = np.array(self.robot.fk(self.q_fixed)[:3, :3], dtype=float)
        r_home.setflags(write=False)
        self.r_home = r_home

    def x_from_q(self, q: np.ndarray) -> np.ndarray:
        t = self.robot.fk(q)
        phi = so3_log(t[..., :3, :3] @ self.r_home.T)
        return np.concatenate([t[..., :3, 3], phi], axis=-1)

    def jacobian_from_q(self, q: np.ndarray) -> np.ndarray:
        return self.robot.jacobian(q, kind="pose")[..., self.active]

    def rotation(self, x: np.ndarray) -> np.ndarray:
        """Tool orientation of a task state: x (..., 6) -> R (..., 3, 3), base frame."""
        return so3_exp(np.asarray(x, dtype=float)[..., 3:]) @ self.r_home

    def x_from_pose(self, position: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """Task state of a tool pose: position (..., 3) m, rotation (..., 3, 3) -> (..., 6)."""
        phi = so3_log(np.asarray(rotation, dtype=float) @ self.r_home.T)
        return np.concatenate([np.asarray(position, dtype=float), phi], axis=-1)

    def error(self, x: np.ndarray, x_star: np.ndarray) -> np.ndarray:
        """(p* - p, log(R* R^T)): x, x_star (..., 6) -> (..., 6), m and rad, base frame."""
        x = np.asarray(x, dtype=float)
        x_star = np.asarray(x_star, dtype=float)
        rot = so3_exp(x_star[..., 3:]) @ np.swapaxes(so3_exp(x[..., 3:]), -1, -2)
        return np.concatenate([x_star[..., :3] - x[..., :3], so3_log(rot)], axis=-1)

    def distance(self, x: np.ndarray, x_star: np.ndarray) -> np.ndarray:
        """max(|p* - p|, POSE_METRES_PER_RAD * angle of R* R^T), m: below a tolerance t
        exactly when the position error is below t and the angle below t / 0.1 m per rad
        (the controller's 5 mm: 5 mm and 0.05 rad = 2.9 deg)."""
        e = self.error(x, x_star)
        return np.maximum(np.linalg.norm(e[..., :3], axis=-1),
                          POSE_METRES_PER_RAD * np.linalg.norm(e[..., 3:], axis=-1))

    #: size of :meth:`nk_features`
    nk_features_dim = 12

    def nk_features(self, x: np.ndarray) -> np.ndarray:
        """What Neural Kinematics learns for this task: x (..., 6) -> (..., 12), the position
        (m) and the 9 entries (row-major) of exp(phi) = R R_home^T. A rotation vector
        wraps at pi, which uniform babbling reaches (the paper protocol's: 12 % of the
        samples beyond 2.8 rad from home), and a network cannot fit the jump; the matrix
        is smooth everywhere."""
        x = np.asarray(x, dtype=float)
        rot = so3_exp(x[..., 3:])
        return np.concatenate([x[..., :3], rot.reshape(*rot.shape[:-2], 9)], axis=-1)

    def nk_jacobian(self, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """The geometric Jacobian from the features' (y (..., 12)) derivative dy/dq
        (..., 12, k): linear rows dp/dq; angular column j the axial vector of the skew part
        of dR/dq_j R^T (R from y), exact for an orthonormal R (dR R^T = [w]x)."""
        y, dy = np.asarray(y, dtype=float), np.asarray(dy, dtype=float)
        k = dy.shape[-1]
        rot = y[..., 3:12].reshape(*y.shape[:-1], 3, 3)
        drot = np.moveaxis(dy[..., 3:12, :], -1, -2).reshape(*dy.shape[:-2], k, 3, 3)
        w = drot @ np.swapaxes(rot, -1, -2)[..., None, :, :]        # (..., k, 3, 3)
        omega = 0.5 * np.stack([w[..., 2, 1] - w[..., 1, 2], w[..., 0, 2] - w[..., 2, 0],
                                w[..., 1, 0] - w[..., 0, 1]], axis=-1)  # (..., k, 3)
        return np.concatenate([dy[..., :3, :], np.swapaxes(omega, -1, -2)], axis=-2)

    def coordinate_to_geometric(self, x: np.ndarray, jac: np.ndarray) -> np.ndarray:
        """Map a Jacobian of the coordinates, dx/dq (..., 6, k), at x (..., 6) to the
        geometric one: angular rows J_l(phi) dphi/dq."""
        jac = np.array(jac, dtype=float)
        jl = so3_left_jacobian(np.asarray(x, dtype=float)[..., 3:])
        jac[..., 3:, :] = jl @ jac[..., 3:, :]
        return jac


_CLASSES = {cls.name: cls for cls in (SinglePointTask, MultiPointTask, VisualServoTask,
                                      PoseTask)}


def cond_thresholds(name: str) -> tuple[float, float]:
    """(cond_slowdown, cond_halt) the task ``name`` defaults to (see Task). ValueError on
    an unknown name."""
    if name not in _CLASSES:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    return _CLASSES[name].cond_thresholds


def make_task(name: str, robot: Robot, config: Mapping[str, Any] | None = None) -> Task:
    """Build a task; config overrides the robot YAML's ``tasks: <name>`` section, which
    overrides the code defaults. ValueError on an unknown name."""
    if name not in _CLASSES:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    merged = _merge(_merge(_DEFAULTS[name], robot.task_defaults.get(name)), config)
    merged = copy.deepcopy(merged)  # the task never shares mutable config with the robot
    return _CLASSES[name](robot, merged)


def twist_condition_transform(scale: float) -> np.ndarray:
    """W (12, 12): maps the multi-point Jacobian to one with the twist Jacobian's
    singular values.

    x stacks p0 (the tool point) and p_i = p0 + scale R e_i, i = 1..3, so for the
    true Jacobian J_i = J_v - [scale R e_i]x J_w (J_v: (3, k) m/rad of the tool point,
    J_w: (3, k) rad/rad). W keeps the p0 rows and replaces each p_i block with
    (J_i - J_0) / (scale sqrt 2) = -[R e_i]x J_w / sqrt 2. Since
    sum_i [R e_i]x^T [R e_i]x = 2 I, (W J)^T (W J) = J_v^T J_v + J_w^T J_w: W J has
    exactly the singular values of the 6 x k twist Jacobian [J_v; J_w] at the tool
    point (the geometric Jacobian MoveIt Servo's condition check uses), whatever the
    scale. Raw J instead sees rotation through scale-m lever arms next to translation,
    so its condition number grows ~1/scale. W is fixed, so it applies to a learned
    Jacobian as it is (no projection onto rigid motions, no x needed).
    """
    scale = float(scale)
    if not scale > 0:
        raise ValueError("scale must be > 0")
    w = np.eye(12)
    lever = 1.0 / (scale * math.sqrt(2.0))
    for i in range(1, 4):
        rows = slice(3 * i, 3 * i + 3)
        w[rows, :3] = -lever * np.eye(3)
        w[rows, rows] = lever * np.eye(3)
    w.setflags(write=False)
    return w
