"""One node-graph definition: servo.launch.py and `uvs servo` start the same nodes."""

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from uvs_bringup.graph import (
    BabbleOptions,
    GraphOptions,
    babble_graph,
    recorded_topics,
    resolve_backend,
    servo_graph,
)
from uvs_core.paths import installed_dir

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "servo.launch.py"
OPTION_SETS = [
    GraphOptions(),
    GraphOptions(task="multi_point", estimator="tj"),
    GraphOptions(task="visual_servo", camera="sim"),
    GraphOptions(backend="gen3", task="visual_servo", camera="webcam", video_device=2),
    GraphOptions(backend="gen3", robot_ip="10.0.0.5", task="single_point"),
    GraphOptions(task="visual_servo", camera="sim", target_source="marker"),
    GraphOptions(robot="ur5e", estimator="tj"),
    GraphOptions(robot="ur5e", task="visual_servo", estimator="tj"),
]
# Nodes that load a kinematic model (uvs_core.robot.load_robot) from their `robot`.
MODEL_NODES = {"driver", "jacobian_estimator", "controller", "sim_camera", "babbler"}


def _ids(o: GraphOptions) -> str:
    return f"{o.backend}-{Path(o.robot or 'default').stem}-{o.task}-{o.camera}-{o.target_source}"


def test_point_tasks_start_driver_estimator_controller():
    names = [spec.name for spec in servo_graph(GraphOptions(task="single_point"))]
    assert names == ["driver", "jacobian_estimator", "controller"]


def test_visual_servo_adds_camera_and_tracker_and_keeps_model_x_as_ground_truth():
    specs = {s.name: s for s in servo_graph(GraphOptions(task="visual_servo"))}
    assert list(specs) == ["driver", "jacobian_estimator", "controller", "sim_camera",
                           "hue_tracker"]
    assert specs["driver"].remappings == (("task_state", "ground_truth/task_state"),)
    assert specs["hue_tracker"].parameters["source"] == "topic"
    # the sim camera's frames are read reliably, another camera's stream best effort
    assert specs["hue_tracker"].parameters["image_reliability"] == "reliable"
    topic = {s.name: s for s in servo_graph(GraphOptions(backend="gen3", task="visual_servo",
                                                         camera="topic"))}
    assert topic["hue_tracker"].parameters == {"source": "topic",
                                               "image_reliability": "best_effort"}
    webcam = {s.name: s for s in servo_graph(GraphOptions(backend="gen3", task="visual_servo",
                                                          camera="webcam", video_device=2))}
    assert "sim_camera" not in webcam
    assert webcam["hue_tracker"].parameters == {"source": "webcam", "video_device": 2}
    assert "/ground_truth/task_state" in recorded_topics(GraphOptions(task="visual_servo"))


def test_marker_target_adds_a_second_tracker_feeding_the_controller_target():
    specs = {s.name: s for s in servo_graph(GraphOptions(task="visual_servo",
                                                         target_source="marker"))}
    assert list(specs) == ["driver", "jacobian_estimator", "controller", "sim_camera",
                           "hue_tracker", "target_tracker"]
    target = specs["target_tracker"]
    assert (target.executable, target.params_file) == ("hue_tracker", "hue_tracker.yaml")
    assert target.remappings == (("task_state", "target"),)
    assert specs["hue_tracker"].remappings == ()
    assert specs["sim_camera"].parameters["target_marker"] is True
    assert specs["controller"].parameters["target_timeout"] == 0.5
    # Its own colour: the sim camera's green target ring, not the red tool marker.
    params = yaml.safe_load((installed_dir("config") / "hue_tracker.yaml").read_text())
    green = params["target_tracker"]["ros__parameters"]
    red = params["hue_tracker"]["ros__parameters"]
    assert (green["hue_low"], green["hue_high"]) == (45, 75)
    assert (red["hue_low"], red["hue_high"]) == (170, 10)
    assert "sim_camera" not in servo_graph(GraphOptions(task="visual_servo", camera="topic",
                                                        target_source="marker"))
    plain = {s.name: s for s in servo_graph(GraphOptions(task="visual_servo"))}
    assert "target_timeout" not in plain["controller"].parameters
    assert "target_marker" not in plain["sim_camera"].parameters


@pytest.mark.parametrize(("options", "match"), [
    ({"task": "single_point", "target_source": "marker"}, "needs task 'visual_servo'"),
    ({"backend": "gen3", "task": "visual_servo", "camera": "webcam",
      "target_source": "marker"}, "camera:=topic"),
])
def test_marker_target_needs_a_camera_both_trackers_can_share(options, match):
    with pytest.raises(ValueError, match=match):
        GraphOptions(**options)


@pytest.mark.parametrize(("field", "value"), [("backend", "ur5e"), ("task", "reach_far"),
                                              ("camera", "kinect"),
                                              ("target_source", "laser")])
def test_bad_options_are_rejected_with_the_allowed_values(field, value):
    with pytest.raises(ValueError, match=f"{field} must be one of"):
        GraphOptions(**{field: value})


def test_a_robot_model_that_does_not_load_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match=r"robot 'bogus': no file bogus\.yaml"):
        GraphOptions(robot="bogus")
    with pytest.raises(ValueError, match=r"no file bogus\.yaml"):
        BabbleOptions(robot="bogus")
    # The real arm's backend drives a Gen3 only.
    with pytest.raises(ValueError, match=r"backend 'gen3' drives a Kinova Gen3 .*not robot "
                                         r"'ur5e': use backend sim"):
        GraphOptions(backend="gen3", robot="ur5e")
    assert GraphOptions(backend="gen3", robot="gen3_6dof").robot == "gen3_6dof"


@pytest.mark.parametrize("options", OPTION_SETS, ids=_ids)
def test_every_node_that_loads_a_model_gets_the_same_robot(options):
    specs = servo_graph(options)
    if options.robot is None:
        # None: no override, each node's parameter file says, and they all say gen3
        assert all("robot" not in s.parameters for s in specs)
        files = {yaml.safe_load((installed_dir("config") / s.params_file).read_text())[s.name]
                 ["ros__parameters"]["robot"] for s in specs if s.name in MODEL_NODES}
        assert files == {"gen3"}
        return
    loaders = {s.name: s.parameters.get("robot") for s in specs if s.name in MODEL_NODES}
    assert set(loaders) == {s.name for s in specs} & MODEL_NODES
    assert set(loaders.values()) == {options.robot}, loaders
    babble = babble_graph(BabbleOptions(robot=options.robot))
    assert {s.parameters["robot"] for s in babble} == {options.robot}


def test_a_robot_yaml_path_is_passed_absolute(tmp_path, monkeypatch):
    """Nodes may run in another working directory (ros2 launch): a relative path is
    resolved where the user gave it."""
    (tmp_path / "arm.yaml").write_text((installed_dir("robots") / "ur5e.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    options = GraphOptions(robot="arm.yaml")
    assert options.robot == str(tmp_path / "arm.yaml")
    assert servo_graph(options)[0].parameters["robot"] == str(tmp_path / "arm.yaml")


@pytest.mark.parametrize(("backend", "robot", "given", "expected", "deprecated"), [
    ("sim", "", (), ("sim", None), None),                          # the defaults
    ("sim", "ur5e", ("robot",), ("sim", "ur5e"), None),
    ("gen3", "gen3", ("backend",), ("gen3", "gen3"), None),
    ("sim", "gen3", ("backend", "robot"), ("sim", "gen3"), None),  # the sim Gen3, explicitly
    ("sim", "sim", ("robot",), ("sim", None), "write backend:=sim"),
    ("sim", "gen3", ("robot",), ("gen3", "gen3"), "write backend:=gen3 for the real Gen3"),
])
def test_old_robot_values_select_the_backend_with_a_deprecation(backend, robot, given,
                                                                  expected, deprecated):
    *resolved, message = resolve_backend(backend, robot, "backend" in given, "robot" in given)
    assert tuple(resolved) == expected
    if deprecated is None:
        assert message is None
    else:
        assert "deprecated" in message and deprecated in message, message


def test_old_robot_sim_contradicting_a_backend_is_an_error():
    with pytest.raises(ValueError, match="contradicts backend:=gen3"):
        resolve_backend("gen3", "sim", True, True)


def test_gen3_options_reach_the_driver():
    spec = servo_graph(GraphOptions(backend="gen3", robot_ip="10.0.0.5"))[0]
    assert spec.parameters == {"backend": "gen3", "task": "single_point",
                               "robot_ip": "10.0.0.5"}
    args = spec.ros_args(Path("/cfg"))
    assert args[:3] == ["--ros-args", "-r", "__node:=driver"]
    assert ["--params-file", "/cfg/driver.yaml"] == args[3:5]
    assert "backend:=gen3" in args and "robot_ip:=10.0.0.5" in args


@pytest.mark.parametrize("options", OPTION_SETS, ids=_ids)
def test_every_node_class_params_file_and_executable_exists(options):
    from rclpy.node import Node

    for spec in servo_graph(options):
        module, _, name = spec.entry.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, Node), spec.entry
        params = yaml.safe_load((installed_dir("config") / spec.params_file).read_text())
        assert "ros__parameters" in params[spec.name], spec.params_file
        executable = ROOT / "install" / spec.package / "lib" / spec.package / spec.executable
        assert executable.exists(), f"{spec.package} does not install {spec.executable}"


def test_launch_file_declares_the_documented_arguments_and_uses_the_shared_graph():
    tree = ast.parse(LAUNCH_FILE.read_text())
    arguments = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                     and getattr(node.targets[0], "id", "") == "ARGUMENTS")
    names = [element.elts[0].value for element in arguments.elts]
    assert names == ["backend", "robot", "base_link", "tip_link", "robot_ip", "task",
                     "estimator", "camera",
                     "video_device", "target_source", "rviz", "record", "bag", "params_dir"]
    calls = {node.func.id for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "servo_graph" in calls and "GraphOptions" in calls


def _launch_nodes(options: GraphOptions) -> list[tuple]:
    """Evaluate servo.launch.py with launch_ros for `options`: (package, executable, name)
    of every uvs node it would start (robot_state_publisher, RViz and ros2 bag aside)."""
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node

    from launch import LaunchContext

    description = PythonLaunchDescriptionSource(str(LAUNCH_FILE)).get_launch_description(
        LaunchContext())
    context = LaunchContext()
    values = {"backend": options.backend, "robot": options.robot,
              "robot_ip": options.robot_ip, "task": options.task,
              "estimator": options.estimator, "camera": options.camera,
              "video_device": str(options.video_device),
              "target_source": options.target_source}
    for entity in description.entities:
        if entity.__class__.__name__ == "DeclareLaunchArgument":
            context.launch_configurations[entity.name] = values.get(
                entity.name, entity.default_value[0].text)
    found = []
    for entity in description.entities:
        if entity.__class__.__name__ == "OpaqueFunction":
            for action in entity.execute(context) or []:
                if isinstance(action, Node) and action.node_package.startswith("uvs_"):
                    # What Node.execute() resolves first: the final name (a public getter).
                    action._perform_substitutions(context)
                    found.append((action.node_package, action.node_executable,
                                  action.node_name.split("/")[-1]))
    return found


@pytest.mark.parametrize("options", OPTION_SETS, ids=_ids)
def test_launch_file_node_list_equals_the_runner(options):
    try:
        import launch_ros  # noqa: F401
    except ImportError:
        pytest.skip("launch_ros is not importable here (not on PyPI); this runs on machines "
                    "with a ROS 2 distribution or in the Docker image")
    expected = [(s.package, s.executable, s.name) for s in servo_graph(options)]
    assert _launch_nodes(options) == expected


def test_runner_starts_exactly_the_graph_nodes():
    """`uvs servo` brings up one node per NodeSpec, under the spec's name, visible on DDS."""
    import time

    from uvs_bringup.runner import ServoGraph

    options = GraphOptions(task="visual_servo", estimator="tj", camera="sim")
    expected = [s.name for s in servo_graph(options)]
    with ServoGraph(options) as graph:
        assert [node.get_name() for node in graph.nodes.values()] == expected
        deadline = time.monotonic() + 10.0
        seen: set[str] = set()
        while time.monotonic() < deadline and not set(expected) <= seen:
            seen = set(graph.operator.get_node_names())
            time.sleep(0.05)
    assert set(expected) <= seen, f"not discovered: {set(expected) - seen}"


UR5E_JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint",
               "wrist_2_joint", "wrist_3_joint"]


@pytest.mark.parametrize(("robot", "joints"), [
    (None, [f"joint_{i}" for i in range(1, 8)]),     # the default model, gen3
    ("ur5e", UR5E_JOINTS),
])
def test_launch_adds_robot_state_publisher_with_the_generated_urdf_where_installed(
        monkeypatch, robot, joints):
    """robot_state_publisher is not installable here: evaluate the launch as on a machine
    where it is (the ament index says so) and check its robot_description: the URDF of
    the robot model the uvs nodes load."""
    try:
        import launch_ros  # noqa: F401
    except ImportError:
        pytest.skip("launch_ros is not importable here (not on PyPI)")
    import xml.etree.ElementTree as ET

    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node

    from launch import LaunchContext
    from uvs_bringup.launch_support import package_available

    description = PythonLaunchDescriptionSource(str(LAUNCH_FILE)).get_launch_description(
        LaunchContext())
    # The launch file's own name for the check: as if the ament index listed the package.
    module_globals = description.entities[-1]._OpaqueFunction__function.__globals__
    monkeypatch.setitem(module_globals, "package_available",
                        lambda name: name == "robot_state_publisher" or package_available(name))
    context = LaunchContext()
    for entity in description.entities:
        if entity.__class__.__name__ == "DeclareLaunchArgument":
            context.launch_configurations[entity.name] = entity.default_value[0].text
    if robot is not None:
        context.launch_configurations["robot"] = robot
    actions = description.entities[-1].execute(context)
    rsp = [a for a in actions if isinstance(a, Node)
           and a.node_package == "robot_state_publisher"]
    assert len(rsp) == 1
    from launch_ros.utilities import evaluate_parameters

    # The values launch_ros hands the node (what it writes to its parameter file).
    params = evaluate_parameters(context, rsp[0]._Node__parameters)[0]
    assert isinstance(params["robot_description"], str)
    root = ET.fromstring(params["robot_description"])
    assert root.get("name") == (robot or "gen3")
    assert [j.get("name") for j in root.iter("joint") if j.get("type") != "fixed"] == joints
    uvs_nodes = [a for a in actions if isinstance(a, Node) and a.node_package.startswith("uvs_")]
    for node in uvs_nodes:
        given = evaluate_parameters(context, node._Node__parameters)[-1]
        assert given.get("robot") == robot, node.node_executable
