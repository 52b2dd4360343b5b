"""Node ``sim_camera``: a simulated camera watching the arm's end-effector marker.

Renders the marker of the visual-servo task (a disc at the projection of the
tool point, see :mod:`uvs_vision.render`) for the latest joint state, at
``rate`` Hz, until the first joint state it publishes nothing. With
``target_marker`` true it also renders a target marker of another colour (a
ring, ``target_color``) at a point of the base frame: ``target_position``, or
the newest ``target_point`` message; a second hue tracker then reads the target
pixel from the same images (servo.launch.py ``target_source:=marker``).
With ``target_motion`` circle or line the target marker moves
(uvs_core.trajectories.TargetPath from that point: a circle of radius
``target_motion_size`` m with normal ``target_motion_axis``, or a line of that
length along it and back, at ``target_motion_speed`` m/s, on the node's clock
from when the motion or its start point was last set): a moving target for the
tracker and the controller (whose ``target_velocity`` estimate feeds it forward).
The default axis [0, 1, 0] keeps the marker in the plane joints 2 and 4 move the
tool in, so the visual_servo task can follow it.

A noisy tracker (uvs_core.tracker_noise; all off by default, seeded by ``seed``):
``tracker_noise_px`` draws the marker N(0, sigma) px off its true pixel per axis;
``drop_probability`` loses a frame (no image, no camera_info); ``wrong_blob_probability``
adds a distractor of the marker's colour, 1.5 times its radius, elsewhere in the
image (at least ``wrong_blob_min_px`` away), so a hue tracker that keeps the largest
blob tracks the wrong thing. The counters ``frames_published``, ``frames_dropped`` and
``wrong_blobs`` say what was done.

Topics (relative names, so a namespace or a remap applies):
- subscribes ``joint_states`` (sensor_msgs/JointState; by name, else in the
  robot's joint order), best effort, newest only;
- publishes ``image_raw`` (sensor_msgs/Image, bgr8, frame ``frame_id``,
  header stamp = the stamp of the joint state rendered), sensor-data QoS;
- publishes ``camera_info`` (sensor_msgs/CameraInfo, the task camera's
  intrinsics, no distortion), same header, sensor-data QoS;
- subscribes ``target_point`` (geometry_msgs/PointStamped, m, the robot's base
  frame; frame_id empty or ``base_frame``, others are ignored with a warning):
  moves the target marker there (and ``target_position`` with it); a point with
  NaN hides it. Reliable, depth 1.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header

from uvs_core.tasks import make_task
from uvs_core.tracker_noise import TrackerNoise, sample_frame
from uvs_core.trajectories import PATH_KINDS, TargetPath
from uvs_ros import run_node
from uvs_ros.params import Param, ParamSpec, positive
from uvs_ros.qos import COMMAND_QOS, IMAGE_PUB_QOS, LATEST_QOS, SENSOR_QOS
from uvs_ros.robot_model import load_node_robot, robot_model_params, robot_model_reason
from uvs_vision.image_conv import array_to_image_fields
from uvs_vision.render import BACKGROUNDS, MarkerRenderer, RenderConfig

__all__ = ["SimCameraNode", "PARAMETERS", "validate_parameters", "camera_info", "main"]

CAMERA_TASKS = ("visual_servo",)
_DEFAULT_RENDER = RenderConfig()
_RENDER_FIELDS = ("marker_color", "marker_radius", "marker_radius_px", "background",
                  "background_color", "noise_std", "seed", "target_color",
                  "target_radius_px", "target_ring_px")
# Default target: the tool point with joint_2 at 0.5 and joint_4 at 1.0 rad from the
# visual_servo start pose, so the two task joints can reach its pixel.
_DEFAULT_TARGET = [0.8, -0.025, 0.7]
_LOG_PERIOD = 2.0  # s between repeated log lines of one kind

# The sim camera's parameters (uvs_ros.params); config/sim_camera.yaml is checked
# against them.
PARAMETERS = {
    **robot_model_params("the camera and the marker's position"),
    "task": Param("visual_servo",
        "Task whose camera (intrinsics and pose, from the robot YAML's tasks: section) "
        "renders the marker.", read_only=True, choices=CAMERA_TASKS),
    "rate": Param(30.0, "Frame rate, Hz.", range=(0.0, 1000.0), checks=(positive,)),
    "frame_id": Param("camera_optical_frame",
        "frame_id of the images and camera info (optical frame: z forward, x right, y down).",
        read_only=True),
    "marker_color": Param(list(_DEFAULT_RENDER.marker_color),
        "Marker colour [B, G, R], 0..255 each."),
    "marker_radius": Param(_DEFAULT_RENDER.marker_radius,
        "Physical marker radius, m; its image radius is fx * radius / depth.",
        range=(0.0, 1.0)),
    "marker_radius_px": Param(_DEFAULT_RENDER.marker_radius_px,
        "Fixed marker radius in the image, px; 0 uses marker_radius and the depth.",
        range=(0.0, 1000.0)),
    "background": Param(_DEFAULT_RENDER.background,
        "Background: a solid colour, a gradient, or a gradient with a checker texture.",
        choices=BACKGROUNDS),
    "background_color": Param(list(_DEFAULT_RENDER.background_color),
        "Mean background colour [B, G, R], 0..255 each."),
    "noise_std": Param(_DEFAULT_RENDER.noise_std,
        "Gaussian pixel noise, standard deviation in intensity levels.",
        range=(0.0, 255.0)),
    "seed": Param(_DEFAULT_RENDER.seed,
        "Seed of the pixel noise.", read_only=True, range=(0, 2**31 - 1)),
    "target_marker": Param(False,
        "Render the target marker (a ring) at target_position."),
    "target_position": Param(list(_DEFAULT_TARGET),
        "Target marker position [x, y, z], m, base frame; the target_point topic sets "
        "it too."),
    "target_color": Param(list(_DEFAULT_RENDER.target_color),
        "Target marker colour [B, G, R], 0..255 each (green: a second hue_tracker with "
        "hue 45..75 finds it)."),
    "target_radius_px": Param(_DEFAULT_RENDER.target_radius_px,
        "Outer radius of the target ring, px; larger than the end-effector marker, which "
        "fits in its hole on arrival.", range=(0.0, 1000.0)),
    "target_ring_px": Param(_DEFAULT_RENDER.target_ring_px,
        "Width of the target ring's band, px (<= target_radius_px).",
        range=(0.0, 1000.0)),
    "target_motion": Param("none",
        "Move the target marker from target_position: none, circle (radius "
        "target_motion_size, normal target_motion_axis) or line (target_motion_size along "
        "target_motion_axis and back), at target_motion_speed.",
        choices=("none",) + PATH_KINDS),
    "target_motion_size": Param(0.05,
        "Circle radius or line length of the target motion, m.", range=(0.0, 2.0)),
    "target_motion_speed": Param(0.05,
        "Speed of the target motion, m/s.", range=(0.0, 2.0)),
    "target_motion_axis": Param([0.0, 1.0, 0.0],
        "Circle normal or line direction, base frame (default: the plane joints 2 and 4 "
        "move the tool in)."),
    "tracker_noise_px": Param(0.0,
        "Noisy tracker: the marker is drawn N(0, this) px off its true pixel per axis.",
        range=(0.0, 100.0)),
    "drop_probability": Param(0.0,
        "Noisy tracker: probability that a frame is lost (not published).",
        range=(0.0, 0.99)),
    "wrong_blob_probability": Param(0.0,
        "Noisy tracker: probability that a frame also shows a larger blob of the marker's "
        "colour elsewhere, which a hue tracker then reports.", range=(0.0, 0.99)),
    "wrong_blob_min_px": Param(60.0,
        "Noisy tracker: the wrong blob is at least this far from the marker, px.",
        range=(0.0, 1000.0)),
    "base_frame": Param("base_link",
        "The robot's base frame: target_point messages must be in it (or have no "
        "frame_id).", read_only=True),
}


def _render_config(values: dict) -> RenderConfig:
    """RenderConfig from parameter values; ValueError with the reason when invalid."""
    return RenderConfig(
        marker_color=tuple(values["marker_color"]),
        marker_radius=float(values["marker_radius"]),
        marker_radius_px=float(values["marker_radius_px"]),
        background=values["background"],
        background_color=tuple(values["background_color"]),
        noise_std=float(values["noise_std"]),
        seed=int(values["seed"]),
        target_color=tuple(values["target_color"]),
        target_radius_px=float(values["target_radius_px"]),
        target_ring_px=float(values["target_ring_px"]))


def _tracker_noise(values: dict) -> TrackerNoise:
    """TrackerNoise from parameter values; ValueError with the reason when invalid."""
    return TrackerNoise(pixel_std=float(values["tracker_noise_px"]),
                        drop_prob=float(values["drop_probability"]),
                        outlier_prob=float(values["wrong_blob_probability"]),
                        outlier_min_px=float(values["wrong_blob_min_px"]))


def validate_parameters(values: dict) -> str | None:
    """Why this full set of parameter values is not acceptable, or None when it is (the
    checks across parameters; SPEC checks each one first)."""
    target = values["target_position"]
    if len(target) != 3 or not all(math.isfinite(v) for v in target):
        return f"target_position must be three finite numbers [x, y, z] m, got {list(target)}"
    try:
        _render_config(values)
        _tracker_noise(values)
        _motion(values, target)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


SPEC = ParamSpec(PARAMETERS, checks=(robot_model_reason, validate_parameters))


def _motion(values: dict, start) -> TargetPath | None:
    """The target marker's path from ``start`` (3,) m, None when it stands still;
    ValueError with the reason for a bad motion."""
    kind = values["target_motion"]
    if kind == "none":
        return None
    if kind not in PATH_KINDS:
        raise ValueError(f"target_motion must be none, {', '.join(PATH_KINDS)}; got {kind!r}")
    try:
        return TargetPath(kind, tuple(start), tuple(values["target_motion_axis"]),
                          size=values["target_motion_size"],
                          speed=values["target_motion_speed"])
    except ValueError as exc:
        raise ValueError(f"target_motion: {exc}") from None


def camera_info(camera, header: Header) -> CameraInfo:
    """sensor_msgs/CameraInfo of a :class:`uvs_core.tasks.PinholeCamera` (no distortion)."""
    info = CameraInfo()
    info.header = header
    info.width, info.height = int(camera.width), int(camera.height)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class SimCameraNode(Node):
    """The simulated camera. Keyword arguments go to rclpy's Node (context,
    parameter_overrides, namespace, ...); the node name defaults to ``sim_camera``.

    Raises ValueError for invalid parameters (unknown robot or task, bad colours).
    """

    def __init__(self, node_name: str = "sim_camera", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = self._params = SPEC.declare(self)

        self.robot = load_node_robot(self, values["robot"])
        self.task = make_task(values["task"], self.robot)
        self.renderer = MarkerRenderer(self.task, _render_config(values))
        self._frame_id = values["frame_id"]
        self._rate = values["rate"]
        self._joint_index = {name: i for i, name in enumerate(self.robot.joint_names)}
        self._joint_state: tuple[object, np.ndarray] | None = None  # (stamp, q (n,) rad)
        self._visible: bool | None = None
        self._target_visible: bool | None = None
        self._setting_point = False      # target_position being set from target_point
        self._show_target = bool(values["target_marker"])
        self._base_frame = values["base_frame"]
        # (3,) m, base frame; NaN while hidden by a NaN target_point
        self._target_point = np.asarray(values["target_position"], dtype=float)
        self._path = _motion(values, self._target_point)
        self._path_t0 = self.get_clock().now()
        self._noise = _tracker_noise(values)
        # Its own stream of the seed, apart from the pixel-intensity noise's.
        self._noise_rng = np.random.default_rng([int(values["seed"]), 1])
        self.frames_published = 0
        self.frames_dropped = 0
        self.wrong_blobs = 0

        self._image_pub = self.create_publisher(Image, "image_raw", IMAGE_PUB_QOS)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
        self._joint_sub = self.create_subscription(
            JointState, "joint_states", self._on_joint_state, LATEST_QOS)
        self._target_sub = self.create_subscription(
            PointStamped, "target_point", self._on_target_point, COMMAND_QOS)
        self._timer = self.create_timer(1.0 / self._rate, self._tick)
        SPEC.watch(self, self._params, self._apply_parameters)
        cam = self.task.camera
        self.get_logger().info(
            f"robot {self.robot.name}, task {self.task.name}: {cam.width}x{cam.height} camera "
            f"(fx {cam.fx:g}, fy {cam.fy:g} px), {self._rate:g} Hz, marker BGR "
            f"{list(self.renderer.config.marker_color)}"
            + (f"; target BGR {list(self.renderer.config.target_color)} at "
               f"{self._target_point.tolist()} m" if self._show_target else ""))

    # ------------------------------------------------------------------ parameters

    def _apply_parameters(self, names: set[str]) -> None:
        values = self._params
        if names & set(_RENDER_FIELDS):
            self.renderer.config = _render_config(values)
        if "rate" in names and values["rate"] != self._rate:
            self._rate = values["rate"]
            self._timer.timer_period_ns = int(1e9 / self._rate)
        if names & {"tracker_noise_px", "drop_probability", "wrong_blob_probability",
                    "wrong_blob_min_px"}:
            self._noise = _tracker_noise(values)
            self.get_logger().info(f"tracker noise now {self._noise}")
        if "target_marker" in names:
            self._show_target = bool(values["target_marker"])
        if "target_position" in names and not self._setting_point:
            self._target_point = np.asarray(values["target_position"], dtype=float)
        if names & {"target_position", "target_motion", "target_motion_size",
                    "target_motion_speed", "target_motion_axis"} and not self._setting_point:
            self._restart_motion(values)

    def _restart_motion(self, values: dict) -> None:
        """The target motion again from the target point, now."""
        point = self._target_point
        self._path = _motion(values, point) if np.all(np.isfinite(point)) else None
        self._path_t0 = self.get_clock().now()

    # ------------------------------------------------------------------ callbacks

    def _on_joint_state(self, msg: JointState) -> None:
        n = self.robot.n
        if msg.name:
            q = np.full(n, np.nan)
            for name, position in zip(msg.name, msg.position):
                i = self._joint_index.get(name)
                if i is not None:
                    q[i] = position
        else:
            q = np.asarray(msg.position, dtype=float)
        if q.shape != (n,) or not np.all(np.isfinite(q)):
            self.get_logger().warning(
                "joint_states ignored: need finite positions of "
                f"{', '.join(self.robot.joint_names)}",
                throttle_duration_sec=_LOG_PERIOD)
            return
        self._joint_state = (msg.header.stamp, q)

    def _on_target_point(self, msg: PointStamped) -> None:
        if msg.header.frame_id not in ("", self._base_frame):
            self.get_logger().warning(
                f"target_point in frame {msg.header.frame_id!r} ignored: send it in "
                f"{self._base_frame!r}", throttle_duration_sec=_LOG_PERIOD)
            return
        point = np.array([msg.point.x, msg.point.y, msg.point.z])
        self._target_point = point
        if np.all(np.isfinite(point)):
            # Keep the parameter in step, so `ros2 param get` tells where the target is
            # (the start point of a target motion, which starts again from there).
            self._setting_point = True
            try:
                self.set_parameters([Parameter("target_position", value=point.tolist())])
            finally:
                self._setting_point = False
        self._restart_motion(self._params)

    def target_point(self) -> np.ndarray:
        """(3,) m, base frame: where the target marker is now (moving along the target
        motion; NaN while hidden)."""
        if self._path is None or not np.all(np.isfinite(self._target_point)):
            return self._target_point
        t = (self.get_clock().now() - self._path_t0).nanoseconds * 1e-9
        return self._path.sample([t])[0][0]

    def _tick(self) -> None:
        if self._joint_state is None:
            self.get_logger().info("waiting for joint_states", throttle_duration_sec=5.0)
            return
        stamp, q = self._joint_state
        uv, radius, visible = self.renderer.marker(q)
        target_uv = None
        if self._show_target:
            target_uv, target_visible = self.renderer.target(self.target_point())
            if target_visible != self._target_visible:
                if target_visible:
                    self.get_logger().info(
                        f"target marker at ({target_uv[0]:.1f}, {target_uv[1]:.1f}) px")
                else:
                    self.get_logger().warning("target marker hidden or out of view")
                self._target_visible = target_visible
            target_uv = target_uv if target_visible else None
        distractor = None
        if self._noise.active:
            cam = self.task.camera
            blob = 1.5 * (radius if visible else self._default_radius())
            # Far enough that the wrong blob never touches the marker (or merges with it).
            noise = replace(self._noise, outlier_min_px=max(self._noise.outlier_min_px,
                                                            radius + blob + 4.0))
            frame = sample_frame(noise, self._noise_rng, uv, cam.width, cam.height,
                                 margin=blob + 1.0)
            if frame.dropped:
                self.frames_dropped += 1
                return
            uv = uv + frame.offset
            if frame.outlier is not None:
                distractor = (frame.outlier, blob)
                self.wrong_blobs += 1
        image = self.renderer.render_at(uv if visible else None, radius, target_uv,
                                        distractor)
        if visible != self._visible:
            if visible:
                self.get_logger().info(f"marker in view at ({uv[0]:.1f}, {uv[1]:.1f}) px",
                                       throttle_duration_sec=_LOG_PERIOD)
            else:
                self.get_logger().warning("marker out of view", throttle_duration_sec=_LOG_PERIOD)
            self._visible = visible
        header = Header(stamp=stamp, frame_id=self._frame_id)
        self._image_pub.publish(Image(header=header, **array_to_image_fields(image, "bgr8")))
        self._info_pub.publish(camera_info(self.task.camera, header))
        self.frames_published += 1

    def _default_radius(self) -> float:
        """px: the marker's radius when it is out of view (at a 1 m depth)."""
        config = self.renderer.config
        return config.marker_radius_px or self.task.camera.fx * config.marker_radius


def main(args=None) -> int:
    # Bad parameters: one FATAL line with the reason, exit code 1.
    return run_node(SimCameraNode, "sim_camera", args=args)


if __name__ == "__main__":
    raise SystemExit(main())
