"""What both vision nodes share: named QoS profiles and parameter descriptors."""

from __future__ import annotations

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

__all__ = ["SENSOR_QOS", "IMAGE_PUB_QOS", "IMAGE_SUB_QOS", "LATEST_QOS", "STATE_QOS",
           "descriptor",
           "STR", "DOUBLE", "INT", "BOOL", "INT_ARRAY", "DOUBLE_ARRAY"]

# Camera streams (image_raw, camera_info, debug images): best effort, a short
# queue; a late frame is worth less than the next one. Matches reliable and
# best-effort publishers alike.
SENSOR_QOS = qos_profile_sensor_data

# Images the sim camera publishes: reliable, newest only. A 640 x 480 bgr8 frame is
# 0.9 MB, which DDS sends in many fragments; best effort loses the whole frame with any
# one fragment. On a loaded machine (two busy CPU hogs beside the launched graph)
# 70 % of the frames were lost that way and the tracker went up to 1.4 s without one,
# long enough for the controller's stale-state halt to latch (measured with
# camera_info, published beside each image, arriving without a gap). Reliable
# resends the lost fragments; depth 1 keeps a slow reader from holding up the camera.
IMAGE_PUB_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Images the tracker reads, by its image_reliability parameter: reliable (from the sim
# camera) or best effort (matches any publisher, e.g. a camera driver's sensor-data
# stream, which a reliable reader would not match); newest only either way.
IMAGE_SUB_QOS = {
    reliability.name.lower(): QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )
    for reliability in (ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT)
}

# Inputs of which only the newest sample matters (the sim camera renders the
# latest joint state): best effort so any publisher matches, depth 1.
LATEST_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)

# task_state: reliable so the controller and a recorder get every sample
# (same profile as the driver's task_state).
STATE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

STR, DOUBLE, INT, BOOL, INT_ARRAY, DOUBLE_ARRAY = (
    ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_DOUBLE,
    ParameterType.PARAMETER_INTEGER, ParameterType.PARAMETER_BOOL,
    ParameterType.PARAMETER_INTEGER_ARRAY, ParameterType.PARAMETER_DOUBLE_ARRAY)


def descriptor(description: str, type_: int, read_only: bool = False,
               floats: tuple[float, float] | None = None,
               ints: tuple[int, int] | None = None,
               choices: tuple[str, ...] | None = None) -> ParameterDescriptor:
    """A ParameterDescriptor with an inclusive range or a list of choices."""
    if choices:
        description += f" One of: {', '.join(choices)}."
    out = ParameterDescriptor(description=description, type=type_, read_only=read_only)
    if floats is not None:
        out.floating_point_range = [
            FloatingPointRange(from_value=float(floats[0]), to_value=float(floats[1]), step=0.0)]
    if ints is not None:
        out.integer_range = [IntegerRange(from_value=ints[0], to_value=ints[1], step=1)]
    if choices:
        out.additional_constraints = f"one of {', '.join(choices)}"
    return out
