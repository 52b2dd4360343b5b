"""A node process for test_run_node.py: python _node_main.py MODE [TOPIC]

MODE: spin (publishes on TOPIC at 100 Hz, publishes "last" in on_shutdown),
fatal (raises ValueError while being built), finish (its job ends with exit code 3),
crash (a timer callback raises ZeroDivisionError).
"""

import sys
import threading

from rclpy.node import Node
from std_msgs.msg import String

from uvs_ros import run_node


class Talker(Node):
    def __init__(self, mode: str, topic: str):
        super().__init__("run_node_talker")
        if mode == "fatal":
            raise ValueError("talker: parameter 'rate' must be > 0; got -1")
        self.mode = mode
        self.pub = self.create_publisher(String, topic, 10)
        self.count = 0
        self.finished = threading.Event() if mode == "finish" else None
        self.exit_code = 3
        self.create_timer(0.01, self._tick)

    def _tick(self) -> None:
        self.count += 1
        if self.mode == "crash" and self.count == 5:
            raise ZeroDivisionError("division by zero in a callback")
        if self.finished is not None and self.count == 20:
            self.finished.set()
        self.pub.publish(String(data=f"tick {self.count}"))

    def on_shutdown(self) -> None:
        self.pub.publish(String(data="last"))
        from rclpy.duration import Duration

        self.pub.wait_for_all_acked(Duration(seconds=2.0))


if __name__ == "__main__":
    mode = sys.argv[1]
    topic = sys.argv[2] if len(sys.argv) > 2 else "run_node_test"
    if mode != "finish":
        Talker.finished = None
    raise SystemExit(run_node(lambda: Talker(mode, topic), "talker"))
