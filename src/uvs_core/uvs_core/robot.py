"""Serial arms from DH rows or a URDF: FK, true Jacobians, limits.

A robot is a YAML file (schema at the top of ``config/robots/gen3.yaml``) that
gives either classical DH rows or a URDF (``urdf:``, ``base_link:``,
``tip_link:``), or a URDF file on its own; adding an arm needs files and no
code. Every kinematic function takes joint positions ``q: (n,) or (B, n)``
(rad for a revolute joint, m for a prismatic one; any leading shape works) and
returns the same leading shape. Positions are in m, in the robot's base frame.

Both descriptions compile into one :class:`uvs_core.chain.KinematicChain`
(fixed transforms, joint axes, revolute or prismatic). Each DH row is
``T = Rz(theta) Tz(d) Tx(a) Rx(alpha)``; a joint row adds its joint position
to ``theta``, so joint ``i`` turns about the z axis of the frame that precedes
its row. The Jacobian is ``J_i = w_i x (p_e - p_i)`` (position) and ``w_i``
(angular) for a revolute joint, ``w_i`` and 0 for a prismatic one.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml

from uvs_core.chain import JOINT_TYPES, KinematicChain, chain_from_dh
from uvs_core.paths import installed_dirs
from uvs_core.safety import Envelope, envelope_from_config

__all__ = ["Robot", "load_robot", "available_robots", "urdf_task_defaults"]

_KINDS = ("position", "pose")
_EYE4 = np.eye(4)
_EYE4.setflags(write=False)


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


def _home(spec: Any, joint_names: tuple[str, ...] | list[str], lower: np.ndarray,
          upper: np.ndarray) -> np.ndarray:
    """home (n,) rad / m from a list of n values or a mapping by joint name (others 0)."""
    n = len(joint_names)
    if isinstance(spec, Mapping):
        extra = set(spec) - set(joint_names)
        if extra:
            raise ValueError(f"home names unknown joint(s) {sorted(extra)}")
        home = np.array([_number(spec.get(jn, 0.0), f"home {jn}") for jn in joint_names])
    elif isinstance(spec, (list, tuple, np.ndarray)) and len(spec) == n:
        home = np.array([_number(v, "home") for v in spec])
    else:
        raise ValueError(f"'home' must be a list of {n} values (rad or m) or a mapping by "
                         "joint name")
    if np.any(home < lower) or np.any(home > upper):
        raise ValueError("home lies outside the joint limits")
    return home


@dataclass(frozen=True, eq=False)
class Robot:
    """An immutable serial arm of revolute, continuous and prismatic joints.

    Attributes:
        name: robot name.
        joint_names: (n,) joint names in chain order.
        lower, upper: (n,) position limits, rad (m for prismatic joints);
            continuous joints -inf / +inf.
        continuous: (n,) bool, joints without position limits.
        velocity_limits: (n,) rad/s (m/s for prismatic joints).
        home: (n,) rad / m, start pose of babbling and servoing.
        tool_offset: m along the z axis of the flange (the last DH frame, or the
            URDF's tip link).
        dh: (R, 4) DH rows ``(theta, d, a, alpha)``, rad / m / m / rad; a joint
            row's theta is an offset added to its joint position. None for a
            robot built from a URDF.
        dh_joint: (R,) int, the joint index driving each row, -1 for fixed rows
            (None with ``dh``).
        task_defaults: per-task default configuration (read-only mapping).
        source: the file the robot came from (YAML or URDF), if any.
        link_names: (n+2,) names of the rigid bodies, for a URDF and TF: the
            base, the body each joint moves (chain order), the flange. Default
            ``base_link``, ``link_1`` .. ``link_n``, ``flange``.
        safety: the ``safety`` section of the YAML (read-only mapping; see
            :attr:`envelope` and uvs_core.safety), empty when absent.
        chain: the kinematic chain from the base to the flange (tool offset not
            included); compiled from ``dh`` when that is given, else required.
        joint_types: (n,) "revolute", "continuous" or "prismatic"; default from
            ``continuous`` (revolute joints only).
        urdf: the URDF text the robot was built from, if any.
    """

    name: str
    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    continuous: np.ndarray
    velocity_limits: np.ndarray
    home: np.ndarray
    tool_offset: float
    dh: np.ndarray | None = None
    dh_joint: np.ndarray | None = None
    task_defaults: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    link_names: tuple[str, ...] = ()
    safety: Mapping[str, Any] = field(default_factory=dict)
    chain: KinematicChain | None = None
    joint_types: tuple[str, ...] = ()
    urdf: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for attr in ("lower", "upper", "velocity_limits", "home"):
            object.__setattr__(self, attr, _readonly(np.asarray(getattr(self, attr), float)))
        object.__setattr__(self, "continuous", _readonly(np.asarray(self.continuous, bool)))
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        n = len(self.joint_names)
        links = tuple(str(name) for name in self.link_names) or (
            "base_link", *(f"link_{j + 1}" for j in range(n)), "flange")
        object.__setattr__(self, "link_names", links)
        object.__setattr__(self, "tool_offset", float(self.tool_offset))
        object.__setattr__(self, "task_defaults", MappingProxyType(dict(self.task_defaults)))
        object.__setattr__(self, "safety", MappingProxyType(dict(self.safety or {})))
        envelope_from_config(self.safety)  # a bad section fails at load, with the reason
        for attr in ("lower", "upper", "continuous", "velocity_limits", "home"):
            if getattr(self, attr).shape != (n,):
                raise ValueError(f"robot {self.name!r}: {attr} must have shape ({n},)")
        if self.dh is not None:
            object.__setattr__(self, "dh", _readonly(np.asarray(self.dh, float)))
            dh_joint = np.asarray(self.dh_joint, dtype=np.int64)
            dh_joint.setflags(write=False)
            object.__setattr__(self, "dh_joint", dh_joint)
            if (self.dh.ndim != 2 or self.dh.shape[1] != 4
                    or self.dh_joint.shape != self.dh.shape[:1]):
                raise ValueError(f"robot {self.name!r}: dh must be (R, 4) with one joint "
                                 "index per row")
            if self.dh_joint[self.dh_joint >= 0].tolist() != list(range(n)):
                raise ValueError(f"robot {self.name!r}: every joint must drive exactly one DH "
                                 "row, in joint order")
            object.__setattr__(self, "chain", chain_from_dh(self.dh, self.dh_joint))
        elif self.chain is None:
            raise ValueError(f"robot {self.name!r}: needs DH rows or a kinematic chain")
        if self.chain.n != n:
            raise ValueError(f"robot {self.name!r}: the chain has {self.chain.n} joints, "
                             f"the names {n}")
        types = tuple(self.joint_types) or tuple(
            "continuous" if c else "revolute" for c in self.continuous)
        if len(types) != n or any(t not in JOINT_TYPES for t in types):
            raise ValueError(f"robot {self.name!r}: joint_types must be {n} of {JOINT_TYPES}")
        object.__setattr__(self, "joint_types", types)
        prismatic = np.array([t == "prismatic" for t in types])
        if not np.array_equal(prismatic, self.chain.prismatic):
            raise ValueError(f"robot {self.name!r}: joint_types disagree with the chain")
        if np.any(self.continuous != np.array([t == "continuous" for t in types])):
            raise ValueError(f"robot {self.name!r}: continuous must mark the continuous "
                             "joints of joint_types")
        if len(self.link_names) != n + 2:
            raise ValueError(f"robot {self.name!r}: link_names must name {n + 2} links (base, "
                             f"one per joint, flange), got {len(self.link_names)}")
        if not all(self.link_names) or len(set(self.link_names)) != n + 2:
            raise ValueError(f"robot {self.name!r}: link names must be non-empty and distinct")
        tool = np.eye(4)
        tool[2, 3] = self.tool_offset
        object.__setattr__(self, "_tool_chain", self.chain.with_tip(self.chain.tip @ tool))

    @property
    def prismatic(self) -> np.ndarray:
        """(n,) bool, True for prismatic joints (q in m, velocity in m/s)."""
        return self.chain.prismatic

    @property
    def units(self) -> tuple[str, ...]:
        """(n,) unit of each joint position: "rad" or "m"."""
        return tuple("m" if p else "rad" for p in self.prismatic)

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
        """Build a robot from a mapping with the YAML schema (see gen3.yaml).

        With a ``urdf`` key the kinematics come from that URDF file (a path
        relative to the YAML's directory when ``source`` is given), else from
        ``dh`` and ``joints``.
        """
        if not isinstance(d, Mapping):
            raise ValueError("robot description must be a mapping")
        if "urdf" in d:
            return cls._from_urdf_dict(d, source)
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

        home = _home(d.get("home", [0.0] * n), joint_names, lower, upper)
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

    @classmethod
    def _from_urdf_dict(cls, d: Mapping[str, Any], source: str | None) -> Robot:
        """from_dict for a YAML that references a URDF (``urdf``, ``base_link``, ``tip_link``)."""
        extra = set(d) & {"dh", "joints", "links"}
        if extra:
            raise ValueError(f"a robot from a URDF takes its joints and links from it; remove "
                             f"{', '.join(sorted(extra))}")
        unknown = set(d) - {"name", "urdf", "base_link", "tip_link", "tool_offset", "home",
                            "tasks", "safety"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}")
        path = Path(str(d["urdf"])).expanduser()
        if source is not None and not path.is_absolute():
            path = Path(source).parent / path
        try:
            xml = path.read_text()
        except OSError as exc:
            raise ValueError(f"urdf {path}: cannot read ({exc.strerror or exc})") from exc
        tasks = d.get("tasks", {}) or {}
        if not isinstance(tasks, Mapping):
            raise ValueError("'tasks' must map task names to configurations")
        try:
            return cls.from_urdf(
                xml, base_link=d.get("base_link"), tip_link=d.get("tip_link"),
                tool_offset=_number(d.get("tool_offset", 0.0), "tool_offset"),
                name=str(d["name"]) if "name" in d else None, home=d.get("home"),
                task_defaults=tasks, safety=d.get("safety", {}) or {}, source=source)
        except ValueError as exc:
            raise ValueError(f"urdf {path}: {exc}") from exc

    @classmethod
    def from_urdf(cls, xml: str, base_link: str | None = None, tip_link: str | None = None,
                  tool_offset: float | None = None, name: str | None = None, *,
                  home: Any = None, task_defaults: Mapping[str, Any] | None = None,
                  safety: Mapping[str, Any] | None = None, source: str | None = None
                  ) -> Robot:
        """A robot from URDF text (e.g. a ``robot_description`` parameter).

        base_link: default the root link; tip_link: default the one leaf below the
        base (uvs_core.urdf_model has the rules). tool_offset: m along the tip
        link's z axis (default 0). name: default the URDF's robot name.
        home: (n,) rad / m or a mapping by joint name; default per joint 0 where
        0 is within its limits, else the middle of its range.
        task_defaults: the ``tasks`` section; default :func:`urdf_task_defaults`
        (a bent start for the position tasks when home is singular).
        Raises ValueError (one line) for a bad URDF or arguments.
        """
        from uvs_core.urdf_model import parse_urdf

        arm = parse_urdf(xml, base_link=base_link, tip_link=tip_link)
        if home is None:
            with np.errstate(invalid="ignore"):  # continuous joints: (-inf + inf) / 2, unused
                middle = (arm.lower + arm.upper) / 2
            home = np.where((arm.lower <= 0.0) & (arm.upper >= 0.0), 0.0, middle)
        else:
            home = _home(home, arm.joint_names, arm.lower, arm.upper)
        links = arm.link_names
        if links[-1] == links[-2]:  # the tip is the last moving link: no separate flange
            links = (*links[:-1], f"{links[-1]}_flange")
        robot = cls(name=arm.name if name is None else str(name), joint_names=arm.joint_names,
                    lower=arm.lower, upper=arm.upper,
                    continuous=[t == "continuous" for t in arm.joint_types],
                    velocity_limits=arm.velocity, home=home,
                    tool_offset=0.0 if tool_offset is None else float(tool_offset),
                    task_defaults=task_defaults or {}, source=source, link_names=links,
                    safety=safety or {}, chain=arm.chain, joint_types=arm.joint_types,
                    urdf=xml)
        if task_defaults is None:
            robot = replace(robot, task_defaults=urdf_task_defaults(robot))
        return robot

    @classmethod
    def from_urdf_file(cls, path: str | Path, base_link: str | None = None,
                       tip_link: str | None = None, tool_offset: float | None = None
                       ) -> Robot:
        """:meth:`from_urdf` of a file; the name defaults to the file's stem."""
        path = Path(path)
        try:
            xml = path.read_text()
        except OSError as exc:
            raise ValueError(f"urdf {path}: cannot read ({exc.strerror or exc})") from exc
        try:
            return cls.from_urdf(xml, base_link, tip_link, tool_offset, name=path.stem,
                                 source=str(path))
        except ValueError as exc:
            raise ValueError(f"urdf {path}: {exc}") from exc

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

    def frames(self, q: np.ndarray) -> np.ndarray:
        """Frames for drawing and TF: base (identity), each joint's moving link, tool.

        q: (..., n) rad / m -> (..., n+2, 4, 4) homogeneous transforms in the base
        frame. Link j's frame is the URDF child link of joint j (for a DH robot:
        the DH frame before joint j's row, turned by q_j; see uvs_core.chain).
        """
        qf, lead = self._flat(q)
        if not lead:
            links, tool = self._tool_chain.links_single(qf[0])
            return np.concatenate([_EYE4[None], links, tool[None]], axis=0)
        links, tool = self._tool_chain.links(qf)
        base = np.broadcast_to(_EYE4, (qf.shape[0], 1, 4, 4))
        out = np.concatenate([base, links, tool[:, None]], axis=1)
        return out.reshape(*lead, self.n + 2, 4, 4)

    def fk(self, q: np.ndarray) -> np.ndarray:
        """Tool pose in the base frame. q: (..., n) rad / m -> (..., 4, 4)."""
        qf, lead = self._flat(q)
        if not lead:
            return self._tool_chain.links_single(qf[0])[1]
        return self._tool_chain.links(qf)[1].reshape(*lead, 4, 4)

    def position(self, q: np.ndarray) -> np.ndarray:
        """Tool point position in the base frame. q: (..., n) rad / m -> (..., 3) m."""
        return self.fk(q)[..., :3, 3]

    def jacobian(self, q: np.ndarray, kind: str = "position") -> np.ndarray:
        """True geometric Jacobian of the tool point, base frame.

        q: (..., n) rad / m. kind="position": (..., 3, n), rows d p / d q: m/rad for
        a revolute joint, m/m for a prismatic one (its axis). kind="pose":
        (..., 6, n), those linear rows then angular rows (rad/rad: the angular
        velocity of the tool frame per unit joint rate; 0 for a prismatic joint).
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if type(q) is np.ndarray and q.shape == (self.n,) and q.dtype == np.float64:
            return self._tool_chain.jacobian_single(q, kind)  # one configuration, as given
        qf, lead = self._flat(q)
        if not lead:
            return self._tool_chain.jacobian_single(qf[0], kind)
        jac, _ = self._tool_chain.jacobian(qf, kind)
        return jac.reshape(*lead, jac.shape[1], self.n)

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


#: ratio sigma_min / sigma_max of the position Jacobian under which a start pose is singular
_SINGULAR_RATIO = 1e-3
#: rad: the bend of the paper's start pose q = [0, .5, 0, -.5, 0, .5, 0] (Gen3)
_BEND = 0.5


def _position_singular(robot: Robot, q: np.ndarray) -> bool:
    """True where the position Jacobian at q: (n,) has rank < min(3, n) (ratio above)."""
    sv = np.linalg.svd(robot.jacobian(np.asarray(q, float)), compute_uv=False)
    rank = min(3, robot.n)
    return not sv[0] > 0 or sv[rank - 1] < _SINGULAR_RATIO * sv[0]


def urdf_task_defaults(robot: Robot) -> dict[str, Any]:
    """Task defaults for a robot given only as a URDF (no ``tasks`` section).

    The position tasks (single_point, multi_point, pose) start at home, unless the
    position Jacobian is singular there (a stretched arm at all zeros, where the
    true Jacobian cannot move the tool along the arm): then they start at home
    with the paper's bend, +0.5, -0.5, +0.5 .. rad on the 2nd, 4th, 6th ..
    revolute joints (the Gen3 protocol's q = [0, .5, 0, -.5, 0, .5, 0]), clipped to
    the limits. visual_servo keeps the code defaults (joints 2 and 4, a camera
    2.5 m along -y): a robot for it needs a YAML ``tasks`` section.
    """
    if not _position_singular(robot, robot.home):
        return {}
    start = robot.home.copy()
    revolute = np.flatnonzero(~robot.prismatic)
    for k, j in enumerate(revolute[1::2]):
        start[j] += _BEND if k % 2 == 0 else -_BEND
    start = np.clip(start, robot.lower, robot.upper)
    if _position_singular(robot, start):
        return {}
    pose = [float(v) for v in start]
    return {"single_point": {"home": pose}, "multi_point": {"home": pose}, "pose": {"home": pose}}


# ---------------------------------------------------------------------- loading

def available_robots() -> list[str]:
    """Names of the robot YAML and URDF files of the installed robots
    (``uvs_core.paths.installed_dirs("robots")``)."""
    names: set[str] = set()
    for directory in installed_dirs("robots"):
        if directory.is_dir():
            names.update(p.stem for p in directory.glob("*.yaml"))
            names.update(p.stem for p in directory.glob("*.urdf"))
    return sorted(names)


def load_robot(name_or_path: str | Path = "gen3") -> Robot:
    """Load a robot by name, or from a YAML or URDF path.

    A name is ``config/robots/<name>.yaml``, else ``config/robots/<name>.urdf``,
    looked up in the installed share of uvs_core first, then in the source
    tree. A ``.urdf`` path (or name) gets :meth:`Robot.from_urdf`'s defaults:
    base the root link, tip the one leaf, no tool offset, home 0 or mid-range.
    Raises ValueError for a missing or invalid file, with the reason.
    """
    text = str(name_or_path)
    if text.endswith(".urdf"):
        return Robot.from_urdf_file(Path(text).expanduser())
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return Robot.from_yaml(Path(text).expanduser())
    searched = []
    for directory in installed_dirs("robots"):
        for suffix, build in ((".yaml", Robot.from_yaml), (".urdf", Robot.from_urdf_file)):
            candidate = directory / f"{text}{suffix}"
            searched.append(str(candidate))
            if candidate.is_file():
                return build(candidate)
    where = ", ".join(searched) if searched else "no config/robots directory found"
    raise ValueError(f"robot {text!r}: no file {text}.yaml or {text}.urdf (searched: {where})")
