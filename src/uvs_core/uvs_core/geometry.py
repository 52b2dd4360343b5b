"""Geometry of the tasks: rotations (SO(3) exp and log maps, quaternions) and the pinhole
camera of the visual-servoing task with its look-at pose.

Split from ``uvs_core.tasks``, which re-exports every name here. Shapes: a leading
``...`` batch on every function of points or rotation vectors. Units: m, rad, px.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PinholeCamera", "look_at", "quaternion_matrix", "so3_exp", "so3_log",
           "so3_left_jacobian"]


def look_at(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera pose T_base_cam (4, 4) of an optical frame (z forward, x right, y down).

    position, target, up: (3,) m in the base frame.
    """
    position, target, up = (np.asarray(v, dtype=float) for v in (position, target, up))
    z = target - position
    if np.linalg.norm(z) < 1e-9:
        raise ValueError("camera position and look_at coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("camera 'up' is parallel to the viewing direction")
    x /= np.linalg.norm(x)
    t = np.eye(4)
    t[:3, 0], t[:3, 1], t[:3, 2], t[:3, 3] = x, np.cross(z, x), z, position
    return t


def quaternion_matrix(q) -> np.ndarray:
    """Rotation matrix of a quaternion (x, y, z, w) (normalised here): (4,) -> (3, 3).
    ValueError for a zero or non-finite one."""
    x, y, z, w = (float(v) for v in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError("quaternion must be finite and non-zero")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _skew(v: np.ndarray) -> np.ndarray:
    """v: (..., 3) -> (..., 3, 3), [v]x with [v]x u = v x u."""
    v = np.asarray(v, dtype=float)
    z = np.zeros(v.shape[:-1])
    return np.stack([np.stack([z, -v[..., 2], v[..., 1]], axis=-1),
                     np.stack([v[..., 2], z, -v[..., 0]], axis=-1),
                     np.stack([-v[..., 1], v[..., 0], z], axis=-1)], axis=-2)


def so3_exp(phi: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues). phi: (..., 3) rad -> (..., 3, 3)."""
    phi = np.asarray(phi, dtype=float)
    theta = np.linalg.norm(phi, axis=-1)[..., None, None]
    k = _skew(phi)
    small = theta < 1e-6
    t = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(t) / t)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(t)) / t**2)
    return np.eye(3) + a * k + b * (k @ k)


def so3_log(rot: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, angle in [0, pi]) of a rotation matrix: the log map.

    rot: (..., 3, 3) -> (..., 3) rad. Through the unit quaternion (Shepperd's
    largest-diagonal choice), so it is accurate at every angle, 0 and pi included.
    """
    r = np.asarray(rot, dtype=float)
    tr = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    cand = np.stack([tr, r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]], axis=-1)
    pick = np.argmax(cand, axis=-1)
    w = np.empty(tr.shape)
    v = np.empty(tr.shape + (3,))
    # Each branch divides by 4 * its own (largest, so >= 1/2) component.
    for i in range(4):
        sel = pick == i
        if not np.any(sel):
            continue
        m = r[sel]
        if i == 0:
            c = np.sqrt(1.0 + tr[sel]) * 2.0
            q = [0.25 * c, (m[:, 2, 1] - m[:, 1, 2]) / c, (m[:, 0, 2] - m[:, 2, 0]) / c,
                 (m[:, 1, 0] - m[:, 0, 1]) / c]
        elif i == 1:
            c = np.sqrt(1.0 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2]) * 2.0
            q = [(m[:, 2, 1] - m[:, 1, 2]) / c, 0.25 * c, (m[:, 0, 1] + m[:, 1, 0]) / c,
                 (m[:, 0, 2] + m[:, 2, 0]) / c]
        elif i == 2:
            c = np.sqrt(1.0 + m[:, 1, 1] - m[:, 0, 0] - m[:, 2, 2]) * 2.0
            q = [(m[:, 0, 2] - m[:, 2, 0]) / c, (m[:, 0, 1] + m[:, 1, 0]) / c, 0.25 * c,
                 (m[:, 1, 2] + m[:, 2, 1]) / c]
        else:
            c = np.sqrt(1.0 + m[:, 2, 2] - m[:, 0, 0] - m[:, 1, 1]) * 2.0
            q = [(m[:, 1, 0] - m[:, 0, 1]) / c, (m[:, 0, 2] + m[:, 2, 0]) / c,
                 (m[:, 1, 2] + m[:, 2, 1]) / c, 0.25 * c]
        w[sel] = q[0]
        v[sel] = np.stack(q[1:], axis=-1)
    sign = np.where(w < 0.0, -1.0, 1.0)          # the shorter way: angle <= pi
    w, v = w * sign, v * sign[..., None]
    s = np.linalg.norm(v, axis=-1)
    theta = 2.0 * np.arctan2(s, w)
    # theta / s -> 2 / w as s -> 0
    scale = np.where(s > 1e-12, theta / np.where(s > 1e-12, s, 1.0), 2.0 / np.maximum(w, 1e-12))
    return v * scale[..., None]


def so3_left_jacobian(phi: np.ndarray) -> np.ndarray:
    """Left Jacobian J_l(phi) of SO(3): omega = J_l(phi) dphi/dt for R = exp(phi) R0.

    phi: (..., 3) rad -> (..., 3, 3). Its symmetric part has eigenvalues 1 and
    sin|phi| / |phi| (> 0 below pi).
    """
    phi = np.asarray(phi, dtype=float)
    theta = np.linalg.norm(phi, axis=-1)[..., None, None]
    k = _skew(phi)
    small = theta < 1e-6
    t = np.where(small, 1.0, theta)
    a = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(t)) / t**2)
    b = np.where(small, 1.0 / 6.0 - theta**2 / 120.0, (t - np.sin(t)) / t**3)
    return np.eye(3) + a * k + b * (k @ k)


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """Pinhole camera without distortion.

    fx, fy, cx, cy: px. width, height: px. T_base_cam: (4, 4) pose of the
    optical frame (z forward, x right, y down) in the robot's base frame.
    min_depth: m, points nearer than this (or behind) are not in view.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    T_base_cam: np.ndarray
    min_depth: float = 0.05

    def __post_init__(self) -> None:
        t = np.array(self.T_base_cam, dtype=float)
        if t.shape != (4, 4):
            raise ValueError("T_base_cam must be 4x4")
        t.setflags(write=False)
        object.__setattr__(self, "T_base_cam", t)

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> PinholeCamera:
        """From a mapping: intrinsics plus ``T_base_cam`` or ``position``/``look_at``/``up``."""
        try:
            if "T_base_cam" in d:
                pose = np.asarray(d["T_base_cam"], dtype=float)
            else:
                pose = look_at(d["position"], d["look_at"], d.get("up", (0.0, 0.0, 1.0)))
            return cls(fx=float(d["fx"]), fy=float(d["fy"]), cx=float(d["cx"]),
                       cy=float(d["cy"]), width=int(d["width"]), height=int(d["height"]),
                       T_base_cam=pose, min_depth=float(d.get("min_depth", 0.05)))
        except KeyError as exc:
            raise ValueError(f"camera config: missing {exc.args[0]!r}") from exc

    def to_camera(self, p: np.ndarray) -> np.ndarray:
        """p: (..., 3) m, base frame -> (..., 3) m, camera optical frame."""
        r, t = self.T_base_cam[:3, :3], self.T_base_cam[:3, 3]
        return (np.asarray(p, dtype=float) - t) @ r

    def project(self, p: np.ndarray) -> np.ndarray:
        """p: (..., 3) m, base frame -> (..., 2) px (u right, v down)."""
        pc = self.to_camera(p)
        z = pc[..., 2]
        return np.stack([self.fx * pc[..., 0] / z + self.cx,
                         self.fy * pc[..., 1] / z + self.cy], axis=-1)

    def project_jacobian(self, p: np.ndarray) -> np.ndarray:
        """d(u, v)/dp. p: (..., 3) m, base frame -> (..., 2, 3) px/m."""
        pc = self.to_camera(p)
        x, y, z = pc[..., 0], pc[..., 1], pc[..., 2]
        zero = np.zeros_like(z)
        d_cam = np.stack([np.stack([self.fx / z, zero, -self.fx * x / z**2], axis=-1),
                          np.stack([zero, self.fy / z, -self.fy * y / z**2], axis=-1)],
                         axis=-2)
        return d_cam @ self.T_base_cam[:3, :3].T

    def in_view(self, p: np.ndarray) -> np.ndarray:
        """p: (..., 3) m, base frame -> (...,) bool: in front of the camera and inside the image."""
        pc = self.to_camera(p)
        front = pc[..., 2] > self.min_depth
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = self.project(p)
        return (front & (uv[..., 0] >= 0) & (uv[..., 0] < self.width)
                & (uv[..., 1] >= 0) & (uv[..., 1] < self.height))
