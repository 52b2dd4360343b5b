"""uvs_ros.qos: each profile's policies, and every publisher/subscriber pair of the
graph (the module docstring's list) is compatible by rclpy's own check."""

from __future__ import annotations

import pytest
from rclpy.qos import (
    DurabilityPolicy,
    QoSCompatibility,
    ReliabilityPolicy,
    qos_check_compatible,
    qos_profile_sensor_data,
)

from uvs_ros.qos import (
    COMMAND_QOS,
    COMMAND_READER_QOS,
    IMAGE_PUB_QOS,
    IMAGE_SUB_QOS,
    LATCHED_QOS,
    LATEST_QOS,
    RECORD_QOS,
    SENSOR_QOS,
    STATE_QOS,
)

RELIABLE, BEST_EFFORT = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
VOLATILE, TRANSIENT_LOCAL = DurabilityPolicy.VOLATILE, DurabilityPolicy.TRANSIENT_LOCAL


@pytest.mark.parametrize("profile, depth, reliability, durability", [
    (COMMAND_QOS, 1, RELIABLE, VOLATILE),
    (COMMAND_READER_QOS, 10, RELIABLE, VOLATILE),
    (STATE_QOS, 10, RELIABLE, VOLATILE),
    (LATEST_QOS, 1, BEST_EFFORT, VOLATILE),
    (RECORD_QOS, 1000, RELIABLE, VOLATILE),
    (LATCHED_QOS, 1, RELIABLE, TRANSIENT_LOCAL),
    (SENSOR_QOS, qos_profile_sensor_data.depth, BEST_EFFORT, VOLATILE),
    (IMAGE_PUB_QOS, 1, RELIABLE, VOLATILE),
    (IMAGE_SUB_QOS["reliable"], 1, RELIABLE, VOLATILE),
    (IMAGE_SUB_QOS["best_effort"], 1, BEST_EFFORT, VOLATILE),
])
def test_profiles(profile, depth, reliability, durability):
    assert (profile.depth, profile.reliability, profile.durability) == \
        (depth, reliability, durability)


# (topic, publisher profile, subscriber profile), as the nodes create them
PAIRS = [
    ("joint_states: driver -> controller, sim_camera", STATE_QOS, LATEST_QOS),
    ("joint_states: driver -> babbler, recorder", STATE_QOS, RECORD_QOS),
    ("task_state: driver, hue_tracker -> controller", STATE_QOS, LATEST_QOS),
    ("task_state: a tracker on sensor QoS -> controller", SENSOR_QOS, LATEST_QOS),
    ("task_state: driver, hue_tracker -> babbler, recorder", STATE_QOS, RECORD_QOS),
    ("joint_velocity_command: controller, babbler -> driver", COMMAND_QOS,
     COMMAND_READER_QOS),
    ("target: an operator -> controller", COMMAND_QOS, COMMAND_QOS),
    ("target: target_tracker's task_state -> controller", STATE_QOS, COMMAND_QOS),
    ("target_point: runner -> sim_camera", COMMAND_QOS, COMMAND_QOS),
    ("controller/status -> runner, recorder", STATE_QOS, RECORD_QOS),
    ("controller/markers -> RViz, recorder", LATCHED_QOS, RECORD_QOS),
    ("driver/safety -> a latched reader", LATCHED_QOS, LATCHED_QOS),
    ("robot_description -> nodes", LATCHED_QOS, LATCHED_QOS),
    ("image_raw: sim_camera -> hue_tracker (reliable)", IMAGE_PUB_QOS,
     IMAGE_SUB_QOS["reliable"]),
    ("image_raw: sim_camera -> a best-effort tracker", IMAGE_PUB_QOS,
     IMAGE_SUB_QOS["best_effort"]),
    ("image_raw: a camera driver -> hue_tracker (best effort)", SENSOR_QOS,
     IMAGE_SUB_QOS["best_effort"]),
    ("camera_info, debug_image -> RViz", SENSOR_QOS, SENSOR_QOS),
]


@pytest.mark.parametrize("topic, publisher, subscriber", PAIRS, ids=[p[0] for p in PAIRS])
def test_every_pair_of_the_graph_is_compatible(topic, publisher, subscriber):
    compatibility, reason = qos_check_compatible(publisher, subscriber)
    assert compatibility != QoSCompatibility.ERROR, reason


def test_the_check_catches_the_pairs_that_would_not_match():
    # The test above can fail: a reliable reader of a best-effort stream, a latched
    # reader of a volatile one.
    assert qos_check_compatible(SENSOR_QOS, STATE_QOS)[0] == QoSCompatibility.ERROR
    assert qos_check_compatible(COMMAND_QOS, LATCHED_QOS)[0] == QoSCompatibility.ERROR
    # a reliable tracker cannot read a camera driver's best-effort stream
    assert qos_check_compatible(SENSOR_QOS, IMAGE_SUB_QOS["reliable"])[0] == \
        QoSCompatibility.ERROR
