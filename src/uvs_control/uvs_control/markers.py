"""RViz markers of a servo: arm links, end-effector, target point(s), error arrow."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from uvs_core.robot import Robot

__all__ = ["MARKER_NAMESPACES", "servo_markers"]

MARKER_NAMESPACES = ("arm", "end_effector", "target", "error", "status", "target_axes")

_GREY = ColorRGBA(r=0.6, g=0.6, b=0.6, a=1.0)
_BLUE = ColorRGBA(r=0.1, g=0.4, b=1.0, a=1.0)
_GREEN = ColorRGBA(r=0.1, g=0.9, b=0.2, a=0.8)
_RED = ColorRGBA(r=1.0, g=0.2, b=0.1, a=1.0)
_WHITE = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
_AXIS_COLORS = (ColorRGBA(r=1.0, g=0.0, b=0.0, a=1.0), ColorRGBA(r=0.0, g=1.0, b=0.0, a=1.0),
                ColorRGBA(r=0.0, g=0.0, b=1.0, a=1.0))


def _point(p) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def _marker(ns: str, kind: int, frame_id: str, stamp) -> Marker:
    marker = Marker()
    marker.header.frame_id = frame_id
    if stamp is not None:
        marker.header.stamp = stamp
    marker.ns, marker.id, marker.type, marker.action = ns, 0, kind, Marker.ADD
    marker.pose.orientation.w = 1.0
    return marker


def _delete(ns: str, frame_id: str, stamp) -> Marker:
    marker = _marker(ns, Marker.SPHERE, frame_id, stamp)
    marker.action = Marker.DELETE
    return marker


def servo_markers(robot: Robot, q: np.ndarray, target: np.ndarray | None = None,
                  units: str = "m", frame_id: str = "base_link", stamp=None,
                  status_text: str = "", target_rotation: np.ndarray | None = None,
                  axis_length: float = 0.1) -> MarkerArray:
    """Markers in the robot's base frame ``frame_id``.

    q: (n,) rad, robot joint order. target: (m,) x* or None; drawn (with an
    arrow from the tool point to the first target point) only for tasks in
    metres whose x stacks 3-D points; otherwise the target markers are deleted.
    status_text: shown above the tool point (state, error, estimator), since RViz has
    no display for the ServoStatus message itself.
    target_rotation: (3, 3) orientation of a pose target (the pose task; ``target`` is
    then its position): its frame is drawn as x, y, z axes (red, green, blue lines of
    ``axis_length`` m) at the target point, with the tool's own axes beside them;
    deleted otherwise.
    """
    q = np.asarray(q, dtype=float)
    frames = robot.frames(q)                       # (n+2, 4, 4) base, joints, tool
    tool = frames[-1, :3, 3]
    arm = _marker("arm", Marker.LINE_STRIP, frame_id, stamp)
    arm.points = [_point(p) for p in frames[:, :3, 3]]
    arm.scale.x = 0.03
    arm.color = _GREY
    tip = _marker("end_effector", Marker.SPHERE, frame_id, stamp)
    tip.pose.position = _point(tool)
    tip.scale.x = tip.scale.y = tip.scale.z = 0.04
    tip.color = _BLUE
    markers = [arm, tip]
    drawable = (target is not None and units == "m" and np.size(target) % 3 == 0
                and np.all(np.isfinite(target)))
    if drawable:
        points = np.asarray(target, dtype=float).reshape(-1, 3)
        goal = _marker("target", Marker.SPHERE_LIST, frame_id, stamp)
        goal.points = [_point(p) for p in points]
        goal.scale.x = goal.scale.y = goal.scale.z = 0.04
        goal.color = _GREEN
        arrow = _marker("error", Marker.ARROW, frame_id, stamp)
        arrow.points = [_point(tool), _point(points[0])]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.01, 0.02, 0.02
        arrow.color = _RED
        markers += [goal, arrow]
    else:
        markers += [_delete("target", frame_id, stamp), _delete("error", frame_id, stamp)]
    if drawable and target_rotation is not None and np.all(np.isfinite(target_rotation)):
        axes = _marker("target_axes", Marker.LINE_LIST, frame_id, stamp)
        axes.scale.x = 0.008
        rot = np.asarray(target_rotation, dtype=float)
        origin = np.asarray(target, dtype=float).reshape(-1, 3)[0]
        for o, r in ((origin, rot), (tool, frames[-1, :3, :3])):
            for c, color in enumerate(_AXIS_COLORS):
                axes.points += [_point(o), _point(o + axis_length * r[:, c])]
                axes.colors += [color, color]
        markers.append(axes)
    else:
        markers.append(_delete("target_axes", frame_id, stamp))
    if status_text:
        text = _marker("status", Marker.TEXT_VIEW_FACING, frame_id, stamp)
        text.pose.position = _point(tool + np.array([0.0, 0.0, 0.15]))
        text.scale.z = 0.05
        text.color = _WHITE
        text.text = status_text
        markers.append(text)
    return MarkerArray(markers=markers)
