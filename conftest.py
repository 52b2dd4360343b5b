"""Shared pytest set-up for every test of the repository (packages and system tests).

DDS discovery reaches every process on the machine, so two test runs, or a test
and a running demo, would cross-talk on the same topic names. Each run keeps to
localhost and a domain id of its own, chosen before any test imports rclpy.
"""

import os
import random

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(100, 199)))

import pytest  # noqa: E402


@pytest.fixture
def ros_context():
    """A fresh, initialised rclpy Context per test, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)
