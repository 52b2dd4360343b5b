"""ROS 2 helpers shared by the uvs nodes (rclpy only; no torch).

``run_node`` (uvs_ros.run) is loaded on first use, so the plain-Python parts
(uvs_ros.params specs, uvs_ros.qos names aside) import without rclpy.
"""

__all__ = ["SHUTDOWN_SIGNALS", "run_node"]


def __getattr__(name: str):
    if name in __all__:
        from uvs_ros import run

        return getattr(run, name)
    raise AttributeError(f"module 'uvs_ros' has no attribute {name!r}")
