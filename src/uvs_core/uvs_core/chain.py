"""One kinematic chain for every robot description: fixed transforms and joint axes.

A serial arm of ``n`` joints is, whatever it was described with (DH rows or a
URDF), the product

    T_base_tip(q) = O_1 M_1(q_1) O_2 M_2(q_2) ... O_n M_n(q_n) T_tip

- ``O_j`` (4, 4): the fixed transform from the frame of the link before joint
  ``j`` to joint ``j``'s frame (a URDF joint ``<origin>``; fixed joints and
  fixed DH rows are multiplied in, so they cost nothing at run time);
- ``M_j(q)``: the joint's motion about / along its unit axis ``a_j`` (3,),
  expressed in joint ``j``'s frame: a rotation by ``q_j`` rad (revolute,
  continuous) or a translation by ``q_j`` m (prismatic);
- ``T_tip`` (4, 4): the fixed transform from the last joint's moving link to
  the tip (fixed joints after the last joint, then the tool offset).

The frame after ``O_j M_j`` is the moving link's frame (the URDF child link
of joint ``j``). For the Jacobian, joint ``j``'s axis in the base frame is
``w_j = R_j a_j`` (R_j: that link's rotation; M_j does not move the axis) and

    revolute:  J_v = w_j x (p_tip - p_j),  J_w = w_j
    prismatic: J_v = w_j,                  J_w = 0

Each ``O_j M_j(q)`` is ``cos(q) A_j + sin(q) B_j + q P_j + D_j`` with constant
(4, 4) matrices (Rodrigues' formula for a rotation, a column for a
translation), so all joint transforms of one or of B configurations come from
one batched matrix product, and the chain is n plain 4x4 products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["JOINT_TYPES", "KinematicChain", "chain_from_dh", "dh_row"]

#: joint types of a chain; "continuous" is a revolute joint without position limits
JOINT_TYPES = ("revolute", "continuous", "prismatic")
_EYE4 = np.eye(4)
_EYE4.setflags(write=False)
# Rows of the products w[i+1] r[i+2] (first three) and w[i+2] r[i+1] (last
# three), i = 0, 1, 2 mod 3, whose differences are the rows of w x r.
_CROSS_W = np.array([1, 2, 0, 2, 0, 1])
_CROSS_R = np.array([2, 0, 1, 1, 2, 0])


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


def dh_row(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    """Classical DH transform Rz(theta) Tz(d) Tx(a) Rx(alpha): (4, 4); rad, m, m, rad."""
    ct, st, ca, sa = math.cos(theta), math.sin(theta), math.cos(alpha), math.sin(alpha)
    return np.array([[ct, -st * ca, st * sa, a * ct],
                     [st, ct * ca, -ct * sa, a * st],
                     [0.0, sa, ca, d],
                     [0.0, 0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class KinematicChain:
    """A serial chain (module docstring). Immutable; arrays are read-only.

    origins: (n, 4, 4) fixed transforms O_j, m.
    axes: (n, 3) unit joint axes a_j in each joint's frame.
    prismatic: (n,) bool, True for prismatic joints (q in m), else revolute (q in rad).
    tip: (4, 4) fixed transform T_tip from the last moving link to the tip, m.
    """

    origins: np.ndarray
    axes: np.ndarray
    prismatic: np.ndarray
    tip: np.ndarray

    def __post_init__(self) -> None:
        origins = _frozen(self.origins)
        axes = np.array(self.axes, dtype=float)
        n = origins.shape[0] if origins.ndim == 3 else -1
        if n < 1 or origins.shape != (n, 4, 4) or axes.shape != (n, 3):
            raise ValueError("a chain needs origins (n, 4, 4) and axes (n, 3), n >= 1")
        norms = np.linalg.norm(axes, axis=1)
        if np.any(norms < 1e-12):
            raise ValueError("a joint axis is zero")
        axes = _frozen(axes / norms[:, None])
        prismatic = np.array(self.prismatic, dtype=bool).reshape(-1)
        if prismatic.shape != (n,):
            raise ValueError(f"prismatic must have shape ({n},)")
        prismatic.setflags(write=False)
        tip = _frozen(self.tip)
        if tip.shape != (4, 4):
            raise ValueError("tip must be (4, 4)")
        for key, value in (("origins", origins), ("axes", axes), ("prismatic", prismatic),
                           ("tip", tip)):
            object.__setattr__(self, key, value)
        # Constants of O_j M_j(q) = cos(q) A_j + sin(q) B_j + q P_j + D_j.
        a_part, b_part, p_part, d_part = (np.zeros((n, 4, 4)) for _ in range(4))
        for j in range(n):
            o, u = origins[j], axes[j]
            if prismatic[j]:
                d_part[j] = o
                p_part[j, :3, 3] = o[:3, :3] @ u
                continue
            k = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
            k2 = k @ k
            # Rodrigues: R(q) = (I + K^2) + sin(q) K - cos(q) K^2, exact for the
            # coordinate axes (K's entries are 0 and +-1).
            a_part[j, :3, :3] = -(o[:3, :3] @ k2)
            b_part[j, :3, :3] = o[:3, :3] @ k
            d_part[j, :3, :3] = o[:3, :3] @ (np.eye(3) + k2)
            d_part[j, :3, 3] = o[:3, 3]
            d_part[j, 3, 3] = 1.0
        revolute = ~prismatic
        cache = {
            "_a": a_part, "_b": b_part, "_p": p_part, "_d": d_part,
            "_parts": np.stack([part.reshape(n, 16) for part in
                                (a_part, b_part, p_part, d_part)], axis=1),   # (n, 4, 16)
            "_rev": revolute.astype(float), "_pris": prismatic.astype(float),
            "_any_prismatic": bool(prismatic.any()),
            # Every axis +z (DH chains, most URDFs): w_j is the link frame's z column.
            "_axes_z": bool(np.array_equal(axes, np.tile([0.0, 0.0, 1.0], (n, 1)))),
        }
        for key, value in cache.items():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, key, value)

    @property
    def n(self) -> int:
        """Number of joints."""
        return self.origins.shape[0]

    def with_tip(self, tip: np.ndarray) -> KinematicChain:
        """The same chain with another tip transform (4, 4)."""
        return KinematicChain(self.origins, self.axes, self.prismatic, tip)

    # ------------------------------------------------------------------ kinematics

    def _joint_transforms(self, qt: np.ndarray) -> np.ndarray:
        """O_j M_j(q_j) for qt: (n, B) rad / m -> (n, B, 4, 4), joint-major.

        One batched product [cos q, sin q, q, 1] (n, B, 4) @ [A; B; P; D] (n, 4, 16):
        a fraction of the cost of four broadcast multiply-adds at B = 1000.
        """
        coef = np.empty((*qt.shape, 4))
        qr = qt * self._rev[:, None]  # prismatic joints: cos 0 / sin 0 times zero A, B
        coef[..., 0] = np.cos(qr)
        coef[..., 1] = np.sin(qr)
        coef[..., 2] = qt * self._pris[:, None]
        coef[..., 3] = 1.0
        return np.matmul(coef, self._parts).reshape(*qt.shape, 4, 4)

    def links(self, qf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Walk the chain for qf: (B, n).

        Returns (link frames (B, n, 4, 4): the frame after each joint's motion,
        tip (B, 4, 4)), base frame.
        """
        rows = self._joint_transforms(qf.T)
        links = np.empty_like(rows)
        t = rows[0]
        links[0] = t
        for j in range(1, self.n):
            t = t @ rows[j]
            links[j] = t
        return links.transpose(1, 0, 2, 3), t @ self.tip

    def links_single(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`links` for one configuration q: (n,) -> ((n, 4, 4), (4, 4)).

        The servo loop asks for one Jacobian per control step: ndarray.dot on
        4x4 blocks is the same BLAS product as the batched ``@`` (so the same
        bits) without the matmul ufunc's per-call overhead.
        """
        rows = self._joint_transforms(q[:, None])[:, 0]
        links = np.empty_like(rows)
        t = rows[0]
        links[0] = t
        for j in range(1, self.n):
            t = t.dot(rows[j])
            links[j] = t
        return links, t.dot(self.tip)

    def world_axes(self, links: np.ndarray) -> np.ndarray:
        """Joint axes w_j in the base frame. links: (..., n, 4, 4) -> (..., n, 3)."""
        if self._axes_z:
            return links[..., :3, 2]
        return (links[..., :3, :3] * self.axes[:, None, :]).sum(axis=-1)

    def jacobian(self, qf: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Geometric Jacobian of the tip. qf: (B, n) -> (J (B, 3|6, n), tip (B, 4, 4)).

        kind "position": rows d p / d q; "pose": those, then the angular rows.
        """
        links, tip = self.links(qf)
        w = self.world_axes(links)                      # (B, n, 3)
        r = tip[:, None, :3, 3] - links[:, :, :3, 3]    # (B, n, 3) joint -> tip
        jv = np.cross(w, r)
        if self._any_prismatic:
            jv[:, self.prismatic] = w[:, self.prismatic]
        jv = np.swapaxes(jv, 1, 2)
        if kind == "position":
            return jv, tip
        jw = np.swapaxes(w, 1, 2)
        if self._any_prismatic:
            jw = jw.copy()
            jw[:, :, self.prismatic] = 0.0
        return np.concatenate([jv, jw], axis=1), tip

    def jacobian_single(self, q: np.ndarray, kind: str) -> np.ndarray:
        """:meth:`jacobian` for q: (n,) -> (3|6, n): the same numbers, fewer numpy calls."""
        links, tip = self.links_single(q)
        w = self.world_axes(links).T                    # (3, n)
        r = tip[:3, 3, None] - links[:, :3, 3].T        # (3, n)
        # Row i of w x r is w[i+1] r[i+2] - w[i+2] r[i+1] (indices mod 3):
        # np.cross's products and differences, in one product of two gathers.
        prod = w.take(_CROSS_W, axis=0) * r.take(_CROSS_R, axis=0)
        jv = prod[:3] - prod[3:]
        if self._any_prismatic:
            jv[:, self.prismatic] = w[:, self.prismatic]
        if kind == "position":
            return jv
        jw = w
        if self._any_prismatic:
            jw = w.copy()
            jw[:, self.prismatic] = 0.0
        return np.concatenate([jv, jw])


def chain_from_dh(dh: np.ndarray, dh_joint: np.ndarray) -> KinematicChain:
    """Compile classical DH rows into a chain whose tip is the last DH frame (flange).

    dh: (R, 4) rows (theta, d, a, alpha), rad / m / m / rad; dh_joint: (R,) the
    joint index driving each row (-1 fixed). A joint row Rz(theta + q) Tz(d)
    Tx(a) Rx(alpha) is Rz(q) C with C = Rz(theta) Tz(d) Tx(a) Rx(alpha)
    constant: joint j turns about +z of the frame before its row, and C with
    the fixed rows after it goes into the next origin (or the tip). Each link
    frame is therefore the DH frame before its joint's row, turned by q (as in
    uvs_core.urdf's generated URDF).
    """
    dh = np.asarray(dh, dtype=float)
    dh_joint = np.asarray(dh_joint)
    n = int((dh_joint >= 0).sum())
    origins = np.empty((n, 4, 4))
    pending = np.eye(4)
    for (theta, d, a, alpha), j in zip(dh, dh_joint):
        if j >= 0:
            origins[j] = pending
            pending = np.eye(4)
        pending = pending @ dh_row(theta, d, a, alpha)
    return KinematicChain(origins=origins, axes=np.tile([0.0, 0.0, 1.0], (n, 1)),
                          prismatic=np.zeros(n, bool), tip=pending)
