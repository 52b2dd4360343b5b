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


@pytest.fixture
def ros_graph(ros_context):
    """``(executor, make)`` for in-process node tests: a SingleThreadedExecutor of the test's
    context with ``executor.spin_until(condition, timeout=30.0, every=None) -> bool`` (spin
    until ``condition()`` holds, calling ``every()`` between spins; False at the deadline),
    and ``make(factory, *args, **kwargs)``, a node made in that context, not yet added to
    the executor. Every node is destroyed and the executor shut down afterwards."""
    import time

    from rclpy.executors import SingleThreadedExecutor

    class Executor(SingleThreadedExecutor):
        def spin_until(self, condition, timeout: float = 30.0, every=None) -> bool:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    return False
                if every is not None:
                    every()
                self.spin_once(timeout_sec=0.02)
            return True

    executor = Executor(context=ros_context)
    nodes = []

    def make(factory, *args, **kwargs):
        node = factory(*args, context=ros_context, **kwargs)
        nodes.append(node)
        return node

    try:
        yield executor, make
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
