"""Built-in rosbag2 recorder for machines without `ros2 bag`.

`uvs servo --record` runs it in process; the ``record`` executable
(``ros2 run uvs_bringup record``) is what ``servo.launch.py record:=true`` starts where
`ros2 bag` is not installed.

Subscribes to topics with raw (serialized CDR) callbacks and writes the bytes
as they arrived into a rosbag2 bag with MCAP storage via `rosbags`, so
`ros2 bag info/play` and Foxglove read it. Message definitions of the
standard types come from rosbags' typestore; uvs_interfaces types are
registered from the .msg files the package installs.
"""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path

from rclpy.node import Node

from uvs_core.paths import installed_dir
from uvs_ros.qos import RECORD_QOS


def _typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.LATEST)
    msg_dir = installed_dir("interfaces")
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"uvs_interfaces/msg/{path.stem}"))
    store.register(types)
    return store


class BagRecorder(Node):
    """Records `topics` (name -> ROS type class) into `path` until close()."""

    def __init__(self, path: Path, topics: dict, node_name: str = "uvs_recorder", **kwargs):
        super().__init__(node_name, **kwargs)
        self._open(path, topics)

    def _open(self, path: Path, topics: dict) -> None:
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


def recorder_spec():
    """The recorder's parameters (uvs_ros.params.ParamSpec); config/recorder.yaml is
    checked against them."""
    from uvs_bringup.graph import SERVO_TOPICS, TOPIC_TYPES
    from uvs_ros.params import Param, ParamSpec, non_empty

    def known_topics(name: str, topics) -> str | None:
        unknown = [t for t in topics if t not in TOPIC_TYPES]
        if unknown:
            return (f"no known type for topic(s) {', '.join(unknown)}; "
                    f"known: {', '.join(TOPIC_TYPES)}")
        return None

    return ParamSpec({
        "output": Param("uvs_servo_bag", "bag directory to write (rosbag2, MCAP); must "
                        "not exist", read_only=True, checks=(non_empty,)),
        "topics": Param(list(SERVO_TOPICS), "topics to record: " + ", ".join(TOPIC_TYPES),
                        read_only=True, checks=(known_topics,)),
    })


class RecorderNode(BagRecorder):
    """Node ``recorder``: records the topics of parameter ``topics`` (the graph's, by
    default) into the bag ``output`` (rosbag2, MCAP) until shutdown.

    Parameters (read-only): ``output`` (bag directory; must not exist), ``topics``
    (names from uvs_bringup.graph.TOPIC_TYPES).
    """

    def __init__(self, **kwargs):
        from uvs_bringup.graph import TOPIC_TYPES

        Node.__init__(self, "recorder", **kwargs)
        values = recorder_spec().declare(self)
        output = Path(values["output"]).expanduser()
        topics = list(values["topics"])
        if output.exists():
            raise ValueError(f"recorder: {output} exists; choose a new bag path")
        self._open(output, {t: message_class(TOPIC_TYPES[t]) for t in topics})
        self.get_logger().info(f"recording {len(topics)} topics to {output} (MCAP)")

    def on_shutdown(self) -> None:
        """The graph stops with us: take the messages still arriving (the driver's last,
        zero-velocity state) until the topics are quiet, then close the bag."""
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(self)
        drain = threading.Thread(target=executor.spin, daemon=True)
        drain.start()
        try:
            wait_quiet(self, seconds=0.3)
        finally:
            executor.shutdown(timeout_sec=2.0)
            drain.join(timeout=2.0)
        path = self.close()
        self.get_logger().info(f"wrote {sum(self.counts.values())} messages to {path}")

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def main(args=None) -> int:
    from uvs_ros import run_node

    return run_node(RecorderNode, "recorder", args=args)


def message_class(type_name: str):
    """'sensor_msgs/msg/JointState' -> the generated class sensor_msgs.msg.JointState."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def wait_quiet(recorder: BagRecorder, seconds: float, limit: float = 5.0) -> None:
    """Let in-flight messages reach the recorder: wait until its counts stop moving for
    `seconds` (at most `limit` s)."""
    deadline = time.monotonic() + limit
    last = dict(recorder.counts)
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = dict(recorder.counts)
        if now == last:
            return
        last = now


def _type_name(msg_type) -> str:
    """sensor_msgs.msg.JointState -> 'sensor_msgs/msg/JointState'."""
    module = msg_type.__module__.split(".")
    return f"{module[0]}/{module[1]}/{msg_type.__name__}"
