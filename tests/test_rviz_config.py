"""config/uvs.rviz shows the arm: fixed frame base_link, a RobotModel fed by
robot_state_publisher, TF, and displays whose topics the servo graph really publishes.

robot_state_publisher is a C++ node of a ROS 2 distribution (not on PyPI), so its two
topics (/robot_description, /tf) are checked against its documented interface and the
URDF it is given; every other display topic is checked live on the graph that
`uvs servo` and servo.launch.py start.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from uvs_bringup.graph import GraphOptions
from uvs_bringup.runner import ServoGraph
from uvs_core.paths import installed_dir
from uvs_core.robot import load_robot
from uvs_core.urdf import robot_urdf

DEADLINE = 30.0  # s; generous: the machine is shared with other test runs
RVIZ_FILE = installed_dir("config") / "uvs.rviz"
# Display class -> message type its topic must carry.
MESSAGE_TYPES = {
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
}
# Published by robot_state_publisher (its documented interface), not by a uvs node.
ROBOT_STATE_PUBLISHER_TOPICS = {"/robot_description"}


@pytest.fixture(scope="module")
def rviz() -> dict:
    return yaml.safe_load(RVIZ_FILE.read_text())


def _displays(rviz: dict) -> dict[str, dict]:
    return {d["Class"]: d for d in rviz["Visualization Manager"]["Displays"]}


def _topic(display: dict) -> str | None:
    for key in ("Topic", "Description Topic"):
        if key in display:
            return display[key]["Value"]
    return None


def test_fixed_frame_is_the_urdf_root(rviz):
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"
    root = ET.fromstring(robot_urdf(load_robot("gen3")))
    children = {j.find("child").get("link") for j in root.iter("joint")}
    roots = {link.get("name") for link in root.iter("link")} - children
    assert roots == {"base_link"}


def test_robot_model_reads_robot_state_publishers_latched_description(rviz):
    model = _displays(rviz)["rviz_default_plugins/RobotModel"]
    assert model["Enabled"] is True and model["Visual Enabled"] is True
    assert model["Description Source"] == "Topic"
    topic = model["Description Topic"]
    assert topic["Value"] == "/robot_description"
    # robot_state_publisher publishes the description once, transient local: a volatile
    # subscriber started after it would never receive it.
    assert topic["Durability Policy"] == "Transient Local"
    assert topic["Reliability Policy"] == "Reliable"
    assert model["TF Prefix"] == ""


def test_tf_display_and_the_existing_displays_are_kept(rviz):
    displays = _displays(rviz)
    assert displays["rviz_default_plugins/TF"]["Enabled"] is True
    names = [d["Name"] for d in rviz["Visualization Manager"]["Displays"]]
    for kept in ("Grid", "Base frame", "Servo markers", "Camera", "Tracker debug"):
        assert kept in names
    topics = {_topic(d) for d in rviz["Visualization Manager"]["Displays"]} - {None}
    assert topics == {"/robot_description", "/controller/markers", "/image_raw",
                      "/hue_tracker/debug_image"}


def test_display_topics_are_published_by_the_servo_graph(rviz):
    """visual_servo (sim camera, tracker) is the graph with every display's publisher."""
    wanted = {}
    for display in rviz["Visualization Manager"]["Displays"]:
        topic = _topic(display)
        if topic is not None and topic not in ROBOT_STATE_PUBLISHER_TOPICS:
            wanted[topic] = MESSAGE_TYPES[display["Class"]]
    urdf = ET.fromstring(robot_urdf(load_robot("gen3")))   # the driver's robot (driver.yaml)
    moving = [j.get("name") for j in urdf.iter("joint") if j.get("type") != "fixed"]
    with ServoGraph(GraphOptions(task="visual_servo", estimator="tj")) as graph:
        deadline = time.monotonic() + DEADLINE
        published = {}
        while time.monotonic() < deadline:
            published = {name: types for name, types in
                         graph.operator.get_topic_names_and_types()}
            if all(wanted[t] in published.get(t, ()) for t in wanted):
                break
            time.sleep(0.1)
        for topic, message_type in wanted.items():
            assert message_type in published.get(topic, ()), (topic, published.get(topic))

        # robot_state_publisher's input: /joint_states must name the URDF's moving joints.
        node = rclpy.create_node("rviz_config_check", context=graph.context)
        executor = SingleThreadedExecutor(context=graph.context)
        executor.add_node(node)
        received: list[JointState] = []
        node.create_subscription(JointState, "/joint_states", received.append,
                                 QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                            reliability=ReliabilityPolicy.BEST_EFFORT))
        try:
            deadline = time.monotonic() + DEADLINE
            while not received and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
        finally:
            executor.shutdown()
            node.destroy_node()
    assert received, "no /joint_states within the deadline"
    assert list(received[-1].name) == moving
