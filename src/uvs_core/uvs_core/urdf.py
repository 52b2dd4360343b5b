"""A URDF of a robot description, so robot_state_publisher and RViz show the arm.

``robot_urdf(load_robot("gen3"))`` returns the URDF text that
robot_state_publisher takes as its ``robot_description`` parameter; with the
driver's ``/joint_states`` it publishes ``/tf`` (root ``base_link``) and the
description on ``/robot_description``, which RViz's RobotModel display draws.
``uvs urdf --robot gen3 --out gen3.urdf`` writes the same text.

Kinematic tree (frames in m / rad, URDF conventions):

- one link per rigid body, named by the robot's ``link_names``: the base
  (root), the body each joint moves, the flange, then ``tool_frame`` at the
  tool point (``tool_offset`` along the flange's z axis);
- one ``revolute`` joint (``continuous`` for a joint without position
  limits) per DH joint, with the robot's joint name, limits and velocity
  limit, axis z. A DH row ``Rz(theta + q) Tz(d) Tx(a) Rx(alpha)`` equals
  ``Rz(q) C`` with ``C = Rz(theta) Tz(d) Tx(a) Rx(alpha)`` constant, so the
  joint turns about the z axis of the frame preceding its row, and the
  constant part ``C`` (times any fixed rows that follow it) becomes the
  ``<origin>`` of the next joint. Fixed rows before the first joint go into
  the first joint's origin; the constant part of the last joint row and the
  fixed rows after it are the fixed joint to the flange. So each moving
  link's frame is the DH frame preceding its joint's row, turned by the
  joint angle, and forward kinematics of the URDF equal
  :meth:`uvs_core.robot.Robot.fk` (the tests check 1e-9 m with pinocchio);
- ``effort`` limits are not part of a DH description; they are written as 0
  (URDF requires the attribute; nothing in uvs reads it);
- visual geometry only, no collision or inertia: a cylinder along each DH
  offset (``d`` along z, then ``a`` along x), a short wider cylinder around
  each joint axis, a thinner one from the flange to the tool point.

Gen3 and ros2_kortex's kortex_description. ``config/robots/gen3.yaml``
names the links as kortex_description's gen3 7dof URDF does (``base_link``,
``shoulder_link``, ``half_arm_1_link`` .. ``bracelet_link``,
``end_effector_link``) and the joints are ``joint_1`` .. ``joint_7`` as
there. Checked once against its joint origins at 1000 random configurations
(not a test here: kortex_description is no dependency of uvs): the
joint zeros and directions agree, and
``end_effector_link`` is the same frame within 0.5 mm and 3e-5 rad (its
xacro rounds the DH offsets differently, e.g. 0.15643 + 0.12838 m against
the user guide's 0.2848 m). ``base_link`` and ``end_effector_link`` coincide;
the moving links' frames do not: each is kortex's frame of the same name
moved along its joint axis by a constant 0 to 0.21 m (to the DH origin),
and for half_arm_2, spherical_wrist_1 and bracelet turned by pi about it.
So kortex's meshes do not fit this URDF's moving links as they are. To see the
real Gen3 meshes, where kortex_description is installed, give
robot_state_publisher kortex's own description instead of this one (as
Kinova's view_robot.launch.py builds it); it is driven by uvs's
``/joint_states`` unchanged, since the joint names and zeros match::

    xacro $(ros2 pkg prefix --share kortex_description)/robots/kinova.urdf.xacro \\
        arm:=gen3 dof:=7 gripper:= > gen3_kortex.urdf

and pass that file's text as ``robot_description`` where a launch file
passes ``robot_urdf(...)``. Its root is a ``world`` link with ``base_link``
at identity under it, so RViz's fixed frame ``base_link`` works with either.
Leave ``gripper`` empty (its default is robotiq_2f_85): uvs publishes no
gripper joint, and robot_state_publisher would leave the finger links
without transforms. Without a gripper, kortex's ``tool_frame`` is
``end_effector_link`` itself, whereas this URDF's ``tool_frame`` is the
paper's tool point, ``tool_offset`` (0.12 m for the Gen3) further along z.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from uvs_core.robot import Robot

__all__ = ["TOOL_LINK", "robot_urdf", "rpy_from_matrix"]

TOOL_LINK = "tool_frame"
_LINK_RGBA = "0.75 0.75 0.78 1"
_JOINT_RGBA = "0.25 0.3 0.35 1"
_TOOL_RGBA = "0.1 0.4 1 1"
_MIN_SEGMENT = 1e-6  # m; shorter DH offsets get no cylinder


def _rz(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def _rx(alpha: float) -> np.ndarray:
    c, s = math.cos(alpha), math.sin(alpha)
    return np.array([[1.0, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]])


def _translation(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = x, y, z
    return t


def rpy_from_matrix(r: np.ndarray) -> tuple[float, float, float]:
    """URDF roll, pitch, yaw (rad) of a rotation r: (3, 3), ``r = Rz(yaw) Ry(pitch) Rx(roll)``.

    Yaw comes first and is taken out of r before pitch and roll are read, so
    near pitch = +-pi/2 (where only roll -+ yaw is defined) an inexact yaw is
    absorbed by roll and the angles still give r back to rounding.
    """
    r = np.asarray(r, dtype=float)
    yaw = math.atan2(r[1, 0], r[0, 0])
    c, s = math.cos(yaw), math.sin(yaw)
    rest = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ r  # Ry(pitch) Rx(roll)
    pitch = math.atan2(-rest[2, 0], rest[0, 0])
    roll = math.atan2(-rest[1, 2], rest[1, 1])
    return roll, pitch, yaw


def _fmt(value: float, digits: int | None = None) -> str:
    """Text of a float: the shortest that reads back as the same float, or rounded to
    ``digits`` decimals (visual geometry, where a nanometre does not matter); 0 below 1e-12."""
    value = float(value) if digits is None else round(float(value), digits)
    if abs(value) < 1e-12:
        return "0"
    return repr(value)


def _origin(parent: ET.Element, t: np.ndarray, digits: int | None = None) -> None:
    """An ``<origin>`` of the pose t: (4, 4), m, in the frame of the parent element."""
    ET.SubElement(parent, "origin", xyz=" ".join(_fmt(v, digits) for v in t[:3, 3]),
                  rpy=" ".join(_fmt(v, digits) for v in rpy_from_matrix(t[:3, :3])))


def _cylinder(link: ET.Element, start: np.ndarray, end: np.ndarray, radius: float,
              material: str) -> None:
    """A visual cylinder from start to end: (3,) m, in the link's frame."""
    axis = end - start
    length = float(np.linalg.norm(axis))
    if length < _MIN_SEGMENT:
        return
    u = axis / length
    if u[2] < 0:  # a cylinder is symmetric: turn z the short way, never by pi
        u = -u
    # Rotation taking z to u about z x u (Rodrigues): identity for u = z.
    v = np.array([-u[1], u[0], 0.0])
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    pose = np.eye(4)
    pose[:3, :3] = np.eye(3) + vx + vx @ vx / (1.0 + u[2])
    pose[:3, 3] = (start + end) / 2
    _visual(link, pose, "cylinder", material, radius=_fmt(radius, 6), length=_fmt(length, 6))


def _visual(link: ET.Element, pose: np.ndarray, shape: str, material: str, **size: str) -> None:
    visual = ET.SubElement(link, "visual")
    _origin(visual, pose, digits=9)
    ET.SubElement(ET.SubElement(visual, "geometry"), shape, **size)
    ET.SubElement(visual, "material", name=material)


def _row_constant(theta: float, d: float, a: float, alpha: float
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """C = Rz(theta) Tz(d) Tx(a) Rx(alpha): (4, 4), and the corner points of the offset
    path (after Tz(d), after Tx(a)): 2 x (3,) m, in the frame before the row."""
    after_d = _rz(theta) @ _translation(z=d)
    after_a = after_d @ _translation(x=a)
    return after_a @ _rx(alpha), [after_d[:3, 3], after_a[:3, 3]]


def robot_urdf(robot: Robot, radius: float = 0.04, tool_link: str = TOOL_LINK) -> str:
    """The URDF (XML text) of ``robot``: the kinematic tree described in the module docstring.

    radius: m, radius of the link cylinders (joints 1.3x, tool 0.5x).
    tool_link: name of the link at the tool point (child of the flange).
    Raises ValueError if ``tool_link`` is one of the robot's link names or radius <= 0.
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0 m, got {radius}")
    links = robot.link_names
    if tool_link in links:
        raise ValueError(f"tool link {tool_link!r} is also a link of robot {robot.name!r}")
    root = ET.Element("robot", name=robot.name)
    root.append(ET.Comment(f" Generated by uvs (uvs_core.urdf.robot_urdf) from the DH "
                           f"description of robot '{robot.name}'. Do not edit. "))
    for name, rgba in (("uvs_link", _LINK_RGBA), ("uvs_joint", _JOINT_RGBA),
                       ("uvs_tool", _TOOL_RGBA)):
        ET.SubElement(ET.SubElement(root, "material", name=name), "color", rgba=rgba)

    link_elements = {name: ET.Element("link", name=name) for name in (*links, tool_link)}
    joint_elements: list[ET.Element] = []
    # The base: a flat cylinder standing on the base frame's xy plane.
    _cylinder(link_elements[links[0]], np.zeros(3), np.array([0.0, 0.0, radius]),
              1.5 * radius, "uvs_joint")

    def joint(name: str, kind: str, parent: str, child: str, origin: np.ndarray) -> ET.Element:
        element = ET.Element("joint", name=name, type=kind)
        _origin(element, origin)
        ET.SubElement(element, "parent", link=parent)
        ET.SubElement(element, "child", link=child)
        joint_elements.append(element)
        return element

    if robot.dh is None:
        _chain_urdf(robot, link_elements, joint, radius, tool_link)
        return _finish(root, link_elements, joint_elements)
    current = links[0]        # the link the next rows belong to
    pending = np.eye(4)       # current link frame -> frame after the rows seen so far
    for (theta, d, a, alpha), j in zip(robot.dh, robot.dh_joint):
        if j >= 0:
            name, child = robot.joint_names[j], links[j + 1]
            kind = "continuous" if robot.continuous[j] else "revolute"
            element = joint(name, kind, current, child, pending)
            ET.SubElement(element, "axis", xyz="0 0 1")
            limit = {"effort": "0", "velocity": _fmt(robot.velocity_limits[j])}
            if kind == "revolute":
                limit = {"lower": _fmt(robot.lower[j]), "upper": _fmt(robot.upper[j]), **limit}
            ET.SubElement(element, "limit", **limit)
            current, pending = child, np.eye(4)
            _cylinder(link_elements[child], np.array([0.0, 0.0, -1.3 * radius]),
                      np.array([0.0, 0.0, 1.3 * radius]), 1.3 * radius, "uvs_joint")
        constant, corners = _row_constant(theta, d, a, alpha)
        start = pending[:3, 3]
        for corner in corners:
            end = pending[:3, :3] @ corner + pending[:3, 3]
            _cylinder(link_elements[current], start, end, radius, "uvs_link")
            start = end
        pending = pending @ constant
    flange = links[-1]
    joint(f"{flange}_joint", "fixed", current, flange, pending)
    joint(f"{tool_link}_joint", "fixed", flange, tool_link,
          _translation(z=robot.tool_offset))
    _cylinder(link_elements[flange], np.zeros(3), np.array([0.0, 0.0, robot.tool_offset]),
              0.5 * radius, "uvs_tool")
    _visual(link_elements[tool_link], np.eye(4), "sphere", "uvs_tool", radius=_fmt(0.6 * radius, 6))

    return _finish(root, link_elements, joint_elements)


def _finish(root: ET.Element, link_elements: dict, joint_elements: list) -> str:
    """The URDF text of root with its links, then its joints."""
    for element in (*link_elements.values(), *joint_elements):
        root.append(element)
    ET.indent(root)
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _chain_urdf(robot: Robot, link_elements: dict, add, radius: float, tool_link: str) -> None:
    """robot_urdf of a robot without DH rows (built from a URDF): one joint per chain
    joint, with its origin, axis, type and limits; a cylinder from each link's origin to
    the next joint's."""
    links, chain = robot.link_names, robot.chain
    for j in range(robot.n):
        kind = robot.joint_types[j]
        element = add(robot.joint_names[j], kind, links[j], links[j + 1], chain.origins[j])
        ET.SubElement(element, "axis", xyz=" ".join(_fmt(v) for v in chain.axes[j]))
        limit = {"effort": "0", "velocity": _fmt(robot.velocity_limits[j])}
        if kind != "continuous":
            limit = {"lower": _fmt(robot.lower[j]), "upper": _fmt(robot.upper[j]), **limit}
        ET.SubElement(element, "limit", **limit)
        end = chain.origins[j + 1][:3, 3] if j + 1 < robot.n else chain.tip[:3, 3]
        _cylinder(link_elements[links[j + 1]], np.zeros(3), end, radius, "uvs_link")
    _cylinder(link_elements[links[0]], np.zeros(3), chain.origins[0][:3, 3], radius, "uvs_link")
    flange = links[-1]
    add(f"{flange}_joint", "fixed", links[-2], flange, chain.tip)
    add(f"{tool_link}_joint", "fixed", flange, tool_link, _translation(z=robot.tool_offset))
    _visual(link_elements[tool_link], np.eye(4), "sphere", "uvs_tool", radius=_fmt(0.6 * radius, 6))
