"""System tests of uvs_vision: the real sim_camera and hue_tracker nodes over topics.

1. hue_tracker (source=file) on a generated MJPG video of a marker moving along a
   known path: task_state follows the path, valid=False where the marker is absent.
2. sim_camera -> image_raw -> hue_tracker: the tracked (u, v) of a published joint
   state is the visual_servo task's x(q).
3. Runtime parameter changes are validated, and rejected with a reason.
4. A missing video file or webcam is reported as valid=False, not a crash.
"""

import math
import time

import cv2
import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState

from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_interfaces.msg import TaskState
from uvs_ros.qos import SENSOR_QOS
from uvs_vision.hue_tracker_node import HueTrackerNode
from uvs_vision.image_conv import array_to_image_fields
from uvs_vision.render import draw_disc, make_background
from uvs_vision.sim_camera_node import SimCameraNode

DEADLINE = 30.0  # s; generous: the machine is shared with other test runs
RELIABLE_100 = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                          reliability=ReliabilityPolicy.RELIABLE)


def _wait_for_subscriber(publisher, count=1, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while publisher.get_subscription_count() < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _overrides(**params):
    return [Parameter(name, value=value) for name, value in params.items()]


# ------------------------------------------------------------------ 1. video file

FRAMES = 30
ABSENT = {9, 10, 11, 24}
SIZE = (320, 240)  # width, height


def _path(i: int) -> tuple[float, float]:
    """Known marker path, px: a left-to-right sweep with a vertical wave."""
    return 40.0 + 8.3 * i, 120.0 + 60.0 * math.sin(i / 4.0)


@pytest.fixture
def marker_video(tmp_path):
    path = tmp_path / "marker.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SIZE)
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    background = make_background(SIZE[0], SIZE[1], "textured", (120, 115, 110))
    for i in range(FRAMES):
        frame = background.copy()
        if i not in ABSENT:
            draw_disc(frame, _path(i), 9.0, (40, 40, 220))
        writer.write(frame)
    writer.release()
    return path


def test_tracker_follows_a_marker_in_a_video_file(ros_graph, marker_video):
    executor, make = ros_graph
    listener = make(rclpy.create_node, "vision_test_listener")
    states: list[TaskState] = []
    listener.create_subscription(TaskState, "task_state", states.append, RELIABLE_100)
    tracker = make(HueTrackerNode, parameter_overrides=_overrides(
        source="file", video_file=str(marker_video), rate=60.0))
    # Grab no frame before the listener is matched: task_state is volatile.
    assert _wait_for_subscriber(tracker._state_pub), "listener never matched task_state"
    executor.add_node(listener)
    executor.add_node(tracker)

    assert executor.spin_until(lambda: len(states) >= FRAMES + 1), \
        f"only {len(states)} task states of {FRAMES + 1} within {DEADLINE} s"
    for i, state in enumerate(states[:FRAMES]):
        assert state.task == "visual_servo"
        assert state.header.frame_id == "camera_optical_frame"
        if i in ABSENT:
            assert not state.valid and len(state.position) == 0, f"frame {i}: {state}"
        else:
            assert state.valid, f"frame {i}: marker not found"
            assert list(state.labels) == ["u", "v"]
            np.testing.assert_allclose(state.position, _path(i), atol=2.0,
                                       err_msg=f"frame {i}")
    # End of the file (loop false): one last valid=False, then nothing more.
    assert not states[FRAMES].valid and len(states[FRAMES].position) == 0
    assert tracker.frames == FRAMES


# ------------------------------------------------------------------ 2. sim camera -> tracker

def test_sim_camera_to_tracker_reads_back_the_task_state(ros_graph):
    executor, make = ros_graph
    task = make_task("visual_servo", load_robot("gen3"))
    camera = make(SimCameraNode, parameter_overrides=_overrides(rate=30.0, noise_std=3.0))
    # as servo.launch.py starts it beside the sim camera
    tracker = make(HueTrackerNode, parameter_overrides=_overrides(image_reliability="reliable"))
    probe = make(rclpy.create_node, "vision_test_probe")
    joint_pub = probe.create_publisher(JointState, "joint_states", 10)
    states: list[TaskState] = []
    infos: list[CameraInfo] = []
    probe.create_subscription(TaskState, "task_state", states.append, RELIABLE_100)
    probe.create_subscription(CameraInfo, "camera_info", infos.append, SENSOR_QOS)
    for node in (camera, tracker, probe):
        executor.add_node(node)

    for k, qa in enumerate(([0.3, 1.2], [-0.5, 2.1])):
        qa = np.array(qa)
        q = task.expand(qa)
        stamp = Time(sec=1000 + k, nanosec=250_000_000)
        msg = JointState(name=list(task.robot.joint_names), position=q.tolist())
        msg.header.stamp = stamp

        def mine(stamp=stamp):
            return [s for s in states if s.header.stamp == stamp and s.valid]

        assert executor.spin_until(lambda: bool(mine()),
                                   every=lambda m=msg: joint_pub.publish(m)), \
            f"no valid task_state for the joint state stamped {stamp.sec} s"
        state = mine()[0]
        assert state.task == "visual_servo" and list(state.labels) == ["u", "v"]
        assert state.header.frame_id == "camera_optical_frame"
        np.testing.assert_allclose(state.position, task.x(qa), atol=1.0)
        assert np.linalg.norm(task.x(qa) - task.x(task.home_active)) > 20.0  # it moved

    assert executor.spin_until(lambda: bool(infos))
    info = infos[-1]
    cam = task.camera
    assert (info.width, info.height) == (cam.width, cam.height)
    np.testing.assert_allclose(info.k, [cam.fx, 0, cam.cx, 0, cam.fy, cam.cy, 0, 0, 1])
    assert info.header.frame_id == "camera_optical_frame"


def test_image_stream_is_reliable_from_the_sim_camera_and_a_best_effort_camera_feeds_too(
        ros_graph):
    """The sim camera's 0.9 MB frames go reliable (best effort lost 70 % of them, and the
    tracker up to 1.4 s of them, beside two CPU hogs); a tracker with the default
    image_reliability (best_effort) still reads a camera driver's sensor-data stream."""
    executor, make = ros_graph
    camera = make(SimCameraNode, parameter_overrides=_overrides(rate=30.0))
    tracker = make(HueTrackerNode)
    probe = make(rclpy.create_node, "vision_qos_probe")
    for node in (camera, tracker, probe):
        executor.add_node(node)
    assert executor.spin_until(lambda: len(probe.get_publishers_info_by_topic(
        "/image_raw")) == 1 and len(probe.get_subscriptions_info_by_topic("/image_raw")) == 1)
    (published,) = probe.get_publishers_info_by_topic("/image_raw")
    assert published.node_name == "sim_camera"
    # (discovery carries reliability, not history or depth)
    assert published.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    camera.destroy_node()
    executor.remove_node(camera)

    states: list[TaskState] = []
    probe.create_subscription(TaskState, "task_state", states.append, RELIABLE_100)
    best_effort = probe.create_publisher(Image, "image_raw", SENSOR_QOS)
    assert _wait_for_subscriber(best_effort), "the tracker never matched a best-effort camera"
    width, height, uv = 320, 240, (200.0, 90.0)
    image = make_background(width, height, "solid", (120, 115, 110))
    draw_disc(image, uv, 9.0, (40, 40, 220))
    frame = Image(**array_to_image_fields(image, "bgr8"))
    assert executor.spin_until(lambda: any(s.valid for s in states),
                       every=lambda: best_effort.publish(frame)), \
        "no task_state from a best-effort image stream"
    state = next(s for s in states if s.valid)
    np.testing.assert_allclose(state.position, uv, atol=1.0)

    # A reliable tracker cannot read that stream, and says so.
    strict = make(HueTrackerNode, "strict_tracker",
                  parameter_overrides=_overrides(image_reliability="reliable"))
    executor.add_node(strict)
    assert executor.spin_until(lambda: strict.incompatible_publishers == 1)


def test_sim_camera_renders_a_target_marker_a_second_tracker_reads_as_target(ros_graph):
    """Two trackers on the sim camera's images, over DDS: the red one reads the tool
    marker (task_state), the green one, its task_state remapped to `target`, the target
    marker moved by target_point; a NaN point hides it and its tracker says invalid."""
    executor, make = ros_graph
    task = make_task("visual_servo", load_robot("gen3"))
    camera = make(SimCameraNode, parameter_overrides=_overrides(rate=30.0,
                                                                target_marker=True))
    tool_tracker = make(HueTrackerNode)
    target_tracker = make(HueTrackerNode, "target_tracker",
                          parameter_overrides=_overrides(hue_low=45, hue_high=75),
                          cli_args=["--ros-args", "-r", "task_state:=target"])
    probe = make(rclpy.create_node, "vision_target_probe")
    joint_pub = probe.create_publisher(JointState, "joint_states", 10)
    point_pub = probe.create_publisher(PointStamped, "target_point", 10)
    tools: list[TaskState] = []
    targets: list[TaskState] = []
    probe.create_subscription(TaskState, "task_state", tools.append, RELIABLE_100)
    probe.create_subscription(TaskState, "target", targets.append, RELIABLE_100)
    for node in (camera, tool_tracker, target_tracker, probe):
        executor.add_node(node)
    assert _wait_for_subscriber(point_pub)

    qa = np.array([0.3, 1.2])
    joints = JointState(name=list(task.robot.joint_names), position=task.expand(qa).tolist())
    point = task.robot.position(task.expand(np.array([-0.4, 1.6])))   # (3,) m, base frame
    expected_target = task.camera.project(point)
    msg = PointStamped()
    msg.header.frame_id = "base_link"
    msg.point.x, msg.point.y, msg.point.z = point.tolist()

    def newest_target_at(uv):
        return bool(targets) and targets[-1].valid and np.linalg.norm(
            np.asarray(targets[-1].position) - uv) < 1.0

    def publish():
        joint_pub.publish(joints)
        point_pub.publish(msg)

    assert executor.spin_until(lambda: newest_target_at(expected_target), every=publish), \
        f"target tracker never read {expected_target}; last {targets[-1:]}"
    assert executor.spin_until(lambda: bool(tools) and tools[-1].valid)
    np.testing.assert_allclose(tools[-1].position, task.x(qa), atol=1.0)
    np.testing.assert_allclose(targets[-1].position, expected_target, atol=1.0)
    assert list(camera.get_parameter("target_position").value) == pytest.approx(point)
    assert np.linalg.norm(expected_target - task.x(qa)) > 50.0      # two distinct markers
    # Only the tool marker on task_state, only the target on target.
    assert all(len(s.position) == 2 for s in tools + targets if s.valid)

    msg.point.x = msg.point.y = msg.point.z = math.nan
    assert executor.spin_until(lambda: bool(targets) and not targets[-1].valid,
                               every=publish), "hiding the target marker did not make it invalid"
    assert executor.spin_until(lambda: tools[-1].valid)      # the tool marker stays


# ------------------------------------------------------------------ 3. parameters

def test_runtime_parameter_changes_are_validated(ros_graph):
    executor, make = ros_graph
    tracker = make(HueTrackerNode)
    camera = make(SimCameraNode)

    def reason(node, **params):
        result = node.set_parameters_atomically(_overrides(**params))
        return None if result.successful else result.reason

    assert "min_area" in reason(tracker, min_area=0.0)
    assert "min_area" in reason(tracker, min_area=-3.0)
    assert reason(tracker, hue_low=200) is not None          # outside the declared range
    assert "read-only" in reason(tracker, source="webcam")
    assert reason(tracker, rate=0.0) is not None
    assert tracker.tracker.config.min_area == 20.0           # nothing applied
    assert reason(tracker, hue_low=100, hue_high=130, min_area=50.0) is None
    config = tracker.tracker.config
    assert (config.hue_low, config.hue_high, config.min_area) == (100, 130, 50.0)

    assert "marker_color" in reason(camera, marker_color=[0, 0, 300])
    assert "background" in reason(camera, background="stars")
    assert reason(camera, noise_std=0.0, marker_color=[200, 40, 40]) is None
    assert camera.renderer.config.marker_color == (200, 40, 40)
    assert camera.renderer.config.noise_std == 0.0

    # The same check through the parameter service, as `ros2 param set` uses it.
    client_node = make(rclpy.create_node, "vision_test_param_client")
    client = client_node.create_client(SetParameters, "/hue_tracker/set_parameters")
    executor.add_node(tracker)
    executor.add_node(client_node)
    assert client.wait_for_service(timeout_sec=DEADLINE)
    bad = Parameter("max_markers", value=0).to_parameter_msg()
    request = SetParameters.Request(parameters=[bad])
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=DEADLINE)
    assert future.done()
    (result,) = future.result().results
    assert not result.successful and result.reason


def test_invalid_start_parameters_raise(ros_context):
    with pytest.raises(ValueError, match="video_file"):
        HueTrackerNode(context=ros_context, parameter_overrides=_overrides(source="file"))
    with pytest.raises(ValueError, match="min_area"):
        HueTrackerNode(context=ros_context, parameter_overrides=_overrides(min_area=0.0))


# ------------------------------------------------------------------ 4. missing sources

@pytest.mark.parametrize("params", [
    dict(source="file", video_file="/nonexistent/marker.avi"),
    dict(source="file", video_file=__file__),      # a file, but not a video
    dict(source="webcam", video_device=250),
])
def test_missing_source_reports_invalid_without_crashing(ros_graph, params):
    executor, make = ros_graph
    listener = make(rclpy.create_node, "vision_test_listener")
    states: list[TaskState] = []
    listener.create_subscription(TaskState, "task_state", states.append, RELIABLE_100)
    tracker = make(HueTrackerNode, parameter_overrides=_overrides(rate=50.0, **params))
    executor.add_node(listener)
    executor.add_node(tracker)
    assert executor.spin_until(lambda: len(states) >= 3)
    assert all(not s.valid and len(s.position) == 0 for s in states)
    assert tracker.frames == 0
