"""The pose task in the live node graph: a geometry_msgs/PoseStamped on `target_pose` is
converted to x* (position + rotation vector) and the true Jacobian servos onto it;
a pose in another frame is refused."""

from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PoseStamped

from uvs_bringup.graph import GraphOptions
from uvs_bringup.runner import ServoGraph
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task, so3_log
from uvs_ros.qos import COMMAND_QOS

GEN3 = load_robot("gen3")
# A pose the true Jacobian reaches from the start pose without meeting a joint limit
# (every joint moved, the tool moved by 0.33 m and turned by 0.71 rad).
OFFSET = np.array([0.3, 0.2, -0.2, 0.3, 0.2, -0.3, 0.4])


def _pose_msg(position, rotation, frame_id: str) -> PoseStamped:
    phi = so3_log(rotation)
    angle = float(np.linalg.norm(phi))
    axis = phi / angle if angle > 0 else np.zeros(3)
    msg = PoseStamped()
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, position)
    o = msg.pose.orientation
    o.x, o.y, o.z = (float(v) for v in np.sin(angle / 2) * axis)
    o.w = float(np.cos(angle / 2))
    return msg


def test_pose_stamped_target_is_reached_with_the_true_jacobian():
    task = make_task("pose", GEN3)
    t = GEN3.fk(task.q_fixed + OFFSET)
    expected = task.x_from_pose(t[:3, 3], t[:3, :3])
    with ServoGraph(GraphOptions(task="pose", estimator="tj")) as graph:
        op = graph.operator
        pub = op.create_publisher(PoseStamped, "target_pose", COMMAND_QOS)
        deadline = time.monotonic() + 5.0
        while pub.get_subscription_count() < 1:
            assert time.monotonic() < deadline, "controller never subscribed to target_pose"
            time.sleep(0.05)

        def ours(status) -> bool:
            return len(status.target) == 6 and np.allclose(status.target, expected,
                                                           atol=1e-6)

        # In the tool frame: refused (no TF here), the controller stays idle.
        op.take_statuses()
        pub.publish(_pose_msg(t[:3, 3], t[:3, :3], "end_effector_link"))
        time.sleep(1.0)
        assert not any(ours(s) for s in op.take_statuses())

        pub.publish(_pose_msg(t[:3, 3], t[:3, :3], "base_link"))
        result = op.follow(expected, ours, timeout=30.0)
    assert result.outcome == "converged", result.summary()
    assert result.initial_error > 0.3                   # max(0.33 m, 0.1 m/rad x 0.71 rad)
    assert result.final_error < 0.005                   # 5 mm and 0.05 rad
    e = task.error(np.asarray(result.final_position), expected)
    assert np.linalg.norm(e[:3]) < 0.005 and np.linalg.norm(e[3:]) < 0.05
