"""A kinematic chain and joint limits from a URDF (the ``robot_description`` of ROS).

The XML is parsed by urdf_parser_py (ROS's own Python URDF parser; pure Python,
needs only lxml), then the path from ``base_link`` to ``tip_link`` becomes a
:class:`uvs_core.chain.KinematicChain`:

- the joints on the path, from the base out, in order; ``revolute``,
  ``continuous`` and ``prismatic`` joints move, ``fixed`` joints are folded
  into the next joint's origin (or into the tip transform); ``floating`` and
  ``planar`` joints are refused, as are ``mimic`` joints on the path;
- each joint's ``<origin xyz rpy>`` (m, rad; rpy is R = Rz(y) Ry(p) Rx(r)) and
  ``<axis xyz>`` (default 1 0 0, as the URDF spec says), normalised;
- limits from ``<limit>``: ``lower``/``upper`` (rad, or m for prismatic joints)
  for revolute and prismatic joints, ``velocity`` (rad/s or m/s, > 0) for all
  moving joints; a continuous joint has no position limits.

Defaults: ``base_link`` is the root link of the tree; ``tip_link`` is the one
leaf below the base (a tree with several leaves below the base, e.g. a
gripper's fingers, needs ``tip_link``). Joints off the path are ignored.

Every problem is a ValueError with a one-line reason.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from uvs_core.chain import KinematicChain

__all__ = ["UrdfArm", "parse_urdf", "origin_matrix"]

_MOVING = ("revolute", "continuous", "prismatic")


@dataclass(frozen=True)
class UrdfArm:
    """What a URDF says about the arm from base to tip.

    name: the URDF's robot name. chain: base -> tip_link (no tool offset).
    joint_names, joint_types: (n,) moving joints in chain order.
    lower, upper: (n,) rad or m (continuous: -inf / +inf). velocity: (n,) rad/s or m/s.
    link_names: (n+2,) base, the child link of each moving joint, tip.
    """

    name: str
    chain: KinematicChain
    joint_names: tuple[str, ...]
    joint_types: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    link_names: tuple[str, ...]


def origin_matrix(xyz, rpy) -> np.ndarray:
    """A URDF ``<origin>``: xyz (3,) m, rpy (3,) rad, R = Rz(yaw) Ry(pitch) Rx(roll) -> (4, 4)."""
    roll, pitch, yaw = (float(v) for v in rpy)
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    t = np.eye(4)
    t[:3, :3] = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                 [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                 [-sp, cp * sr, cp * cr]]
    t[:3, 3] = [float(v) for v in xyz]
    return t


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _load(xml: str):
    """The urdf_parser_py Robot of the text; its warnings (unknown tags) are silenced."""
    try:
        from urdf_parser_py import xml_reflection
        from urdf_parser_py.urdf import URDF
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ValueError("reading a URDF needs urdf_parser_py (pip install "
                         "urdf-parser-py; see requirements.txt)") from exc
    core = xml_reflection.core
    previous = core.on_error
    core.on_error = lambda message: None  # ros2_control, gazebo, transmission tags are fine
    try:
        return URDF.from_xml_string(xml)
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML ({_one_line(exc)})") from exc
    except core.ParseError as exc:
        raise ValueError(f"invalid URDF ({_one_line(exc)})") from exc
    finally:
        core.on_error = previous


def parse_urdf(xml: str, base_link: str | None = None, tip_link: str | None = None
               ) -> UrdfArm:
    """Read the chain base_link -> tip_link of a URDF text (module docstring for the rules).

    Raises ValueError (one line) for unreadable XML, a link that does not exist,
    a link with two parents (a loop), several roots or leaves where one is
    needed, a tip not below the base, or an unsupported joint on the path.
    """
    if not isinstance(xml, str) or not xml.strip():
        raise ValueError("empty URDF")
    robot = _load(xml)
    links = {link.name for link in robot.links}
    parent_of: dict[str, object] = {}
    children: dict[str, list[str]] = {name: [] for name in links}
    for joint in robot.joints:
        for role, link in (("parent", joint.parent), ("child", joint.child)):
            if link not in links:
                raise ValueError(f"joint {joint.name!r}: {role} link {link!r} is not a link "
                                 "of the URDF")
        if joint.child in parent_of:
            raise ValueError(f"link {joint.child!r} is the child of two joints "
                             f"({parent_of[joint.child].name!r}, {joint.name!r}): a loop, "
                             "not a tree")
        parent_of[joint.child] = joint
        children[joint.parent].append(joint.child)
    roots = sorted(links - set(parent_of))
    if len(roots) != 1:
        raise ValueError("the links do not form one tree (roots: "
                         f"{', '.join(roots) or 'none, a loop'})")
    if base_link is None:
        base_link = roots[0]
    for role, link in (("base_link", base_link), ("tip_link", tip_link)):
        if link is not None and link not in links:
            raise ValueError(f"{role} {link!r} is not a link of the URDF (links: "
                             f"{', '.join(sorted(links))})")
    if tip_link is None:
        leaves, stack = [], [base_link]
        while stack:
            link = stack.pop()
            stack.extend(children[link])
            if not children[link]:
                leaves.append(link)
        if len(leaves) != 1:
            raise ValueError(f"several leaf links below {base_link!r} ({', '.join(sorted(leaves))}"
                             "): give tip_link")
        tip_link = leaves[0]

    path = []
    link = tip_link
    while link != base_link:
        if link not in parent_of or len(path) > len(links):  # the root, or round a loop
            raise ValueError(f"tip_link {tip_link!r} is not below base_link {base_link!r}")
        joint = parent_of[link]
        path.append(joint)
        link = joint.parent
    path.reverse()

    origins, axes, prismatic, names, types, link_names = [], [], [], [], [], [base_link]
    lower, upper, velocity = [], [], []
    pending = np.eye(4)
    for joint in path:
        origin = joint.origin
        t = origin_matrix(origin.xyz if origin is not None and origin.xyz is not None
                          else (0, 0, 0),
                          origin.rpy if origin is not None and origin.rpy is not None
                          else (0, 0, 0))
        if joint.type == "fixed":
            pending = pending @ t
            continue
        if joint.type not in _MOVING:
            raise ValueError(f"joint {joint.name!r}: type {joint.type} is not supported "
                             f"(supported: {', '.join(_MOVING)}, fixed)")
        if getattr(joint, "mimic", None) is not None:
            raise ValueError(f"joint {joint.name!r}: mimic joints are not supported on the "
                             "chain")
        axis = np.asarray(joint.axis if joint.axis is not None else (1.0, 0.0, 0.0), float)
        if axis.shape != (3,) or not np.linalg.norm(axis) > 1e-12:
            raise ValueError(f"joint {joint.name!r}: axis must be a non-zero 3-vector")
        limit = joint.limit
        vel = None if limit is None else limit.velocity
        if vel is None or not float(vel) > 0:
            unit = "m/s" if joint.type == "prismatic" else "rad/s"
            raise ValueError(f"joint {joint.name!r}: needs <limit velocity> > 0 ({unit})")
        if joint.type == "continuous":
            lo, hi = -np.inf, np.inf
        else:
            unit = "m" if joint.type == "prismatic" else "rad"
            lo = None if limit.lower is None else float(limit.lower)
            hi = None if limit.upper is None else float(limit.upper)
            if lo is None or hi is None or not lo < hi:
                raise ValueError(f"joint {joint.name!r}: {joint.type} needs <limit lower upper> "
                                 f"({unit}) with lower < upper")
        origins.append(pending @ t)
        pending = np.eye(4)
        axes.append(axis)
        prismatic.append(joint.type == "prismatic")
        names.append(joint.name)
        types.append(joint.type)
        link_names.append(joint.child)
        lower.append(lo)
        upper.append(hi)
        velocity.append(float(vel))
    if not names:
        raise ValueError(f"no revolute, continuous or prismatic joint between {base_link!r} "
                         f"and {tip_link!r}")
    link_names.append(tip_link)
    chain = KinematicChain(origins=np.array(origins), axes=np.array(axes),
                           prismatic=np.array(prismatic), tip=pending)
    return UrdfArm(name=robot.name, chain=chain, joint_names=tuple(names),
                   joint_types=tuple(types), lower=np.array(lower), upper=np.array(upper),
                   velocity=np.array(velocity), link_names=tuple(link_names))
