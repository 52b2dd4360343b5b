"""The uvs node graph, defined once.

`launch/servo.launch.py` turns these specs into launch_ros `Node` actions;
`uvs servo` instantiates the same node classes in one process on one
executor, with the same parameter files, parameter overrides and
remappings (passed as ``--ros-args`` exactly as launch would). A test checks
that the two node lists are equal.

No rclpy import here: the spec is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from uvs_core.paths import installed_dir

# `backend`: what runs the arm (the driver bridge's backend). `robot`: the kinematic model
# every node loads (uvs_core.robot.load_robot: a name under config/robots, a robot YAML
# or URDF path, or ROBOT_DESCRIPTION). Before issue 14 the launch argument `robot` chose the
# backend.
BACKENDS = ("sim", "gen3")
DEFAULT_ROBOT = "gen3"
# The robot model value meaning: the URDF a robot driver publishes on the robot_description
# topic (uvs_ros.robot_model, read by each node at start; no rclpy import here).
ROBOT_DESCRIPTION = "robot_description"
# Robot models the gen3 backend (Kinova's Kortex API) can drive: the Gen3, 7 and 6 DOF.
KORTEX_ROBOTS = ("gen3", "gen3_6dof")
TASKS = ("single_point", "multi_point", "visual_servo", "pose")
BABBLE_MODES = ("ou", "servo")   # uvs_core.babble.BABBLE_MODES (no import of the core here)
CAMERAS = ("sim", "webcam", "topic")
# Where the controller's target comes from: ~/set_target or the target topic (an operator,
# `uvs servo`), or a second tracked marker in the camera image (the paper's set-up).
TARGET_SOURCES = ("service", "marker")
# A tracked target older than this halts the controller ("target stale"), s: the tracker
# publishes every frame (30 Hz), so this is 15 frames without one.
MARKER_TARGET_TIMEOUT = 0.5

# Topics the servo loop exchanges; what `record` writes to the bag.
SERVO_TOPICS = (
    "/joint_states",
    "/task_state",
    "/joint_velocity_command",
    "/target",
    "/controller/status",
    "/controller/markers",
)
VISION_TOPICS = ("/ground_truth/task_state",)

# The type of every topic the recorder may write ("package/msg/Type"; no import here).
TOPIC_TYPES = {
    "/joint_states": "sensor_msgs/msg/JointState",
    "/task_state": "uvs_interfaces/msg/TaskState",
    "/ground_truth/task_state": "uvs_interfaces/msg/TaskState",
    "/target": "uvs_interfaces/msg/TaskState",
    "/joint_velocity_command": "std_msgs/msg/Float64MultiArray",
    "/controller/status": "uvs_interfaces/msg/ServoStatus",
    "/controller/markers": "visualization_msgs/msg/MarkerArray",
    "/image_raw": "sensor_msgs/msg/Image",
    "/hue_tracker/debug_image": "sensor_msgs/msg/Image",
    "/target_point": "geometry_msgs/msg/PointStamped",
}


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph.

    package/executable: what `ros2 run` and launch_ros start.
    entry: "module:Class" of the rclpy Node subclass, for the in-process runner.
    params_file: file name under config/ (ros__parameters keyed by `name`).
    parameters: overrides applied after the file (launch arguments).
    remappings: (from, to) topic remappings.
    """

    name: str
    package: str
    executable: str
    entry: str
    params_file: str
    parameters: dict = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()

    def ros_args(self, config_dir: Path) -> list[str]:
        """The ``--ros-args`` a launch file would give this node."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        args += ["--params-file", str(config_dir / self.params_file)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_yaml_scalar(value)}"]
        for source, target in self.remappings:
            args += ["-r", f"{source}:={target}"]
        return args


def check_robot(spec: str, backend: str = "sim") -> tuple[str, str]:
    """(node parameter, model name) of robot spec `spec`: a name under config/robots as
    is, a file path made absolute (nodes may run in another working directory).
    ValueError with the reason when the model cannot be loaded, or when `backend` cannot
    drive it. ROBOT_DESCRIPTION is taken as is, model name None: the nodes read the URDF
    from the topic at start, so nothing here can check it."""
    from uvs_core.robot import load_robot

    text = str(spec).strip()
    if not text:
        raise ValueError("robot must name a robot model (a name under config/robots, "
                         f"a robot description file, or {ROBOT_DESCRIPTION}); got ''")
    if text == ROBOT_DESCRIPTION:
        return text, None
    if text.endswith((".yaml", ".yml", ".urdf", ".xml")) or "/" in text:
        text = str(Path(text).expanduser().resolve())
    try:
        model = load_robot(text)
    except (ValueError, OSError) as exc:
        raise ValueError(str(exc)) from None
    if backend == "gen3" and model.name not in KORTEX_ROBOTS:
        raise ValueError(
            f"backend 'gen3' drives a Kinova Gen3 ({', '.join(KORTEX_ROBOTS)}), not robot "
            f"{model.name!r}: use backend sim to servo {model.name!r} in simulation")
    return text, model.name


def resolve_backend(backend: str, robot: str, backend_given: bool,
                    robot_given: bool) -> tuple[str, str, str | None]:
    """(backend, robot, deprecation message or None) from the launch arguments `backend`
    and `robot`, accepting their meaning before issue 14 (`robot` chose the backend).

    robot:=sim means backend sim (with the default robot model); robot:=gen3 with no
    backend given means the real arm, backend gen3 with robot model gen3. Either returns
    a message saying what to write instead. *_given: the argument was set by the user
    (not its declared default)."""
    if robot_given and robot == "sim":
        if backend_given and backend != "sim":
            raise ValueError(f"robot:=sim (the old spelling of backend:=sim) contradicts "
                             f"backend:={backend}; robot names the robot model now")
        return "sim", None, (
            "robot:=sim is deprecated: `robot` now names the robot model (default "
            f"{DEFAULT_ROBOT}); write backend:=sim, or nothing (sim is the default backend)")
    if robot_given and robot == "gen3" and not backend_given:
        return "gen3", "gen3", (
            "robot:=gen3 without backend:= is deprecated and still means the real arm: "
            "write backend:=gen3 for the real Gen3 (robot gen3 is the default model), or "
            "backend:=sim robot:=gen3 for the simulated one")
    return backend, robot or None, None


@dataclass(frozen=True)
class GraphOptions:
    """The launch arguments of servo.launch.py (same names, same defaults).

    backend: sim | gen3, what runs the arm. robot: the kinematic model every node loads
    (a name under config/robots, a robot YAML or URDF path, a file path made absolute; or
    ROBOT_DESCRIPTION: the URDF a robot driver publishes on that topic); None: each
    node's parameter file says (config/*.yaml: gen3, see config_robot).
    base_link, tip_link: the chain's ends in a URDF robot ('': its root, its one leaf).
    """

    backend: str = "sim"
    robot: str | None = None
    base_link: str = ""
    tip_link: str = ""
    robot_ip: str = "192.168.1.10"
    task: str = "single_point"
    estimator: str = "nk_tanh"
    camera: str = "sim"
    video_device: int = 0
    target_source: str = "service"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("backend", self.backend, BACKENDS),
            ("task", self.task, TASKS),
            ("camera", self.camera, CAMERAS),
            ("target_source", self.target_source, TARGET_SOURCES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        estimators = estimator_choices()
        if self.estimator not in estimators:
            raise ValueError(f"estimator must be one of {', '.join(estimators)}; "
                             f"got {self.estimator!r}")
        if self.robot is not None:
            object.__setattr__(self, "robot", check_robot(self.robot, self.backend)[0])
        if self.task == "visual_servo" and self.backend == "sim" and self.camera == "webcam":
            raise ValueError("camera 'webcam' needs backend 'gen3': a webcam cannot see the "
                             "sim arm")
        if self.target_source == "marker":
            if self.task != "visual_servo":
                raise ValueError("target_source 'marker' needs task 'visual_servo': the target "
                                 "marker is tracked in the camera image")
            if self.camera == "webcam":
                raise ValueError(
                    "target_source 'marker' with camera 'webcam': two trackers cannot both "
                    "open the webcam; run a camera driver that publishes image_raw (e.g. "
                    "v4l2_camera, usb_cam) and use camera:=topic, so both see the same frames")


def robot_parameters(options) -> dict:
    """The robot-model parameters of every node that loads the model: `robot`, and
    `base_link` / `tip_link` where given (GraphOptions or BabbleOptions)."""
    params = {} if options.robot is None else {"robot": options.robot}
    for name in ("base_link", "tip_link"):
        if getattr(options, name):
            params[name] = getattr(options, name)
    return params


def servo_graph(options: GraphOptions) -> list[NodeSpec]:
    """The nodes of the servo graph for `options`, in start order. Every node that loads
    a kinematic model gets the same `robot` (none when options.robot is None: the
    parameter files' then)."""
    model = robot_parameters(options)
    backend_params = {"backend": options.backend, **model, "task": options.task}
    if options.backend == "gen3":
        backend_params["robot_ip"] = options.robot_ip
    driver_remaps: tuple[tuple[str, str], ...] = ()
    if options.task == "visual_servo":
        # The tracker measures x in the image; the sim driver's model x is kept as ground truth.
        driver_remaps = (("task_state", "ground_truth/task_state"),)
    nodes = [
        NodeSpec("driver", "uvs_driver", "driver", "uvs_driver.driver_node:DriverNode",
                 "driver.yaml", backend_params, driver_remaps),
        NodeSpec("jacobian_estimator", "uvs_estimation", "jacobian_estimator",
                 "uvs_estimation.estimator_node:JacobianEstimatorNode",
                 "jacobian_estimator.yaml",
                 {**model, "task": options.task, "estimator": options.estimator}),
        NodeSpec("controller", "uvs_control", "controller",
                 "uvs_control.controller_node:ControllerNode", "controller.yaml",
                 {**model, "task": options.task,
                  **({"target_timeout": MARKER_TARGET_TIMEOUT,
                      # the tracked marker's pixel carries no velocity: estimate it
                      "target_velocity": "estimate"}
                                           if options.target_source == "marker" else {})}),
    ]
    if options.task == "visual_servo":
        if options.camera == "sim":
            camera_params = {**model, "task": options.task}
            if options.target_source == "marker":
                camera_params["target_marker"] = True
            nodes.append(NodeSpec("sim_camera", "uvs_vision", "sim_camera",
                                  "uvs_vision.sim_camera_node:SimCameraNode", "sim_camera.yaml",
                                  camera_params))
        source = "webcam" if options.camera == "webcam" else "topic"
        # The sim camera's large frames go reliable (uvs_vision.ros_common.IMAGE_PUB_QOS);
        # another camera's stream is read best effort, which matches any publisher.
        reliability = {"image_reliability": "reliable" if options.camera == "sim"
                       else "best_effort"}
        tracker_params = {"source": source, **(reliability if source == "topic" else {})}
        if source == "webcam":
            tracker_params["video_device"] = options.video_device
        nodes.append(NodeSpec("hue_tracker", "uvs_vision", "hue_tracker",
                              "uvs_vision.hue_tracker_node:HueTrackerNode", "hue_tracker.yaml",
                              tracker_params))
        if options.target_source == "marker":
            # A second tracker instance (its own colour, hue_tracker.yaml's target_tracker)
            # on the same images; what it tracks is the controller's target.
            nodes.append(NodeSpec("target_tracker", "uvs_vision", "hue_tracker",
                                  "uvs_vision.hue_tracker_node:HueTrackerNode",
                                  "hue_tracker.yaml", {"source": "topic", **reliability},
                                  (("task_state", "target"),)))
    return nodes


@dataclass(frozen=True)
class BabbleOptions:
    """The launch arguments of babble.launch.py (same names, same defaults); backend and
    robot as in GraphOptions."""

    backend: str = "sim"
    robot: str | None = None
    base_link: str = ""
    tip_link: str = ""
    robot_ip: str = "192.168.1.10"
    task: str = "single_point"
    trajectories: int = 10
    bag: str = "bags/babble"
    mode: str = "ou"

    def __post_init__(self) -> None:
        for name, value, allowed in (("backend", self.backend, BACKENDS),
                                     ("task", self.task, TASKS),
                                     ("mode", self.mode, BABBLE_MODES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.trajectories < 1:
            raise ValueError(f"trajectories must be >= 1; got {self.trajectories}")
        if self.robot is not None:
            object.__setattr__(self, "robot", check_robot(self.robot, self.backend)[0])


def babble_graph(options: BabbleOptions) -> list[NodeSpec]:
    """Driver and babbler: OU or servo babbling from home, written as a bag of the `uvs
    collect` schema by the babbler itself (the driver's task_state is what it records)."""
    model = robot_parameters(options)
    driver_params = {"backend": options.backend, **model, "task": options.task}
    if options.backend == "gen3":
        driver_params["robot_ip"] = options.robot_ip
    return [
        NodeSpec("driver", "uvs_driver", "driver", "uvs_driver.driver_node:DriverNode",
                 "driver.yaml", driver_params),
        NodeSpec("babbler", "uvs_driver", "babbler", "uvs_driver.babbler_node:BabblerNode",
                 "babbler.yaml", {**model, "task": options.task,
                                  "trajectories": options.trajectories,
                                  "output": options.bag, "mode": options.mode}),
    ]


def recorder_spec(options: GraphOptions, bag: str) -> NodeSpec:
    """uvs's own MCAP recorder for `record:=true` where `ros2 bag` is not installed."""
    return NodeSpec("recorder", "uvs_bringup", "record", "uvs_bringup.recorder:RecorderNode",
                    "recorder.yaml", {"output": bag, "topics": recorded_topics(options)})


def estimator_choices() -> tuple[str, ...]:
    """The estimator names the registry knows (uvs_core; no torch import)."""
    from uvs_core.estimators import estimator_names

    return estimator_names()


def recorded_topics(options: GraphOptions) -> list[str]:
    """Topics a bag of this graph records: the servo ones, visual_servo's images and
    ground truth, the sim target marker's when targets come from it."""
    topics = list(SERVO_TOPICS)
    if options.task == "visual_servo":
        topics += list(VISION_TOPICS) + ["/image_raw", "/hue_tracker/debug_image"]
    if options.target_source == "marker" and options.camera == "sim":
        topics.append("/target_point")
    return topics


def config_robot(config: Path | None = None) -> str:
    """The robot model the driver's parameter file names (`config`/driver.yaml, default
    the installed config, uvs_core.paths): what the nodes load when GraphOptions.robot is None."""
    import yaml

    path = (Path(config) if config else installed_dir("config")) / "driver.yaml"
    try:
        params = yaml.safe_load(path.read_text())["driver"]["ros__parameters"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return DEFAULT_ROBOT
    return str(params.get("robot", DEFAULT_ROBOT))


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"'{v}'" if isinstance(v, str) else _yaml_scalar(v)
                               for v in value) + "]"
    return str(value)
