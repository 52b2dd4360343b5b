"""Bring up the uvs servo graph: driver bridge, Jacobian estimator, controller, and for
visual servoing the camera (sim) and hue tracker; optionally RViz and a rosbag2 recording.

    ros2 launch uvs_bringup servo.launch.py
    ros2 launch uvs_bringup servo.launch.py robot:=gen3 robot_ip:=192.168.1.10 estimator:=nk_tanh
    ros2 launch uvs_bringup servo.launch.py task:=visual_servo camera:=webcam video_device:=0

The node list comes from uvs_bringup.graph.servo_graph, the same definition `uvs servo`
runs in one process where ros2 launch is not installed.
"""

import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from uvs_bringup.graph import CAMERAS, ROBOTS, TASKS, GraphOptions, recorded_topics, servo_graph

SHARE = Path(get_package_share_directory("uvs_bringup"))

ARGUMENTS = [
    ("robot", "sim", "sim: kinematic simulation of the Gen3; gen3: the real arm via Kortex",
     ROBOTS),
    ("robot_ip", "192.168.1.10", "IP address of the Gen3 (robot:=gen3)", None),
    ("task", "single_point", "servo task", TASKS),
    ("estimator", "nk_tanh",
     "Jacobian estimator: tj, broyden, llknn, nj, binj, nk_tanh, nk_relu", None),
    ("camera", "sim", "visual_servo image source: sim render, a webcam, or an image topic",
     CAMERAS),
    ("video_device", "0", "webcam device index (camera:=webcam)", None),
    ("rviz", "false", "start RViz with config/uvs.rviz", ("true", "false")),
    ("record", "false", "record the servo topics with ros2 bag record", ("true", "false")),
    ("bag", "uvs_servo_bag", "bag path for record:=true", None),
    ("params_dir", str(SHARE / "config"), "folder of the nodes' parameter YAML files", None),
]


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    options = GraphOptions(robot=arg("robot"), robot_ip=arg("robot_ip"), task=arg("task"),
                           estimator=arg("estimator"), camera=arg("camera"),
                           video_device=int(arg("video_device")))
    params_dir = Path(arg("params_dir"))
    actions = [
        Node(package=spec.package, executable=spec.executable, name=spec.name,
             parameters=[str(params_dir / spec.params_file), spec.parameters],
             remappings=list(spec.remappings), output="screen")
        for spec in servo_graph(options)
    ]
    if arg("rviz") == "true":
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                            arguments=["-d", str(params_dir / "uvs.rviz")]))
    if arg("record") == "true":
        actions.append(ExecuteProcess(
            cmd=["ros2", "bag", "record", "-s", "mcap", "-o", os.path.expanduser(arg("bag")),
                 *recorded_topics(options)],
            output="screen"))
    return actions


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description,
                              **({"choices": list(choices)} if choices else {}))
        for name, default, description, choices in ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
