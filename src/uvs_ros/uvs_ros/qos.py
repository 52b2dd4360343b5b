"""The QoS profiles of every uvs topic, one meaning each.

Every node, the in-process runner and the bag recorder take their profiles from here,
so a topic's two ends cannot drift apart. A publisher and a subscriber match when the
subscriber asks for no more than the publisher offers: a best-effort subscriber
matches a reliable publisher, a reliable subscriber does not match a best-effort one;
a volatile subscriber matches a transient-local publisher, not the reverse.

Per topic, publisher profile -> subscriber profiles:

- ``joint_states``: driver ``STATE_QOS`` -> controller and sim_camera ``LATEST_QOS``,
  babbler and recorder ``RECORD_QOS``;
- ``task_state``: driver and hue_tracker ``STATE_QOS`` -> controller ``LATEST_QOS``,
  babbler and recorder ``RECORD_QOS``;
- ``joint_velocity_command``: controller and babbler ``COMMAND_QOS`` -> driver
  ``COMMAND_READER_QOS``;
- ``target``, ``target_pose``: an operator's ``COMMAND_QOS``, or target_tracker's
  task_state remapped (``STATE_QOS``) -> controller ``COMMAND_QOS``;
- ``target_point``: the runner's ``COMMAND_QOS`` -> sim_camera ``COMMAND_QOS``;
- ``controller/status``: controller ``STATE_QOS`` -> runner and recorder ``RECORD_QOS``;
- ``controller/markers``: controller ``LATCHED_QOS`` -> RViz and recorder (volatile);
- ``driver/safety``: driver ``LATCHED_QOS`` -> operators (volatile or latched);
- ``robot_description``: robot_state_publisher ``LATCHED_QOS`` -> every node started
  with robot:=robot_description ``LATCHED_QOS``;
- ``image_raw``: sim_camera ``IMAGE_PUB_QOS`` -> hue_tracker ``IMAGE_SUB_QOS``
  (reliable beside the sim camera, best effort for another camera; its
  ``image_reliability`` parameter);
- ``camera_info``, ``~/debug_image``: sim_camera and hue_tracker ``SENSOR_QOS`` ->
  RViz, recorders.

Services keep rclpy's default service profile.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

__all__ = ["COMMAND_QOS", "COMMAND_READER_QOS", "IMAGE_PUB_QOS", "IMAGE_SUB_QOS",
           "LATCHED_QOS", "LATEST_QOS", "RECORD_QOS", "SENSOR_QOS", "STATE_QOS"]


def _profile(depth: int, reliability: ReliabilityPolicy,
             durability: DurabilityPolicy = DurabilityPolicy.VOLATILE) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=durability)


#: Camera streams (image_raw, camera_info, debug images): rclpy's sensor-data profile,
#: best effort with a short queue; a late frame is worth less than the next one.
SENSOR_QOS: QoSProfile = qos_profile_sensor_data

#: Images the sim camera publishes: reliable, newest only. A 640 x 480 bgr8 frame is
#: 0.9 MB, which DDS sends in many fragments; best effort loses the whole frame with any
#: one fragment. On a loaded machine (two busy loops beside the launched graph) about
#: 70 % of the frames were lost that way and the tracker went over a second without
#: one, long enough for the controller's stale-state halt to latch (camera_info,
#: published beside each image, arrived without a gap). Reliable resends the lost
#: fragments; depth 1 keeps a slow reader from holding the camera up.
IMAGE_PUB_QOS: QoSProfile = _profile(1, ReliabilityPolicy.RELIABLE)

#: Images a tracker reads, by its ``image_reliability`` parameter: ``reliable`` beside
#: the sim camera, ``best_effort`` for any other camera (a driver's sensor-data stream,
#: which a reliable reader would not match); newest only either way.
IMAGE_SUB_QOS: dict[str, QoSProfile] = {
    "reliable": _profile(1, ReliabilityPolicy.RELIABLE),
    "best_effort": _profile(1, ReliabilityPolicy.BEST_EFFORT),
}

#: Commands and targets (joint velocity commands, target, target_pose, target_point):
#: reliable depth 1. Only the newest matters, and it must not be lost silently (a lost
#: zero would leave the arm moving until the driver's watchdog; a target sent once must
#: arrive).
COMMAND_QOS: QoSProfile = _profile(1, ReliabilityPolicy.RELIABLE)

#: The driver's side of the command topic: reliable depth 10, so several sources'
#: messages queue side by side and the owner's are not overwritten by another source's
#: before they are read (one source at a time, see driver_node). Matches COMMAND_QOS.
COMMAND_READER_QOS: QoSProfile = _profile(10, ReliabilityPolicy.RELIABLE)

#: Streams of state a node publishes every tick or cycle (joint_states, task_state,
#: controller/status): reliable depth 10, so a recorder gets every sample; the queue
#: absorbs a subscriber's scheduling hiccups.
STATE_QOS: QoSProfile = _profile(10, ReliabilityPolicy.RELIABLE)

#: Subscriptions that use only the newest sample (the controller's joint and task
#: states, the sim camera's joint states): best effort depth 1, so they match reliable
#: publishers (the driver) and sensor-data ones (a tracker on a camera's QoS) alike.
LATEST_QOS: QoSProfile = _profile(1, ReliabilityPolicy.BEST_EFFORT)

#: Recording subscriptions (the babbler's bag, the bag recorder, the runner's statuses):
#: reliable and deep, so a burst while the writer is busy loses nothing.
RECORD_QOS: QoSProfile = _profile(1000, ReliabilityPolicy.RELIABLE)

#: Latched state (driver/safety, controller/markers, robot_description): reliable,
#: transient-local depth 1; a late subscriber gets the current value at once.
LATCHED_QOS: QoSProfile = _profile(1, ReliabilityPolicy.RELIABLE,
                                   DurabilityPolicy.TRANSIENT_LOCAL)
