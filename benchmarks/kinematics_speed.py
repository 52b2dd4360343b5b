"""Speed of the kinematic chain (uvs_core.chain) against the DH walk it replaced.

The old path is uvs_core.robot before the chain (commit 3983f51): DH rows built
element by element (batched) or from cached cos/sin parts (single
configuration), then R 4x4 products. Both run on the same robot; the chain is
also timed on the Gen3 built from its URDF. Prints median microseconds per call
and the ratio chain / old (< 1: the chain is faster)::

    python benchmarks/kinematics_speed.py [--robot gen3] [--repeat 7]
"""

from __future__ import annotations

import argparse
import math
import timeit

import numpy as np

from uvs_core.robot import load_robot

_CROSS_Z = np.array([1, 2, 0, 2, 0, 1])
_CROSS_R = np.array([2, 0, 1, 1, 2, 0])


class OldDH:
    """The DH walk of uvs_core.robot before the chain, same numbers (kept for timing)."""

    def __init__(self, robot) -> None:
        self.dh, self.dh_joint, self.n, self.tool = robot.dh, robot.dh_joint, robot.n, \
            robot.tool_offset
        rows = self.dh.shape[0]
        self.a_part, self.b_part, self.d_part = (np.zeros((rows, 4, 4)) for _ in range(3))
        for r, (_, d, a, alpha) in enumerate(self.dh):
            ca, sa = math.cos(alpha), math.sin(alpha)
            c = np.array([[1.0, 0.0, 0.0, a], [0.0, ca, -sa, 0.0], [0.0, sa, ca, d],
                          [0.0, 0.0, 0.0, 1.0]])
            self.a_part[r, 0], self.a_part[r, 1] = c[0], c[1]
            self.b_part[r, 0], self.b_part[r, 1] = -c[1], c[0]
            self.d_part[r, 2], self.d_part[r, 3] = c[2], c[3]
        self.theta0 = self.dh[:, 0].copy()
        self.row_q = np.maximum(self.dh_joint, 0)
        self.is_joint = (self.dh_joint >= 0).astype(float)
        self.row_joint = tuple(int(j) for j in self.dh_joint)

    def chain(self, qf):
        b = qf.shape[0]
        t = np.broadcast_to(np.eye(4), (b, 4, 4)).copy()
        axes = np.empty((b, self.n, 4, 4))
        for (theta0, d, a, alpha), j in zip(self.dh, self.dh_joint):
            theta = theta0 + qf[:, j] if j >= 0 else np.full(b, theta0)
            ct, st = np.cos(theta), np.sin(theta)
            ca, sa = math.cos(alpha), math.sin(alpha)
            row = np.zeros((b, 4, 4))
            row[:, 0, 0], row[:, 0, 1], row[:, 0, 2], row[:, 0, 3] = ct, -st * ca, st * sa, a * ct
            row[:, 1, 0], row[:, 1, 1], row[:, 1, 2], row[:, 1, 3] = st, ct * ca, -ct * sa, a * st
            row[:, 2, 1], row[:, 2, 2], row[:, 2, 3] = sa, ca, d
            row[:, 3, 3] = 1.0
            if j >= 0:
                axes[:, j] = t
            t = t @ row
        tool = t.copy()
        tool[:, :3, 3] += self.tool * t[:, :3, 2]
        return axes, tool

    def chain_single(self, q):
        theta = self.theta0 + q[self.row_q] * self.is_joint
        c = np.cos(theta)[:, None, None]
        s = np.sin(theta)[:, None, None]
        rows = c * self.a_part + s * self.b_part + self.d_part
        axes = np.empty((self.n, 4, 4))
        t = np.eye(4)
        for r, j in enumerate(self.row_joint):
            if j >= 0:
                axes[j] = t
            t = t.dot(rows[r])
        tool = t.copy()
        tool[:3, 3] += self.tool * t[:3, 2]
        return axes, tool

    def fk(self, q):
        return self.chain_single(q)[1] if q.ndim == 1 else self.chain(q)[1]

    def jacobian(self, q, kind="position"):
        if q.ndim == 1:
            axes, tool = self.chain_single(q)
            z = axes[:, :3, 2].T
            r = tool[:3, 3, None] - axes[:, :3, 3].T
            prod = z.take(_CROSS_Z, axis=0) * r.take(_CROSS_R, axis=0)
            jv = prod[:3] - prod[3:]
            return jv if kind == "position" else np.concatenate([jv, z])
        axes, tool = self.chain(q)
        z = axes[:, :, :3, 2]
        r = tool[:, None, :3, 3] - axes[:, :, :3, 3]
        jv = np.swapaxes(np.cross(z, r), 1, 2)
        if kind == "position":
            return jv
        return np.concatenate([jv, np.swapaxes(z, 1, 2)], axis=1)


def _time(fn, arg, repeat: int) -> float:
    """Median seconds per call over ``repeat`` runs of enough calls for ~0.1 s."""
    timer = timeit.Timer(lambda: fn(arg))
    number, _ = timer.autorange()
    number = max(1, number // 2)
    return float(np.median(timer.repeat(repeat=repeat, number=number))) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="gen3", help="a DH robot (default gen3)")
    parser.add_argument("--urdf", default="gen3_urdf", help="the same arm from a URDF")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    robot, urdf = load_robot(args.robot), load_robot(args.urdf)
    old = OldDH(robot)
    rng = np.random.default_rng(0)
    q1000 = robot.sample(rng, 1000)
    q1 = q1000[0].copy()
    for q in (q1, q1000):   # the two paths agree before they are timed
        np.testing.assert_allclose(robot.jacobian(q, "pose"), old.jacobian(q, "pose"),
                                   atol=1e-12)
        np.testing.assert_allclose(robot.fk(q), old.fk(q), atol=1e-12)
    calls = {
        "fk": (lambda r: r.fk, ),
        "jacobian position": (lambda r: r.jacobian, ),
        "jacobian pose": (lambda r: (lambda q: r.jacobian(q, "pose")), ),
    }
    print(f"{robot.name} (n = {robot.n}); median us per call; ratio = chain / old DH")
    print(f"{'call':<20} {'B':>5} {'old DH':>9} {'chain':>9} {'ratio':>6} {'chain URDF':>11}")
    for name, (get,) in calls.items():
        for q in (q1, q1000):
            t_old, t_new, t_urdf = (_time(get(r), q, args.repeat) for r in (old, robot, urdf))
            b = 1 if q.ndim == 1 else q.shape[0]
            print(f"{name:<20} {b:>5} {1e6 * t_old:>9.1f} {1e6 * t_new:>9.1f} "
                  f"{t_new / t_old:>6.2f} {1e6 * t_urdf:>11.1f}")


if __name__ == "__main__":
    main()
