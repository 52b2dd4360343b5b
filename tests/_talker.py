"""Publisher process for tests/test_ros_foundation.py: sends std_msgs/Int64 0..N-1.

Usage: python tests/_talker.py TOPIC COUNT
Waits (with a deadline) for a subscriber, publishes COUNT messages reliably,
waits until all are acknowledged, then exits 0; exits 3 if nobody subscribed.
"""

import sys
import time

import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Int64


def main() -> int:
    topic, count = sys.argv[1], int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("uvs_test_talker")
    try:
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=count, reliability=ReliabilityPolicy.RELIABLE
        )
        pub = node.create_publisher(Int64, topic, qos)
        deadline = time.monotonic() + 20.0
        while pub.get_subscription_count() < 1:
            if time.monotonic() > deadline:
                node.get_logger().error(f"no subscriber on {topic} within 20 s")
                return 3
            time.sleep(0.01)
        for i in range(count):
            pub.publish(Int64(data=i))
            time.sleep(0.0005)
        if not pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10.0)):
            node.get_logger().error("not all messages were acknowledged within 10 s")
            return 4
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
