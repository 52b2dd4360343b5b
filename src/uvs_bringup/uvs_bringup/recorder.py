"""Built-in rosbag2 recorder for machines without `ros2 bag`.

Subscribes to topics with raw (serialized CDR) callbacks and writes the bytes
as they arrived into a rosbag2 bag with MCAP storage via `rosbags`, so
`ros2 bag info/play` and Foxglove read it. Message definitions of the
standard types come from rosbags' typestore; uvs_interfaces types are
registered from the .msg files the package installs.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

# Reliable and deep enough that a burst while the writer is busy loses nothing.
RECORD_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE
)


def _typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.LATEST)
    try:
        from ament_index_python.packages import get_package_share_directory

        msg_dir = Path(get_package_share_directory("uvs_interfaces")) / "msg"
    except (ImportError, LookupError):
        msg_dir = Path(__file__).resolve().parents[2] / "uvs_interfaces" / "msg"
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"uvs_interfaces/msg/{path.stem}"))
    store.register(types)
    return store


class BagRecorder(Node):
    """Records `topics` (name -> ROS type class) into `path` until close()."""

    def __init__(self, path: Path, topics: dict, node_name: str = "uvs_recorder", **kwargs):
        super().__init__(node_name, **kwargs)
        from rosbags.rosbag2 import StoragePlugin, Writer

        self._path = Path(path)
        self._lock = threading.Lock()
        self._store = _typestore()
        self._writer = Writer(self._path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections = {}
        self.counts: dict[str, int] = {}
        for topic, msg_type in topics.items():
            type_name = _type_name(msg_type)
            self._connections[topic] = self._writer.add_connection(
                topic, type_name, typestore=self._store
            )
            self.counts[topic] = 0
            self.create_subscription(
                msg_type, topic, lambda data, t=topic: self._on_message(t, data), RECORD_QOS,
                raw=True,
            )

    def _on_message(self, topic: str, data: bytes) -> None:
        stamp = self.get_clock().now().nanoseconds
        with self._lock:
            if self._writer is None:
                return
            self._writer.write(self._connections[topic], stamp, data)
            self.counts[topic] += 1

    def close(self) -> Path:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return self._path


class TopicCounter(Node):
    """Counts the messages arriving on `topics`, with the recorder's QoS: a second,
    independent subscriber to check that the bag holds everything that was published."""

    def __init__(self, topics: dict, node_name: str = "uvs_topic_counter", **kwargs):
        super().__init__(node_name, **kwargs)
        self._lock = threading.Lock()
        self.counts = {topic: 0 for topic in topics}
        for topic, msg_type in topics.items():
            self.create_subscription(msg_type, topic, lambda _, t=topic: self._count(t),
                                     RECORD_QOS, raw=True)

    def _count(self, topic: str) -> None:
        with self._lock:
            self.counts[topic] += 1


def _type_name(msg_type) -> str:
    """sensor_msgs.msg.JointState -> 'sensor_msgs/msg/JointState'."""
    module = msg_type.__module__.split(".")
    return f"{module[0]}/{module[1]}/{msg_type.__name__}"
