"""A geometry_msgs/PoseStamped target converted to a task's x* (the controller's
``target_pose`` topic)."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped

from uvs_core.tasks import Task, quaternion_matrix

__all__ = ["pose_target"]


def pose_target(task: Task, msg: PoseStamped, frame_id: str
                ) -> tuple[np.ndarray | None, str | None]:
    """x* of a tool pose: (x (m,), None), or (None, the reason it is refused).

    The pose must be given in the base frame ``frame_id`` (no TF lookup here), with a
    finite position (m) and a finite non-zero quaternion (normalised here). The task
    converts it (Task.x_from_pose): pose -> (p, phi), single_point -> p, multi_point ->
    its 4 points; visual_servo has no pose target.
    """
    if msg.header.frame_id != frame_id:
        return None, (f"frame_id {msg.header.frame_id!r} is not the base frame {frame_id!r} "
                      f"(give the pose in {frame_id!r})")
    p = msg.pose.position
    position = np.array([p.x, p.y, p.z], dtype=float)
    if not np.all(np.isfinite(position)):
        return None, "position is not finite"
    o = msg.pose.orientation
    try:
        rotation = quaternion_matrix((o.x, o.y, o.z, o.w))
        return np.asarray(task.x_from_pose(position, rotation), dtype=float), None
    except ValueError as exc:
        return None, str(exc)
