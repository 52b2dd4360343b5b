"""Serial revolute arms described by classical DH rows: FK, true Jacobians, limits.

A robot is a YAML file (schema at the top of ``config/robots/gen3.yaml``);
adding an arm needs a file and no code. Every kinematic function takes joint
positions ``q: (n,) or (B, n), rad`` (any leading shape works) and returns the
same leading shape. Positions are in m, expressed in the robot's base frame.

Each DH row is ``T = Rz(theta) Tz(d) Tx(a) Rx(alpha)``; a joint row adds its
joint position to ``theta``. Joint ``i`` turns about the z axis of the frame
that precedes its row, which gives the cross-product Jacobian
``J_i = z_i x (p_e - p_i)`` (position) and ``z_i`` (angular).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml

from uvs_core.safety import Envelope, envelope_from_config

__all__ = ["Robot", "load_robot", "robot_config_dirs", "available_robots"]

_KINDS = ("position", "pose")
_EYE4 = np.eye(4)
_EYE4.setflags(write=False)
# Rows of the products z[i+1] r[i+2] (first three) and z[i+2] r[i+1] (last
# three), i = 0, 1, 2 mod 3, whose differences are the rows of z x r.
_CROSS_Z = np.array([1, 2, 0, 2, 0, 1])
_CROSS_R = np.array([2, 0, 1, 1, 2, 0])


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)  # a private copy, so the caller's array stays writable
    a.setflags(write=False)
    return a


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}
_UNOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _number(value: Any, what: str) -> float:
    """A float from a YAML number or an arithmetic expression of ``pi`` ("-pi/2")."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        def ev(node: ast.AST) -> float:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
                return float(node.value)
            if isinstance(node, ast.Name) and node.id == "pi":
                return math.pi
            if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
                return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
            if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
                return _UNOPS[type(node.op)](ev(node.operand))
            raise ValueError
        try:
            return ev(ast.parse(value.strip(), mode="eval"))
        except (SyntaxError, ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"{what}: expected a number or an expression of pi, got {value!r}")


@dataclass(frozen=True, eq=False)
class Robot:
    """An immutable serial arm of revolute joints.

    Attributes:
        name: robot name.
        joint_names: (n,) joint names in chain order.
        lower, upper: (n,) rad position limits; continuous joints -inf / +inf.
        continuous: (n,) bool, joints without position limits.
        velocity_limits: (n,) rad/s.
        home: (n,) rad, start pose of babbling and servoing.
        tool_offset: m along the z axis of the last DH frame (flange).
        dh: (R, 4) DH rows ``(theta, d, a, alpha)``, rad / m / m / rad; a joint
            row's theta is an offset added to its joint position.
        dh_joint: (R,) int, the joint index driving each row, -1 for fixed rows.
        task_defaults: per-task default configuration (read-only mapping).
        source: the YAML file the robot came from, if any.
        safety: the ``safety`` section of the YAML (read-only mapping; see
            :attr:`envelope` and uvs_core.safety), empty when absent.
        link_names: (n+2,) names of the rigid bodies, for a URDF and TF: the
            base, the body each joint moves (chain order), the flange (the
            frame after the last DH row). Default ``base_link``, ``link_1`` ..
            ``link_n``, ``flange``.
    """

    name: str
    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    continuous: np.ndarray
    velocity_limits: np.ndarray
    home: np.ndarray
    tool_offset: float
    dh: np.ndarray
    dh_joint: np.ndarray
    task_defaults: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    link_names: tuple[str, ...] = ()
    safety: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attr in ("lower", "upper", "velocity_limits", "home", "dh"):
            object.__setattr__(self, attr, _readonly(np.asarray(getattr(self, attr), float)))
        object.__setattr__(self, "continuous", _readonly(np.asarray(self.continuous, bool)))
        dh_joint = np.asarray(self.dh_joint, dtype=np.int64)
        dh_joint.setflags(write=False)
        object.__setattr__(self, "dh_joint", dh_joint)
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        links = tuple(str(name) for name in self.link_names) or (
            "base_link", *(f"link_{j + 1}" for j in range(len(self.joint_names))), "flange")
        object.__setattr__(self, "link_names", links)
        object.__setattr__(self, "tool_offset", float(self.tool_offset))
        object.__setattr__(self, "task_defaults", MappingProxyType(dict(self.task_defaults)))
        object.__setattr__(self, "safety", MappingProxyType(dict(self.safety or {})))
        envelope_from_config(self.safety)  # a bad section fails at load, with the reason
        n = len(self.joint_names)
        for attr in ("lower", "upper", "continuous", "velocity_limits", "home"):
            if getattr(self, attr).shape != (n,):
                raise ValueError(f"robot {self.name!r}: {attr} must have shape ({n},)")
        if self.dh.ndim != 2 or self.dh.shape[1] != 4 or self.dh_joint.shape != self.dh.shape[:1]:
            raise ValueError(f"robot {self.name!r}: dh must be (R, 4) with one joint index per row")
        if sorted(self.dh_joint[self.dh_joint >= 0].tolist()) != list(range(n)):
            raise ValueError(f"robot {self.name!r}: every joint must drive exactly one DH row")
        if len(self.link_names) != n + 2:
            raise ValueError(f"robot {self.name!r}: link_names must name {n + 2} links (base, "
                             f"one per joint, flange), got {len(self.link_names)}")
        if not all(self.link_names) or len(set(self.link_names)) != n + 2:
            raise ValueError(f"robot {self.name!r}: link names must be non-empty and distinct")
        self._cache_rows()

    def _cache_rows(self) -> None:
        """Constants of the single-configuration fast path (see :meth:`_chain_single`).

        A DH row is Rz(theta) C with C = Tz(d) Tx(a) Rx(alpha) constant, so
        row = cos(theta) A + sin(theta) B + D with A, B, D (R, 4, 4) fixed:
        A holds C's first two rows, B the same rotated by 90 deg, D the rest.
        The products of 0/1 entries are exact, so the rows equal the batched
        construction bit for bit.
        """
        rows = self.dh.shape[0]
        a_part, b_part, d_part = (np.zeros((rows, 4, 4)) for _ in range(3))
        for r, (_, d, a, alpha) in enumerate(self.dh):
            ca, sa = math.cos(alpha), math.sin(alpha)
            c = np.array([[1.0, 0.0, 0.0, a], [0.0, ca, -sa, 0.0], [0.0, sa, ca, d],
                          [0.0, 0.0, 0.0, 1.0]])
            a_part[r, 0], a_part[r, 1] = c[0], c[1]
            b_part[r, 0], b_part[r, 1] = -c[1], c[0]
            d_part[r, 2], d_part[r, 3] = c[2], c[3]
        cache = {
            "_row_a": a_part, "_row_b": b_part, "_row_d": d_part,
            "_row_theta0": self.dh[:, 0].copy(),
            "_row_q": np.maximum(self.dh_joint, 0),
            "_row_is_joint": (self.dh_joint >= 0).astype(float),
            "_row_joint": tuple(int(j) for j in self.dh_joint),
        }
        for key, value in cache.items():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, key, value)

    @property
    def n(self) -> int:
        """Number of joints."""
        return len(self.joint_names)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_yaml(cls, path: str | Path) -> Robot:
        """Load a robot from a YAML file; ValueError names the file and the problem."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"robot file {path}: cannot read ({exc.strerror or exc})") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"robot file {path}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"robot file {path}: top level must be a mapping")
        data.setdefault("name", path.stem)
        try:
            return cls.from_dict(data, source=str(path))
        except ValueError as exc:
            raise ValueError(f"robot file {path}: {exc}") from exc

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> Robot:
        """Build a robot from a mapping with the YAML schema (see gen3.yaml)."""
        if not isinstance(d, Mapping):
            raise ValueError("robot description must be a mapping")
        missing = [key for key in ("dh", "joints") if key not in d]
        if missing:
            raise ValueError(f"missing key(s): {', '.join(missing)}")
        name = str(d.get("name", "robot"))
        rows = d["dh"]
        if not isinstance(rows, list) or not rows:
            raise ValueError("'dh' must be a non-empty list of rows")
        dh, dh_joint, joint_names = [], [], []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValueError(f"dh row {i} must be a mapping")
            unknown = set(row) - {"joint", "theta", "d", "a", "alpha"}
            if unknown:
                raise ValueError(f"dh row {i}: unknown key(s) {sorted(unknown)}")
            dh.append([_number(row.get(key, 0.0), f"dh row {i} {key}")
                       for key in ("theta", "d", "a", "alpha")])
            joint = row.get("joint")
            if joint is None:
                dh_joint.append(-1)
            else:
                joint = str(joint)
                if joint in joint_names:
                    raise ValueError(f"dh row {i}: joint {joint!r} drives two rows")
                dh_joint.append(len(joint_names))
                joint_names.append(joint)
        n = len(joint_names)
        if n == 0:
            raise ValueError("no DH row names a joint")

        joints = d["joints"]
        if not isinstance(joints, Mapping):
            raise ValueError("'joints' must map joint names to limits")
        if set(joints) != set(joint_names):
            raise ValueError(f"'joints' names {sorted(map(str, joints))} do not match the DH "
                             f"joints {joint_names}")
        lower, upper, continuous, vel = (np.empty(n), np.empty(n), np.zeros(n, bool),
                                         np.empty(n))
        for j, jn in enumerate(joint_names):
            spec = joints[jn]
            if not isinstance(spec, Mapping):
                raise ValueError(f"joint {jn}: limits must be a mapping")
            if "velocity" not in spec:
                raise ValueError(f"joint {jn}: missing 'velocity' (rad/s)")
            vel[j] = _number(spec["velocity"], f"joint {jn} velocity")
            if not vel[j] > 0:
                raise ValueError(f"joint {jn}: velocity limit must be > 0")
            if spec.get("continuous", False):
                continuous[j] = True
                lower[j], upper[j] = -np.inf, np.inf
                if "lower" in spec or "upper" in spec:
                    raise ValueError(f"joint {jn}: a continuous joint has no lower/upper")
            else:
                if "lower" not in spec or "upper" not in spec:
                    raise ValueError(f"joint {jn}: needs lower and upper (rad) or "
                                     "continuous: true")
                lower[j] = _number(spec["lower"], f"joint {jn} lower")
                upper[j] = _number(spec["upper"], f"joint {jn} upper")
                if not lower[j] < upper[j]:
                    raise ValueError(f"joint {jn}: lower must be < upper")

        home_spec = d.get("home", [0.0] * n)
        if isinstance(home_spec, Mapping):
            extra = set(home_spec) - set(joint_names)
            if extra:
                raise ValueError(f"home names unknown joint(s) {sorted(extra)}")
            home = np.array([_number(home_spec.get(jn, 0.0), f"home {jn}")
                             for jn in joint_names])
        elif isinstance(home_spec, list) and len(home_spec) == n:
            home = np.array([_number(v, "home") for v in home_spec])
        else:
            raise ValueError(f"'home' must be a list of {n} angles or a mapping by joint name")
        if np.any(home < lower) or np.any(home > upper):
            raise ValueError("home lies outside the joint limits")

        tool = _number(d.get("tool_offset", 0.0), "tool_offset")
        links = d.get("links")
        if links is None:
            links = []
        elif (not isinstance(links, list) or len(links) != n + 2
              or not all(isinstance(v, str) for v in links)):
            raise ValueError(f"'links' must be a list of {n + 2} link names (base, one per "
                             "joint, flange)")
        tasks = d.get("tasks", {}) or {}
        if not isinstance(tasks, Mapping):
            raise ValueError("'tasks' must map task names to configurations")
        safety = d.get("safety", {}) or {}
        return cls(name=name, joint_names=tuple(joint_names), lower=lower, upper=upper,
                   continuous=continuous, velocity_limits=vel, home=home, tool_offset=tool,
                   dh=np.array(dh), dh_joint=np.array(dh_joint), task_defaults=dict(tasks),
                   source=source, link_names=tuple(links), safety=safety)

    @property
    def envelope(self) -> Envelope:
        """The tool point's safety envelope from the ``safety`` section (unbounded if none)."""
        return envelope_from_config(self.safety)

    # ------------------------------------------------------------------ kinematics

    def _flat(self, q: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        q = np.asarray(q, dtype=float)
        if q.ndim == 0 or q.shape[-1] != self.n:
            raise ValueError(f"{self.name}: q must have shape (..., {self.n}), got {q.shape}")
        return q.reshape(-1, self.n), q.shape[:-1]

    def _chain(self, qf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Walk the DH rows for ``qf: (B, n)``.

        Returns (axis frames (B, n, 4, 4): frame preceding each joint's row,
        link frames (B, n, 4, 4): frame after each joint's row, tool (B, 4, 4)).
        """
        b = qf.shape[0]
        t = np.broadcast_to(np.eye(4), (b, 4, 4)).copy()
        axes = np.empty((b, self.n, 4, 4))
        links = np.empty((b, self.n, 4, 4))
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
            if j >= 0:
                links[:, j] = t
        tool = t.copy()
        tool[:, :3, 3] += self.tool_offset * t[:, :3, 2]
        return axes, links, tool

    def _chain_single(self, q: np.ndarray, links: bool = False
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """:meth:`_chain` for one configuration ``q: (n,)``, at a fraction of the cost.

        The servo loop asks for one Jacobian per control step; the batched
        walk spends ~100 us there on building rows element by element. Here
        all rows come from three vectorised operations on cached constants
        and the chain is R plain 4x4 products: ndarray.dot, the same BLAS
        product as the batched walk's ``@`` (so the same bits) without the
        matmul ufunc's overhead. Returns (axis frames (n, 4, 4), link frames
        (n, 4, 4) or None unless ``links``, tool (4, 4)).
        """
        theta = self._row_theta0 + q[self._row_q] * self._row_is_joint
        c = np.cos(theta)[:, None, None]
        s = np.sin(theta)[:, None, None]
        rows = c * self._row_a + s * self._row_b + self._row_d
        axes = np.empty((self.n, 4, 4))
        link = np.empty((self.n, 4, 4)) if links else None
        t = _EYE4
        for r, j in enumerate(self._row_joint):
            if j >= 0:
                axes[j] = t
            t = t.dot(rows[r])
            if links and j >= 0:
                link[j] = t
        tool = t.copy()
        tool[:3, 3] += self.tool_offset * t[:3, 2]
        return axes, link, tool

    def frames(self, q: np.ndarray) -> np.ndarray:
        """Frames for drawing: base (identity), the frame after each joint's row, tool.

        q: (..., n) rad -> (..., n+2, 4, 4) homogeneous transforms in the base frame.
        """
        qf, lead = self._flat(q)
        if not lead:
            _, links, tool = self._chain_single(qf[0], links=True)
            return np.concatenate([np.eye(4)[None], links, tool[None]], axis=0)
        _, links, tool = self._chain(qf)
        base = np.broadcast_to(np.eye(4), (qf.shape[0], 1, 4, 4))
        out = np.concatenate([base, links, tool[:, None]], axis=1)
        return out.reshape(*lead, self.n + 2, 4, 4)

    def fk(self, q: np.ndarray) -> np.ndarray:
        """Tool pose in the base frame. q: (..., n) rad -> (..., 4, 4)."""
        qf, lead = self._flat(q)
        if not lead:
            return self._chain_single(qf[0])[2]
        return self._chain(qf)[2].reshape(*lead, 4, 4)

    def position(self, q: np.ndarray) -> np.ndarray:
        """Tool point position in the base frame. q: (..., n) rad -> (..., 3) m."""
        return self.fk(q)[..., :3, 3]

    def jacobian(self, q: np.ndarray, kind: str = "position") -> np.ndarray:
        """True geometric Jacobian of the tool point, base frame.

        q: (..., n) rad. kind="position": (..., 3, n) m/rad, rows d p / d q.
        kind="pose": (..., 6, n), linear rows (m/rad) then angular rows
        (rad/rad: the angular velocity of the tool frame per unit joint rate).
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if type(q) is np.ndarray and q.shape == (self.n,) and q.dtype == np.float64:
            return self._jacobian_single(q, kind)  # one configuration, as given
        qf, lead = self._flat(q)
        if not lead:
            return self._jacobian_single(qf[0], kind)
        axes, _, tool = self._chain(qf)
        z = axes[:, :, :3, 2]                              # (B, n, 3) joint axes
        r = tool[:, None, :3, 3] - axes[:, :, :3, 3]       # (B, n, 3) joint -> tool
        jv = np.swapaxes(np.cross(z, r), 1, 2)             # (B, 3, n)
        if kind == "position":
            return jv.reshape(*lead, 3, self.n)
        jac = np.concatenate([jv, np.swapaxes(z, 1, 2)], axis=1)
        return jac.reshape(*lead, 6, self.n)

    def _jacobian_single(self, q: np.ndarray, kind: str) -> np.ndarray:
        """:meth:`jacobian` for q (n,): the same numbers, in fewer numpy calls."""
        axes, _, tool = self._chain_single(q)
        z = axes[:, :3, 2].T                               # (3, n) joint axes
        r = tool[:3, 3, None] - axes[:, :3, 3].T           # (3, n) joint -> tool
        # Row i of z x r is z[i+1] r[i+2] - z[i+2] r[i+1] (indices mod 3):
        # np.cross's products and differences, in one product of two gathers.
        prod = z.take(_CROSS_Z, axis=0) * r.take(_CROSS_R, axis=0)  # (6, n)
        jv = prod[:3] - prod[3:]
        if kind == "position":
            return jv
        return np.concatenate([jv, z])

    # ------------------------------------------------------------------ limits

    def clip(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip to the position limits. q: (..., n) rad -> (q_clipped (..., n), hit (..., n) bool).

        Continuous joints are never clipped.
        """
        q = np.asarray(q, dtype=float)
        clipped = np.clip(q, self.lower, self.upper)
        return clipped, clipped != q

    def in_limits(self, q: np.ndarray) -> np.ndarray:
        """q: (..., n) rad -> (...,) bool, True where every joint is within its limits."""
        q = np.asarray(q, dtype=float)
        return np.all((q >= self.lower) & (q <= self.upper), axis=-1)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Uniform joint samples within limits; continuous joints in [-pi, pi). -> (size, n) rad."""
        lo = np.where(self.continuous, -np.pi, self.lower)
        hi = np.where(self.continuous, np.pi, self.upper)
        return rng.uniform(lo, hi, size=(int(size), self.n))

    def __repr__(self) -> str:
        return f"Robot(name={self.name!r}, n={self.n}, tool_offset={self.tool_offset})"


# ---------------------------------------------------------------------- loading

def _source_config_dir() -> Path | None:
    """The first ``config/robots`` found walking up from this module (a checkout)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "config" / "robots"
        if candidate.is_dir():
            return candidate
    return None


def _share_config_dir() -> Path | None:
    """``<share of uvs_core>/config/robots`` when ament_index_python finds the package."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        share = get_package_share_directory("uvs_core")
    except (LookupError, OSError, ValueError):
        return None
    return Path(share) / "config" / "robots"


def robot_config_dirs() -> list[Path]:
    """Directories searched for ``<name>.yaml``, in order: installed share, source tree."""
    return [p for p in (_share_config_dir(), _source_config_dir()) if p is not None]


def available_robots() -> list[str]:
    """Names of the robot YAML files found in :func:`robot_config_dirs`."""
    names: set[str] = set()
    for directory in robot_config_dirs():
        if directory.is_dir():
            names.update(p.stem for p in directory.glob("*.yaml"))
    return sorted(names)


def load_robot(name_or_path: str | Path = "gen3") -> Robot:
    """Load a robot by name (``config/robots/<name>.yaml``) or from a YAML path.

    A name is looked up in the installed share of uvs_core first, then in the
    source tree. Raises ValueError for a missing or invalid file.
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return Robot.from_yaml(Path(text).expanduser())
    searched = []
    for directory in robot_config_dirs():
        candidate = directory / f"{text}.yaml"
        searched.append(str(candidate))
        if candidate.is_file():
            return Robot.from_yaml(candidate)
    where = ", ".join(searched) if searched else "no config/robots directory found"
    raise ValueError(f"robot {text!r}: no file {text}.yaml (searched: {where})")
