"""Node ``hue_tracker``: the marker's pixel centroid(s) from camera images, as a task state.

Images come from ``source``:
- ``topic``: subscribes ``image_raw`` (sensor_msgs/Image: bgr8, rgb8, bgra8,
  rgba8, mono8, mono16), sensor-data QoS; each image is tracked once and the
  task state carries the image's header;
- ``webcam``: OpenCV VideoCapture on device ``video_device`` (/dev/videoN);
- ``file``: OpenCV VideoCapture on ``video_file``, replayed from the start
  when ``loop`` is true, else the node stops grabbing at its end.
For webcam and file a timer grabs a frame at ``rate`` Hz and stamps it with
the node clock, frame ``frame_id``. A device or file that cannot be opened
or read is logged as an error and every tick publishes valid=False; the node
keeps running.

Publishes (relative names, so namespaces and remaps apply):
- ``task_state`` (uvs_interfaces/TaskState): task ``task`` (visual_servo),
  position = (u0, v0, u1, v1, ...) px of up to ``max_markers`` blobs, largest
  first; labels ``u, v`` for one marker, ``u0, v0, u1, v1, ...`` for more;
  valid=True when at least one marker is found. When none is found: valid=False
  and position empty (never a stale position). Reliable, depth 10.
  The sim driver publishes its model's ``task_state`` too: in a visual-servo
  graph remap one of them, e.g. ``--ros-args -r task_state:=tracked/task_state``.
- ``~/debug_image`` (sensor_msgs/Image, bgr8): the image with the mask and
  detections drawn; only rendered while someone subscribes. Sensor-data QoS.

Tracker parameters (hue_low, hue_high, sat_min, val_min, min_area, max_markers,
open_kernel, close_kernel; see :class:`uvs_vision.tracker.TrackerConfig`) can be
changed at run time; an invalid combination is rejected with a reason.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from uvs_interfaces.msg import TaskState
from uvs_ros import run_node
from uvs_ros.params import Param, ParamSpec, positive
from uvs_ros.qos import IMAGE_SUB_QOS, SENSOR_QOS, STATE_QOS
from uvs_vision.image_conv import ImageConversionError, array_to_image_fields, image_msg_to_bgr
from uvs_vision.tracker import (
    CHANNEL_MAX,
    HUE_MAX,
    MAX_KERNEL,
    MAX_MARKERS,
    Detection,
    HueTracker,
    TrackerConfig,
    draw_detection,
)

__all__ = ["HueTrackerNode", "PARAMETERS", "SOURCES", "validate_parameters", "marker_labels",
           "main"]

SOURCES = ("topic", "webcam", "file")
_DEFAULT = TrackerConfig()
_TRACKER_FIELDS = TrackerConfig.field_names()
_LOG_PERIOD = 2.0  # s between repeated log lines of one kind

# The hue tracker's parameters (uvs_ros.params); config/hue_tracker.yaml (hue_tracker and
# target_tracker) is checked against them.
PARAMETERS = {
    "source": Param("topic",
        "Where images come from: the image_raw topic, a webcam, or a video file.",
        read_only=True, choices=SOURCES),
    "image_reliability": Param("best_effort",
        "topic: reliability of the image_raw subscription. best_effort matches any camera "
        "(a driver's sensor-data stream); reliable resends lost fragments of large frames "
        "and needs a reliable publisher (the sim camera; servo.launch.py sets it there).",
        read_only=True, choices=tuple(IMAGE_SUB_QOS)),
    "video_device": Param(0,
        "webcam: OpenCV VideoCapture device index (/dev/videoN).",
        read_only=True, range=(0, 255)),
    "video_file": Param("",
        "file: path of the video file to track in.", read_only=True),
    "loop": Param(False,
        "file: replay the video from the start when it ends."),
    "rate": Param(30.0,
        "webcam, file: frames grabbed per second, Hz.", range=(0.0, 1000.0),
        checks=(positive,)),
    "frame_id": Param("camera_optical_frame",
        "webcam, file: frame_id of the published states (topic: the image's own).",
        read_only=True),
    "task": Param("visual_servo",
        "Task name written into task_state.", read_only=True),
    "hue_low": Param(_DEFAULT.hue_low,
        "Lowest marker hue, OpenCV units (degrees / 2); hue_low > hue_high wraps through 0.",
        range=(0, HUE_MAX)),
    "hue_high": Param(_DEFAULT.hue_high,
        "Highest marker hue, OpenCV units (degrees / 2).", range=(0, HUE_MAX)),
    "sat_min": Param(_DEFAULT.sat_min,
        "Minimum saturation of marker pixels.", range=(0, CHANNEL_MAX)),
    "val_min": Param(_DEFAULT.val_min,
        "Minimum value (brightness) of marker pixels.", range=(0, CHANNEL_MAX)),
    "min_area": Param(float(_DEFAULT.min_area),
        "Smallest blob reported, px (pixel count); must be > 0.",
        range=(0.0, 1.0e7)),
    "max_markers": Param(_DEFAULT.max_markers,
        "Most blobs reported, largest first.", range=(1, MAX_MARKERS)),
    "open_kernel": Param(_DEFAULT.open_kernel,
        "Morphological opening kernel size, px (removes specks); 0 skips it.",
        range=(0, MAX_KERNEL)),
    "close_kernel": Param(_DEFAULT.close_kernel,
        "Morphological closing kernel size, px (fills holes); 0 skips it.",
        range=(0, MAX_KERNEL)),
}


def _tracker_config(values: dict) -> TrackerConfig:
    return TrackerConfig(**{name: values[name] for name in _TRACKER_FIELDS})


def validate_parameters(values: dict) -> str | None:
    """Why this full set of parameter values is not acceptable, or None when it is (the
    checks across parameters; SPEC checks each one first)."""
    if values["source"] == "file" and not str(values["video_file"]).strip():
        return "source 'file' needs video_file, the path of a video"
    try:
        _tracker_config(values)
    except ValueError as exc:
        return str(exc)
    return None


SPEC = ParamSpec(PARAMETERS, checks=(validate_parameters,))


def marker_labels(count: int) -> list[str]:
    """Labels of task_state.position for ``count`` markers: u, v or u0, v0, u1, v1, ..."""
    if count == 1:
        return ["u", "v"]
    return [f"{axis}{i}" for i in range(count) for axis in "uv"]


class HueTrackerNode(Node):
    """The hue tracker. Keyword arguments go to rclpy's Node (context,
    parameter_overrides, namespace, ...); the node name defaults to ``hue_tracker``.

    Raises ValueError for invalid parameters. A webcam or video file that
    cannot be opened is not an exception: it is logged, and the node publishes
    valid=False.
    """

    def __init__(self, node_name: str = "hue_tracker", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = self._params = SPEC.declare(self)

        self.tracker = HueTracker(_tracker_config(values))
        self._source = values["source"]
        self._task = values["task"]
        self._frame_id = values["frame_id"]
        self._rate = values["rate"]
        self._loop = values["loop"]
        self._found: bool | None = None
        self.frames = 0            # frames tracked
        self._capture: cv2.VideoCapture | None = None
        self._capture_frames = 0   # frames read since the capture was (re)started
        self.incompatible_publishers = 0   # image_raw publishers it cannot match
        self._ended = False

        self._state_pub = self.create_publisher(TaskState, "task_state", STATE_QOS)
        self._debug_pub = self.create_publisher(Image, "~/debug_image", SENSOR_QOS)
        self._image_sub = None
        self._timer = None
        if self._source == "topic":
            self._image_sub = self.create_subscription(
                Image, "image_raw", self._on_image, IMAGE_SUB_QOS[values["image_reliability"]],
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=self._on_incompatible_image_qos))
            where = f"topic {self._image_sub.topic_name}"
        else:
            self._capture = self._open_capture(values)
            self._timer = self.create_timer(1.0 / self._rate, self._grab)
            where = (f"webcam {values['video_device']}" if self._source == "webcam"
                     else f"video file {values['video_file']}")
            where += f" at {self._rate:g} Hz"
        SPEC.watch(self, self._params, self._apply_parameters)
        c = self.tracker.config
        self.get_logger().info(
            f"tracking hue {c.hue_low}..{c.hue_high} (S >= {c.sat_min}, V >= {c.val_min}, "
            f"area >= {c.min_area:g} px, up to {c.max_markers} marker(s)) from {where}; "
            f"publishing {self._state_pub.topic_name}")

    def _on_incompatible_image_qos(self, event) -> None:
        self.incompatible_publishers = event.total_count
        self.get_logger().error(
            f"{self._image_sub.topic_name}: a publisher's QoS does not match this "
            f"{self._params['image_reliability']} subscription "
            f"(policy {event.last_policy_kind.name}); no frames from it. A best-effort camera "
            "needs image_reliability:=best_effort", throttle_duration_sec=_LOG_PERIOD)

    # ------------------------------------------------------------------ parameters

    def _apply_parameters(self, names: set[str]) -> None:
        values = self._params
        if names & set(_TRACKER_FIELDS):
            self.tracker.config = _tracker_config(values)
            self.get_logger().info(f"tracker settings now {self.tracker.config}")
        if "loop" in names:
            self._loop = values["loop"]
        if "rate" in names and values["rate"] != self._rate:
            self._rate = values["rate"]
            if self._timer is not None:
                self._timer.timer_period_ns = int(1e9 / self._rate)

    # ------------------------------------------------------------------ sources

    def _open_capture(self, values: dict) -> cv2.VideoCapture | None:
        """Open the webcam or video file; None (error logged) when it cannot be opened."""
        if self._source == "webcam":
            source = values["video_device"]
            failure = (f"cannot open webcam {source} (/dev/video{source}): no such device, "
                       "no permission, or in use")
        else:
            source = os.path.expanduser(values["video_file"])
            if not os.path.isfile(source):
                self.get_logger().error(f"video file {source!r} not found; publishing "
                                        "valid=False")
                return None
            failure = f"cannot read video file {source!r} (not a video OpenCV can decode)"
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            self.get_logger().error(f"{failure}; publishing valid=False")
            return None
        return capture

    def _grab(self) -> None:
        if self._capture is None:
            self._publish_lost(self._stamped_header())
            return
        ok, frame = self._capture.read()
        if ok:
            self._capture_frames += 1
        elif self._source == "file" and self._loop and self._capture_frames > 0:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._capture_frames = 0
            ok, frame = self._capture.read()
            self._capture_frames += int(ok)
        if not ok:
            if self._source == "file":
                if not self._ended:
                    self._ended = True
                    self.get_logger().info(
                        f"end of video file after {self.frames} frame(s); set loop to replay")
                    self._publish_lost(self._stamped_header())
                return
            self.get_logger().error(
                "webcam returned no frame (unplugged?); publishing valid=False",
                throttle_duration_sec=_LOG_PERIOD)
            self._publish_lost(self._stamped_header())
            return
        self._ended = False
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        self._track(frame, self._stamped_header())

    def _stamped_header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self._frame_id)

    def _on_image(self, msg: Image) -> None:
        try:
            bgr = image_msg_to_bgr(msg)
        except ImageConversionError as exc:
            self.get_logger().error(f"image_raw: {exc}", throttle_duration_sec=_LOG_PERIOD)
            self._publish_lost(msg.header)
            return
        self._track(bgr, msg.header)

    # ------------------------------------------------------------------ tracking

    def _track(self, bgr: np.ndarray, header: Header) -> None:
        detection = self.tracker.detect(bgr)
        self.frames += 1
        state = TaskState(header=header, task=self._task, valid=detection.found)
        if detection.found:
            state.position = detection.position
            state.labels = marker_labels(len(detection.areas))
        self._state_pub.publish(state)
        self._log_transition(detection)
        if self._debug_pub.get_subscription_count() > 0:
            debug = draw_detection(bgr, detection, label=self._task)
            self._debug_pub.publish(Image(header=header, **array_to_image_fields(debug, "bgr8")))

    def _publish_lost(self, header: Header) -> None:
        self._state_pub.publish(TaskState(header=header, task=self._task, valid=False))
        self._log_transition(None)

    def _log_transition(self, detection: Detection | None) -> None:
        found = detection is not None and detection.found
        if found == self._found:
            return
        self._found = found
        if found:
            u, v = detection.centroids[0]
            self.get_logger().info(
                f"marker found at ({u:.1f}, {v:.1f}) px, {detection.areas[0]:g} px area",
                throttle_duration_sec=_LOG_PERIOD)
        else:
            self.get_logger().warning("marker lost: publishing valid=False",
                                   throttle_duration_sec=_LOG_PERIOD)

    # ------------------------------------------------------------------ shutdown

    def destroy_node(self) -> None:
        if getattr(self, "_capture", None) is not None:
            self._capture.release()
            self._capture = None
        super().destroy_node()


def main(args=None) -> int:
    # Bad parameters: one FATAL line with the reason, exit code 1.
    return run_node(HueTrackerNode, "hue_tracker", args=args)


if __name__ == "__main__":
    raise SystemExit(main())
