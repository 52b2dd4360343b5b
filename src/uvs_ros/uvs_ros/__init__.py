"""ROS 2 helpers shared by the uvs nodes (rclpy only; no uvs_core, no torch)."""

from uvs_ros.run import SHUTDOWN_SIGNALS, run_node

__all__ = ["SHUTDOWN_SIGNALS", "run_node"]
