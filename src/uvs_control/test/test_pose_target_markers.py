"""PoseStamped targets (uvs_control.pose_target) and the target frame's RViz axes."""

import numpy as np
from geometry_msgs.msg import PoseStamped
from visualization_msgs.msg import Marker

from uvs_control.markers import servo_markers
from uvs_control.pose_target import pose_target
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task, so3_exp

GEN3 = load_robot("gen3")


def _msg(frame_id="base_link", position=(0.4, 0.1, 0.5), quat=(0.0, 0.0, 0.0, 1.0)):
    msg = PoseStamped()
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = position
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = quat
    return msg


def test_pose_target_converts_to_each_tasks_x():
    s = np.sqrt(0.5)
    msg = _msg(quat=(0.0, 0.0, s, s))                    # 90 deg about z
    rot = so3_exp([0.0, 0.0, np.pi / 2])
    pose = make_task("pose", GEN3)
    x, problem = pose_target(pose, msg, "base_link")
    assert problem is None
    np.testing.assert_allclose(x[:3], [0.4, 0.1, 0.5])
    np.testing.assert_allclose(pose.rotation(x), rot, atol=1e-12)
    x, _ = pose_target(make_task("single_point", GEN3), msg, "base_link")
    np.testing.assert_array_equal(x, [0.4, 0.1, 0.5])
    x, _ = pose_target(make_task("multi_point", GEN3), msg, "base_link")
    np.testing.assert_allclose(x.reshape(4, 3)[1:] - x[:3], 0.1 * rot.T, atol=1e-12)


def test_pose_target_refused_with_the_reason():
    pose = make_task("pose", GEN3)
    x, problem = pose_target(pose, _msg(frame_id="world"), "base_link")
    assert x is None and "frame_id 'world' is not the base frame 'base_link'" in problem
    _, problem = pose_target(pose, _msg(quat=(0.0, 0.0, 0.0, 0.0)), "base_link")
    assert "non-zero" in problem
    _, problem = pose_target(make_task("visual_servo", GEN3), _msg(), "base_link")
    assert "cannot be converted" in problem


def test_markers_draw_the_target_frame_axes():
    q = GEN3.home
    rot = so3_exp([0.0, 0.0, np.pi / 2])
    markers = servo_markers(GEN3, q, np.array([0.4, 0.1, 0.5]), "m",
                            target_rotation=rot).markers
    axes = [m for m in markers if m.ns == "target_axes"]
    assert len(axes) == 1 and axes[0].type == Marker.LINE_LIST
    pts = np.array([[p.x, p.y, p.z] for p in axes[0].points])
    assert pts.shape == (12, 3)                          # target's and tool's x, y, z
    np.testing.assert_allclose(pts[1] - pts[0], 0.1 * rot[:, 0], atol=1e-12)  # x axis
    np.testing.assert_allclose(pts[5] - pts[4], 0.1 * rot[:, 2], atol=1e-12)  # z axis
    assert (axes[0].colors[0].r, axes[0].colors[2].g, axes[0].colors[4].b) == (1.0, 1.0, 1.0)
    plain = servo_markers(GEN3, q, np.array([0.4, 0.1, 0.5]), "m").markers
    assert [m.action for m in plain if m.ns == "target_axes"] == [Marker.DELETE]
