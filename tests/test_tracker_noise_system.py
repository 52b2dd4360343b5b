"""The sim camera's noisy tracker, read by the real hue tracker over topics.

sim_camera (tracker_noise_px, drop_probability, wrong_blob_probability) -> image_raw ->
hue_tracker -> task_state: at a fixed joint state, the tracked pixel scatters by the
pixel noise set, the wrong blob is what the tracker reports in the fraction of frames
set, and the fraction of frames set never reaches the tracker.
"""


import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_interfaces.msg import TaskState
from uvs_vision.hue_tracker_node import HueTrackerNode
from uvs_vision.sim_camera_node import SimCameraNode

DEADLINE = 60.0  # s; the machine is shared
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500,
                      reliability=ReliabilityPolicy.RELIABLE)
PIXEL_STD, DROP, WRONG = 2.0, 0.2, 0.15
FRAMES = 240        # camera ticks measured


def test_noisy_tracker_effects_reach_the_tracker_at_the_rates_set(ros_graph):
    executor, make = ros_graph
    task = make_task("visual_servo", load_robot("gen3"))
    qa = np.array([0.3, 1.2])
    truth = task.x(qa)
    camera = make(SimCameraNode, parameter_overrides=[
        Parameter("rate", value=40.0), Parameter("seed", value=7),
        Parameter("tracker_noise_px", value=PIXEL_STD),
        Parameter("drop_probability", value=DROP),
        Parameter("wrong_blob_probability", value=WRONG)])
    tracker = make(HueTrackerNode)
    probe = make(rclpy.create_node, "noise_probe")
    for node in (camera, tracker, probe):
        executor.add_node(node)
    joint_pub = probe.create_publisher(JointState, "joint_states", 10)
    states: list[TaskState] = []
    probe.create_subscription(TaskState, "task_state", states.append, RELIABLE)
    joints = JointState(name=list(task.robot.joint_names), position=task.expand(qa).tolist())
    joints.header.stamp = Time(sec=7)

    assert executor.spin_until(lambda: bool(states), DEADLINE,
                              every=lambda: joint_pub.publish(joints))
    # Count from here: ticks of the camera against states out of the tracker.
    ticks0 = camera.frames_published + camera.frames_dropped
    got0 = len(states)
    assert executor.spin_until(
        lambda: camera.frames_published + camera.frames_dropped - ticks0 >= FRAMES, DEADLINE)
    # The frames in flight arrive within a few ticks.
    sent = camera.frames_published
    executor.spin_until(lambda: False, timeout=0.3)
    ticks = camera.frames_published + camera.frames_dropped - ticks0
    seen = states[got0:]
    assert sent > 0 and ticks >= FRAMES

    # 1. dropped frames: missing from the tracker's output (binomial 3-sigma bounds).
    sigma = np.sqrt(DROP * (1 - DROP) / ticks)
    assert 1.0 - len(seen) / ticks == pytest.approx(DROP, abs=3 * sigma + 0.02), \
        (len(seen), ticks)

    # 2. wrong blobs: the tracker reports a pixel far from the marker.
    assert all(s.valid and len(s.position) == 2 for s in seen)
    pos = np.array([s.position for s in seen])
    err = np.linalg.norm(pos - truth, axis=1)
    wrong = err > 30.0
    sigma = np.sqrt(WRONG * (1 - WRONG) / len(seen))
    assert wrong.mean() == pytest.approx(WRONG, abs=3 * sigma), wrong.mean()
    assert np.all(err[wrong] >= 40.0)           # never a blob merged with the marker

    # 3. pixel noise: the tracked marker scatters by the std set, around the truth.
    inliers = pos[~wrong]
    std = np.std(inliers - truth, axis=0)
    assert std == pytest.approx([PIXEL_STD, PIXEL_STD], rel=0.3), std
    np.testing.assert_allclose(np.mean(inliers, axis=0), truth, atol=0.6)
    assert camera.wrong_blobs > 0 and camera.frames_dropped > 0


def test_noise_parameters_are_validated_and_off_by_default(ros_graph):
    executor, make = ros_graph
    camera = make(SimCameraNode)
    for name in ("tracker_noise_px", "drop_probability", "wrong_blob_probability"):
        assert camera.get_parameter(name).value == 0.0
    assert not camera._noise.active
    result = camera.set_parameters([Parameter("drop_probability", value=1.5)])[0]
    assert not result.successful
    result = camera.set_parameters([Parameter("tracker_noise_px", value=1.5)])[0]
    assert result.successful and camera._noise.pixel_std == 1.5
