"""Bring up the uvs servo graph: driver bridge, Jacobian estimator, controller, and for
visual servoing the camera (sim) and hue tracker; robot_state_publisher where it is
installed; optionally RViz and a rosbag2 recording.

    ros2 launch uvs_bringup servo.launch.py
    ros2 launch uvs_bringup servo.launch.py robot:=ur5e estimator:=tj
    ros2 launch uvs_bringup servo.launch.py backend:=gen3 robot_ip:=192.168.1.10 estimator:=nk_tanh
    ros2 launch uvs_bringup servo.launch.py task:=visual_servo camera:=webcam video_device:=0
    ros2 launch uvs_bringup servo.launch.py task:=visual_servo target_source:=marker
    ros2 launch uvs_bringup servo.launch.py robot:=/abs/path/my_arm.urdf estimator:=tj
    ros2 launch uvs_bringup servo.launch.py robot:=robot_description base_link:=base tip_link:=tool0

`backend` is what runs the arm (sim: the kinematic simulation; gen3: the real Kinova Gen3
through the Kortex API); `robot` is the kinematic model every node loads (a name under
config/robots such as gen3 or ur5e, a robot YAML or URDF path, or robot_description: the
URDF that a robot driver's robot_state_publisher publishes on /robot_description, read by
each node at start; uvs then starts no robot_state_publisher of its own, the driver's
publishes the description and TF). Before issue 14 `robot` chose
the backend: robot:=sim still means backend:=sim, and robot:=gen3 without backend:= still
means the real arm, each with a deprecation warning saying what to write instead.

The node list comes from uvs_bringup.graph.servo_graph, the same definition `uvs servo`
runs in one process where ros2 launch is not installed. Every argument is checked
before any node starts (rviz:=true without rviz2 is an error; record:=true without
`ros2 bag` records with uvs's own MCAP recorder), and any node that exits stops the
whole launch with the reason and a non-zero exit code.
"""

from pathlib import Path

from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription
from uvs_bringup.graph import (
    BACKENDS,
    CAMERAS,
    ROBOT_DESCRIPTION,
    TARGET_SOURCES,
    TASKS,
    GraphOptions,
    config_robot,
    estimator_choices,
    recorded_topics,
    recorder_spec,
    resolve_backend,
    servo_graph,
)
from uvs_bringup.launch_support import (
    LaunchArgumentError,
    node_action,
    package_available,
    ros2_bag_available,
    stop_launch_on_exit,
)
from uvs_core.paths import installed_dir

ARGUMENTS = [
    ("backend", "sim", "what runs the arm: sim, the kinematic simulation of the robot model; "
     "gen3, the real Kinova Gen3 via Kortex", BACKENDS),
    ("robot", "", "robot model every node loads (empty: the parameter files', gen3): a "
     "name under config/robots (gen3, gen3_6dof, ur5e), a robot YAML or URDF path, or "
     "robot_description (the URDF a robot driver publishes on that topic; uvs then starts "
     "no robot_state_publisher) (robot:=sim|gen3 alone: deprecated spelling of backend:=)",
     None),
    ("base_link", "", "URDF robots: the chain's base link (empty: the URDF's root)", None),
    ("tip_link", "", "URDF robots: the chain's tip link (empty: the URDF's one leaf)", None),
    ("robot_ip", "192.168.1.10", "IP address of the Gen3 (backend:=gen3)", None),
    ("task", "single_point", "servo task", TASKS),
    ("estimator", "nk_tanh", "Jacobian estimator (the names of the estimator registry)",
     estimator_choices()),
    ("camera", "sim", "visual_servo image source: sim render, a webcam, or an image topic",
     CAMERAS),
    ("video_device", "0", "webcam device index (camera:=webcam)", None),
    ("target_source", "service", "visual_servo target: service (controller/set_target or "
     "the target topic) or marker (a second, green marker tracked in the image by "
     "target_tracker; the sim camera draws it at its target_point topic)", TARGET_SOURCES),
    ("rviz", "false", "start RViz with config/uvs.rviz (needs rviz2)", ("true", "false")),
    ("record", "false", "record the servo topics: ros2 bag record (MCAP), or uvs's own "
     "MCAP recorder where ros2 bag is not installed", ("true", "false")),
    ("bag", "uvs_servo_bag", "bag path for record:=true (must not exist)", None),
    ("params_dir", str(installed_dir("config")), "folder of the nodes' parameter YAML files", None),
]


def _options(arg, given) -> GraphOptions:
    try:
        device = int(arg("video_device"))
    except ValueError:
        raise LaunchArgumentError(
            f"video_device must be an integer (/dev/videoN); got {arg('video_device')!r}"
        ) from None
    try:
        backend, robot, deprecated = resolve_backend(arg("backend"), arg("robot"),
                                                     "backend" in given, "robot" in given)
        if deprecated:
            get_logger("servo.launch.py").warning(deprecated)
        return GraphOptions(backend=backend, robot=robot, base_link=arg("base_link"),
                            tip_link=arg("tip_link"), robot_ip=arg("robot_ip"),
                            task=arg("task"), estimator=arg("estimator"),
                            camera=arg("camera"), video_device=device,
                            target_source=arg("target_source"))
    except ValueError as exc:
        raise LaunchArgumentError(str(exc)) from None


def _note_given(context, given: set) -> None:
    """Record which of backend and robot the user set: run before their declarations,
    which fill in the defaults (an argument given on the command line or by an including
    launch file is already a launch configuration then)."""
    given.update(name for name in ("backend", "robot")
                 if name in context.launch_configurations)


def _actions(context, given=frozenset()):
    """Check every argument, then build the actions; raises before anything starts."""
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    options = _options(arg, given)
    params_dir = Path(arg("params_dir")).expanduser()
    specs = servo_graph(options)
    missing = [s.params_file for s in specs if not (params_dir / s.params_file).is_file()]
    if missing:
        raise LaunchArgumentError(f"params_dir {params_dir} lacks {', '.join(missing)}")
    rviz = arg("rviz") == "true"
    if rviz and not package_available("rviz2"):
        raise LaunchArgumentError(
            "rviz:=true, but rviz2 is not installed (no package 'rviz2' on "
            "AMENT_PREFIX_PATH): install ros-$ROS_DISTRO-rviz2, or launch with rviz:=false "
            "and run RViz on another machine of the same ROS_DOMAIN_ID")
    record = arg("record") == "true"
    bag = str(Path(arg("bag")).expanduser())
    if record and Path(bag).exists():
        raise LaunchArgumentError(f"bag {bag} exists; choose a new path with bag:=...")

    actions = [node_action(spec, params_dir) for spec in specs]
    if options.robot == ROBOT_DESCRIPTION:
        # The user's robot driver publishes robot_description (what the nodes read) and TF;
        # a second robot_state_publisher would publish another description over it.
        actions.append(LogInfo(msg="robot:=robot_description: the nodes read the URDF from "
                                   "/robot_description; no uvs robot_state_publisher (the "
                                   "robot driver's publishes it and /tf)"))
    elif package_available("robot_state_publisher"):
        from uvs_core.robot import load_robot
        from uvs_core.urdf import robot_urdf

        # value_type=str: a URDF is text, never to be read as YAML (ros2_kortex does the same)
        # The model every uvs node loads (the spec's `robot`), so TF and RViz agree with them.
        robot = options.robot or config_robot(params_dir)
        description = ParameterValue(robot_urdf(load_robot(robot)), value_type=str)
        actions.append(Node(package="robot_state_publisher",
                            executable="robot_state_publisher", name="robot_state_publisher",
                            parameters=[{"robot_description": description}], output="screen",
                            on_exit=stop_launch_on_exit("robot_state_publisher")))
    else:
        actions.append(LogInfo(msg="robot_state_publisher is not installed: no /tf and no "
                                   "robot model in RViz (markers still show the arm)"))
    if rviz:
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                            arguments=["-d", str(params_dir / "uvs.rviz")],
                            on_exit=stop_launch_on_exit("rviz2")))
    if record:
        if ros2_bag_available():
            actions.append(ExecuteProcess(
                cmd=["ros2", "bag", "record", "-s", "mcap", "-o", bag,
                     *recorded_topics(options)],
                name="ros2_bag_record", output="screen",
                on_exit=stop_launch_on_exit("ros2 bag record")))
        else:
            actions.append(LogInfo(msg="`ros2 bag` (rosbag2 with MCAP storage) is not "
                                       f"installed: recording {bag} with uvs's own recorder"))
            actions.append(node_action(recorder_spec(options, bag), params_dir))
    return actions


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description,
                              **({"choices": list(choices)} if choices else {}))
        for name, default, description, choices in ARGUMENTS
    ]
    given: set = set()
    return LaunchDescription([OpaqueFunction(function=_note_given, args=[given]), *declared,
                              OpaqueFunction(function=_actions, args=[given])])
