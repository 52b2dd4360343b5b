"""The bag schema of babbling datasets: topics, message types and the one typestore.

Bag schema (one sample = two messages with the same ``header.stamp``):

- ``/joint_states`` ``sensor_msgs/msg/JointState``: name, position = q row.
- ``/task_state`` ``uvs_interfaces/msg/TaskState``: task, position = x row,
  labels, valid (messages with ``valid == False`` are skipped on reading).
- ``/babble/trajectory_start`` ``std_msgs/msg/UInt32``: the trajectory index,
  logged at the stamp of the trajectory's first sample.
- optional, written by the babbler node: ``/babble/command``
  ``std_msgs/msg/Float64MultiArray``, the joint velocity command (rad/s, robot
  joint order) sent in answer to the sample logged at the same time, and
  ``/babble/target`` ``uvs_interfaces/msg/TaskState``, the target the servo
  babbler was steering to at that sample (same header stamp).

Bag log timestamps equal the sample stamps.

``uvs_core.dataset`` is the public face (``Dataset``, ``read_bag``, ``write_bag``
and these names); this module, ``uvs_core.bag_writer`` and ``uvs_core.bag_reader``
are its parts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

JOINT_STATES_TOPIC = "/joint_states"
TASK_STATE_TOPIC = "/task_state"
TRAJECTORY_START_TOPIC = "/babble/trajectory_start"
COMMAND_TOPIC = "/babble/command"
TARGET_TOPIC = "/babble/target"

JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
TASK_STATE_TYPE = "uvs_interfaces/msg/TaskState"
UINT32_TYPE = "std_msgs/msg/UInt32"
ARRAY_TYPE = "std_msgs/msg/Float64MultiArray"

# Copy of src/uvs_interfaces/msg/TaskState.msg (comments stripped). The core
# must not need the generated interface package, so the definition lives here;
# test_dataset.py asserts the two stay field-for-field equal.
TASK_STATE_MSG = """\
std_msgs/Header header
string task
float64[] position
string[] labels
bool valid
float64[] velocity
"""
# TaskState before the velocity field (issue 16): bags written then still read.
TASK_STATE_V1_MSG = TASK_STATE_MSG.replace("float64[] velocity\n", "")
TASK_STATE_V1_TYPE = "uvs_interfaces/msg/TaskStateV1"

Progress = Callable[[int, int], None]

NS_PER_S = 1_000_000_000
PROGRESS_EVERY = 5000  # samples (write) or messages (read) between progress calls


class DatasetError(Exception):
    """A bag cannot be read or written; the message names the file and the cause."""


@lru_cache(maxsize=1)
def typestore():
    """ROS 2 typestore with uvs_interfaces/msg/TaskState registered (built once)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    # Newest ROS 2 store this rosbags knows (the enum lists distributions in
    # release order); the message types used here are the same in all of them.
    newest = [store for store in Stores if store.name.startswith("ROS2_")][-1]
    store = get_typestore(newest)
    store.register(get_types_from_msg(TASK_STATE_MSG, TASK_STATE_TYPE))
    store.register(get_types_from_msg(TASK_STATE_V1_MSG, TASK_STATE_V1_TYPE))
    return store
