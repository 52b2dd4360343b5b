"""Babbling datasets and their rosbag2 (MCAP) files, in pure Python.

A dataset is N samples of (q, x): full joint positions ``q: (N, n) rad`` and
the task state ``x: (N, m)`` (m or px), grouped into trajectories. On disk it
is a rosbag2 directory (``metadata.yaml`` + one ``.mcap`` file) that
``ros2 bag info/play`` and Foxglove open, written and read with the
``rosbags`` library so that no ROS installation is needed.

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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "JOINT_STATES_TOPIC",
    "TASK_STATE_MSG",
    "TASK_STATE_TOPIC",
    "TRAJECTORY_START_TOPIC",
    "Dataset",
    "DatasetError",
    "file_hash",
    "read_bag",
    "write_bag",
]

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
_TASK_STATE_V1_MSG = TASK_STATE_MSG.replace("float64[] velocity\n", "")
_TASK_STATE_V1_TYPE = "uvs_interfaces/msg/TaskStateV1"

Progress = Callable[[int, int], None]

_NS = 1_000_000_000
_PROGRESS_EVERY = 5000  # samples (write) or messages (read) between progress calls


class DatasetError(Exception):
    """A bag cannot be read or written; the message names the file and the cause."""


@dataclass
class Dataset:
    """Babbling samples, in time order.

    Attributes:
        q: (N, n) rad, full joint positions.
        x: (N, m) task state, units of the task (m or px).
        traj: (N,) int64 trajectory id, 0-based, non-decreasing.
        stamps: (N,) int64 ns, strictly increasing within the dataset.
        joint_names: (n,) names of the columns of q.
        task: task name (see ``uvs_core.tasks.TASK_NAMES``).
        labels: (m,) names of the columns of x (may be empty).
        robot: robot name the data was recorded on.
        commands: optional (N, n) rad/s, the command sent after each sample (robot
            joint order); NaN rows where none was (a trajectory's last sample).
        targets: optional (N, m), the servo babbler's target at each sample.
    """

    q: np.ndarray
    x: np.ndarray
    traj: np.ndarray
    stamps: np.ndarray
    joint_names: list[str]
    task: str
    labels: list[str] = field(default_factory=list)
    robot: str = "gen3"
    commands: np.ndarray | None = None
    targets: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.q = np.asarray(self.q, dtype=np.float64)
        self.x = np.asarray(self.x, dtype=np.float64)
        self.traj = np.asarray(self.traj, dtype=np.int64)
        self.stamps = np.asarray(self.stamps, dtype=np.int64)
        self.joint_names = [str(name) for name in self.joint_names]
        self.labels = [str(label) for label in self.labels]
        if self.q.ndim != 2 or self.x.ndim != 2:
            raise ValueError(f"q and x must be 2-D, got q {self.q.shape} and x {self.x.shape}")
        count = self.q.shape[0]
        if self.x.shape[0] != count or self.traj.shape != (count,) or self.stamps.shape != (count,):
            raise ValueError(
                f"sample counts differ: q {self.q.shape}, x {self.x.shape}, "
                f"traj {self.traj.shape}, stamps {self.stamps.shape}"
            )
        if len(self.joint_names) != self.q.shape[1]:
            raise ValueError(
                f"{len(self.joint_names)} joint_names for {self.q.shape[1]} columns of q"
            )
        if self.labels and len(self.labels) != self.x.shape[1]:
            raise ValueError(f"{len(self.labels)} labels for {self.x.shape[1]} columns of x")
        for name, width in (("commands", self.q.shape[1]), ("targets", self.x.shape[1])):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape != (count, width):
                    raise ValueError(f"{name} must have shape ({count}, {width}), "
                                     f"got {value.shape}")
                setattr(self, name, value)

    def __len__(self) -> int:
        return int(self.q.shape[0])


@lru_cache(maxsize=1)
def _typestore():
    """ROS 2 typestore with uvs_interfaces/msg/TaskState registered (built once)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    # Newest ROS 2 store this rosbags knows (the enum lists distributions in
    # release order); the message types used here are the same in all of them.
    newest = [store for store in Stores if store.name.startswith("ROS2_")][-1]
    store = get_typestore(newest)
    store.register(get_types_from_msg(TASK_STATE_MSG, TASK_STATE_TYPE))
    store.register(get_types_from_msg(_TASK_STATE_V1_MSG, _TASK_STATE_V1_TYPE))
    return store


def _check_writable(dataset: Dataset) -> None:
    if len(dataset) == 0:
        raise ValueError("dataset has no samples; nothing to write")
    stamps = dataset.stamps
    if stamps[0] < 0 or stamps[-1] >= 2**31 * _NS:
        raise ValueError("stamps must be in [0, 2**31) s to fit builtin_interfaces/Time")
    if np.any(np.diff(stamps) <= 0):
        raise ValueError("stamps must be strictly increasing (samples are paired by stamp)")
    if np.any(np.diff(dataset.traj) < 0) or dataset.traj[0] < 0 or dataset.traj[-1] >= 2**32:
        raise ValueError("traj must be non-negative, non-decreasing and fit a uint32")


def _remove_stale_partials(parent: Path, name: str) -> None:
    """Delete ``.<name>.partial-<pid>`` dirs left by runs that were killed."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(?:partial|old)-(\d+)$")
    for entry in parent.glob(f".{name}.*-*"):
        match = pattern.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass  # pid alive under another user: not ours to delete


def write_bag(
    path: str | os.PathLike,
    dataset: Dataset,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``dataset`` as a rosbag2 directory with MCAP storage, atomically.

    The bag is written into a hidden sibling ``.<name>.partial-<pid>`` and
    renamed to ``path`` only when complete, so an interrupted run never
    leaves a directory at ``path``.

    Args:
        path: bag directory to create.
        dataset: samples to write; stamps strictly increasing.
        progress: optional ``callable(done, total)`` in samples.
        overwrite: replace an existing ``path`` instead of failing.

    Returns:
        The bag directory.

    Raises:
        DatasetError: ``path`` exists and ``overwrite`` is false, or writing failed.
        ValueError: the dataset cannot be written (empty, unordered stamps).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.errors import WriterError

    final = Path(path).absolute()
    _check_writable(dataset)
    if final.exists() and not overwrite:
        raise DatasetError(f"{final} exists already; pass overwrite=True to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final.parent, final.name)

    # The bag goes in a subdirectory named like the final bag, so the .mcap
    # file inside is <name>.mcap and the move is one rename of a sibling.
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        bag_dir = staging / final.name
        try:
            _write_messages(Writer, StoragePlugin, bag_dir, dataset, progress)
        except (WriterError, OSError) as err:
            raise DatasetError(f"{final}: cannot write bag: {err}") from err
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(bag_dir, final)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(bag_dir, final)
    finally:
        # On success only the empty staging dir is left; on failure the partial bag.
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _write_messages(writer_cls, storage_plugin, bag_dir: Path, dataset: Dataset, progress):
    store = _typestore()
    types = store.types
    time_t = types["builtin_interfaces/msg/Time"]
    header_t = types["std_msgs/msg/Header"]
    joint_state_t = types[JOINT_STATE_TYPE]
    task_state_t = types[TASK_STATE_TYPE]
    uint32_t = types[UINT32_TYPE]
    array_t = types[ARRAY_TYPE]
    layout_t = types["std_msgs/msg/MultiArrayLayout"]

    count = len(dataset)
    names = list(dataset.joint_names)
    labels = list(dataset.labels)
    empty = np.empty(0, dtype=np.float64)
    q = np.ascontiguousarray(dataset.q)
    x = np.ascontiguousarray(dataset.x)
    stamps = dataset.stamps.tolist()
    traj = dataset.traj.tolist()
    starts = np.flatnonzero(np.r_[True, dataset.traj[1:] != dataset.traj[:-1]])
    is_start = np.zeros(count, dtype=bool)
    is_start[starts] = True
    is_start = is_start.tolist()

    writer = writer_cls(bag_dir, version=9, storage_plugin=storage_plugin.MCAP)
    writer.set_custom_data("uvs.robot", dataset.robot)
    writer.set_custom_data("uvs.task", dataset.task)
    writer.set_custom_data("uvs.labels", json.dumps(labels))
    writer.set_custom_data("uvs.joint_names", json.dumps(names))
    writer.set_custom_data("uvs.samples", str(count))
    writer.set_custom_data("uvs.trajectories", str(len(starts)))
    with writer:
        start_conn = writer.add_connection(TRAJECTORY_START_TOPIC, UINT32_TYPE, typestore=store)
        joint_conn = writer.add_connection(JOINT_STATES_TOPIC, JOINT_STATE_TYPE, typestore=store)
        task_conn = writer.add_connection(TASK_STATE_TOPIC, TASK_STATE_TYPE, typestore=store)
        command_conn = target_conn = None
        if dataset.commands is not None:
            command_conn = writer.add_connection(COMMAND_TOPIC, ARRAY_TYPE, typestore=store)
        if dataset.targets is not None:
            target_conn = writer.add_connection(TARGET_TOPIC, TASK_STATE_TYPE, typestore=store)
        write = writer.write
        serialize = store.serialize_cdr
        # One pair of message objects reused for every sample: only the
        # header and the position arrays change.
        joint_msg = joint_state_t(
            header=header_t(stamp=time_t(sec=0, nanosec=0), frame_id=""),
            name=names,
            position=empty,
            velocity=empty,
            effort=empty,
        )
        task_msg = task_state_t(
            header=header_t(stamp=time_t(sec=0, nanosec=0), frame_id=""),
            task=dataset.task,
            position=empty,
            labels=labels,
            valid=True,
            velocity=empty,
        )
        for i in range(count):
            stamp = stamps[i]
            header = header_t(stamp=time_t(sec=stamp // _NS, nanosec=stamp % _NS), frame_id="")
            if is_start[i]:
                write(start_conn, stamp, serialize(uint32_t(data=traj[i]), UINT32_TYPE))
            joint_msg.header = header
            joint_msg.position = q[i]
            write(joint_conn, stamp, serialize(joint_msg, JOINT_STATE_TYPE))
            task_msg.header = header
            task_msg.position = x[i]
            write(task_conn, stamp, serialize(task_msg, TASK_STATE_TYPE))
            if command_conn is not None and np.all(np.isfinite(dataset.commands[i])):
                command = array_t(layout=layout_t(dim=[], data_offset=0),
                                  data=np.ascontiguousarray(dataset.commands[i]))
                write(command_conn, stamp, serialize(command, ARRAY_TYPE))
            if target_conn is not None:
                task_msg.position = np.ascontiguousarray(dataset.targets[i])
                write(target_conn, stamp, serialize(task_msg, TASK_STATE_TYPE))
            if progress is not None and (i + 1) % _PROGRESS_EVERY == 0:
                progress(i + 1, count)
    if progress is not None:
        progress(count, count)


def _metadata_count(bag: Path) -> int | None:
    """Total message count that metadata.yaml promises, if it can be read."""
    from ruamel.yaml import YAML, YAMLError  # a dependency of rosbags

    try:
        info = YAML(typ="safe").load((bag / "metadata.yaml").read_text())
        return int(info["rosbag2_bagfile_information"]["message_count"])
    except (OSError, YAMLError, KeyError, TypeError, ValueError):
        return None


def _count_readable(mcap: Path) -> tuple[int, str]:
    """Count the messages of an MCAP file readable from its start, record by record.

    Used only to report how much of a damaged file survives. Returns
    ``(count, reason the scan stopped)``.
    """
    try:
        data = mcap.read_bytes()
    except OSError as err:
        return 0, str(err)
    if data[:8] != b"\x89MCAP0\r\n":
        return 0, "not an MCAP file (bad magic)"
    count = 0
    pos = 8
    end = len(data)
    while pos < end:
        if pos + 9 > end:
            return count, f"truncated record header at byte {pos:,}"
        opcode = data[pos]
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        body_start = pos + 9
        if body_start + length > end:
            return count, f"record at byte {pos:,} truncated ({length:,} bytes announced)"
        if opcode == 0x05:
            count += 1
        elif opcode == 0x06:
            inner = _chunk_records(data, body_start, length)
            if inner is None:
                return count, f"unreadable chunk at byte {pos:,}"
            count += inner
        elif opcode == 0x02:  # footer: the file is complete
            return count, "end of file"
        pos = body_start + length
    return count, f"file ends at byte {end:,} without an MCAP footer"


def _chunk_records(data: bytes, start: int, length: int) -> int | None:
    """Number of message records in one MCAP chunk, or None if it cannot be decoded."""
    try:
        _, _, raw_size, _, comp_len = struct.unpack_from("<QQQII", data, start)
        compression = data[start + 32 : start + 32 + comp_len].decode()
        (records_len,) = struct.unpack_from("<Q", data, start + 32 + comp_len)
        body = data[start + 40 + comp_len : start + 40 + comp_len + records_len]
        if compression:
            from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

            body = DECOMPRESSORS[compression](body, raw_size)
    except Exception:  # noqa: BLE001 - any parse or decompressor failure means "unreadable"
        return None
    count = 0
    pos = 0
    while pos + 9 <= len(body):
        (size,) = struct.unpack_from("<Q", body, pos + 1)
        count += body[pos] == 0x05
        pos += 9 + size
    return count


def _damaged(
    bag: Path, mcaps: list[Path], read: int, reason: str, total: int | None = None
) -> DatasetError:
    """DatasetError for a bag that fails part way, with how much was readable."""
    if total is None and bag.is_dir():
        total = _metadata_count(bag)
    total_text = f"{total:,}" if total is not None else "?"
    name = mcaps[0] if len(mcaps) == 1 else bag
    if read == 0 and mcaps:
        # The library gave up before the first message; count what survives.
        salvaged = 0
        reasons = []
        for mcap in mcaps:
            readable, why = _count_readable(mcap)
            salvaged += readable
            reasons.append(why)
        return DatasetError(
            f"{name}: corrupt or truncated bag: {salvaged:,} of {total_text} messages "
            f"readable before: {reason} ({'; '.join(reasons)})"
        )
    return DatasetError(
        f"{name}: corrupt or truncated bag: read {read:,} of {total_text} messages before: {reason}"
    )


def _pick_topic(topics: dict, topic: str, msgtype: str) -> str | None:
    """The topic to read: ``topic`` itself, else one namespaced copy of it."""
    if topic in topics and topics[topic].msgtype == msgtype:
        return topic
    matches = [
        name for name, info in topics.items() if name.endswith(topic) and info.msgtype == msgtype
    ]
    return matches[0] if len(matches) == 1 else None


def read_bag(path: str | os.PathLike, progress: Progress | None = None) -> Dataset:
    """Read a babbling bag written by :func:`write_bag` or the babbler node.

    ``/joint_states`` and ``/task_state`` messages are paired by identical
    ``header.stamp``; samples missing one of the two (or with an invalid task
    state) are dropped with a ``RuntimeWarning`` giving the count. Trajectory
    ids come from ``/babble/trajectory_start``: samples before the first
    marker belong to trajectory 0; without markers all samples are one
    trajectory.

    Args:
        path: rosbag2 directory (or a bare ``.mcap`` file).
        progress: optional ``callable(done, total)`` in messages.

    Returns:
        The dataset, samples sorted by stamp.

    Raises:
        DatasetError: missing path, not a bag, damaged file, or missing topics.
    """
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError
    from rosbags.serde import SerdeError

    # What the library raises on damaged bytes: its own errors, and the plain
    # ones its parsers hit on garbage lengths and offsets (a corrupt 64-bit
    # record length makes it try to read, hence allocate, that many bytes).
    damage_errors = (
        MemoryError,
        ReaderError,
        SerdeError,
        OSError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        OverflowError,
        EOFError,
        struct.error,
    )
    bag = Path(path)
    if not bag.exists():
        raise DatasetError(f"{bag}: no such bag (path does not exist)")
    if bag.is_dir():
        if not (bag / "metadata.yaml").is_file():
            raise DatasetError(f"{bag}: not a rosbag2 directory (no metadata.yaml)")
        mcaps = sorted(bag.glob("*.mcap"))
    else:
        mcaps = [bag]

    read = 0
    try:
        reader = Reader(bag)
        reader.open()
    except damage_errors as err:
        raise _damaged(bag, mcaps, 0, str(err) or type(err).__name__) from err
    try:
        topics = reader.topics
        chosen = {
            "joint": _pick_topic(topics, JOINT_STATES_TOPIC, JOINT_STATE_TYPE),
            "task": _pick_topic(topics, TASK_STATE_TOPIC, TASK_STATE_TYPE),
            "start": _pick_topic(topics, TRAJECTORY_START_TOPIC, UINT32_TYPE),
            "command": _pick_topic(topics, COMMAND_TOPIC, ARRAY_TYPE),
            "target": _pick_topic(topics, TARGET_TOPIC, TASK_STATE_TYPE),
        }
        missing = [
            f"{topic} ({msgtype})"
            for key, topic, msgtype in (
                ("joint", JOINT_STATES_TOPIC, JOINT_STATE_TYPE),
                ("task", TASK_STATE_TOPIC, TASK_STATE_TYPE),
            )
            if chosen[key] is None
        ]
        if missing:
            present = ", ".join(f"{name} ({info.msgtype})" for name, info in topics.items())
            raise DatasetError(
                f"{bag}: not a uvs dataset bag: missing {' and '.join(missing)}; "
                f"topics present: {present or 'none'}"
            )
        custom = getattr(reader.storage.metadata, "custom", None) or {}
        state = _Collector(bag, progress, sum(topics[t].msgcount for t in chosen.values() if t))
        connections = [c for c in reader.connections if c.topic in chosen.values()]
        try:
            for connection, timestamp, raw in reader.messages(connections=connections):
                state.add(connection.topic, chosen, timestamp, raw)
                read += 1
        except DatasetError:
            raise
        except damage_errors as err:
            reason = str(err) or type(err).__name__
            raise _damaged(bag, mcaps, read, reason, state.total) from err
    finally:
        with contextlib.suppress(ReaderError, OSError):
            reader.close()
    return state.build(robot=str(custom.get("uvs.robot", "gen3")))


class _Collector:
    """Accumulates deserialized messages of one bag and pairs them into a Dataset."""

    def __init__(self, bag: Path, progress: Progress | None, total: int) -> None:
        store = _typestore()
        self.bag = bag
        self.progress = progress
        self.total = total
        self.seen = 0
        self.deserialize = store.deserialize_cdr
        self.joint_stamps: list[int] = []
        self.joint_pos: list[np.ndarray] = []
        self.task_stamps: list[int] = []
        self.task_pos: list[np.ndarray] = []
        self.invalid = 0
        self.start_stamps: list[int] = []
        self.start_ids: list[int] = []
        self.extras: dict[str, dict[int, np.ndarray]] = {}   # "command"/"target": stamp -> row
        self.names: list[str] | None = None
        self.task: str | None = None
        self.labels: list[str] = []

    def _task_state(self, raw: bytes):
        """A TaskState, with or without the velocity field (bags of either age)."""
        try:
            return self.deserialize(raw, TASK_STATE_TYPE)
        except Exception:  # noqa: BLE001 - rosbags raises several types on a short buffer
            return self.deserialize(raw, _TASK_STATE_V1_TYPE)

    def add(self, topic: str, chosen: dict, timestamp: int, raw: bytes) -> None:
        if topic == chosen["joint"]:
            msg = self.deserialize(raw, JOINT_STATE_TYPE)
            stamp = msg.header.stamp
            position = msg.position
            if self.names is None:
                self.names = list(msg.name)
            elif msg.name != self.names:
                position = self._reorder(msg.name, position)
            if len(position) != len(self.names):
                raise DatasetError(
                    f"{self.bag}: JointState at {timestamp} ns has {len(position)} positions "
                    f"for {len(self.names)} joints"
                )
            self.joint_stamps.append(stamp.sec * _NS + stamp.nanosec)
            self.joint_pos.append(position)
        elif topic == chosen["task"]:
            msg = self._task_state(raw)
            if not msg.valid:
                self.invalid += 1
            else:
                if self.task is None:
                    self.task = msg.task
                    self.labels = list(msg.labels)
                elif msg.task != self.task:
                    raise DatasetError(
                        f"{self.bag}: TaskState at {timestamp} ns is task {msg.task!r}, "
                        f"earlier ones {self.task!r}; one bag holds one task"
                    )
                stamp = msg.header.stamp
                self.task_stamps.append(stamp.sec * _NS + stamp.nanosec)
                self.task_pos.append(msg.position)
        elif topic == chosen["command"]:
            msg = self.deserialize(raw, ARRAY_TYPE)
            self.extras.setdefault("command", {})[timestamp] = np.asarray(msg.data, float)
        elif topic == chosen["target"]:
            msg = self._task_state(raw)
            stamp = msg.header.stamp.sec * _NS + msg.header.stamp.nanosec
            self.extras.setdefault("target", {})[stamp] = np.asarray(msg.position, float)
        else:
            msg = self.deserialize(raw, UINT32_TYPE)
            self.start_stamps.append(timestamp)
            self.start_ids.append(int(msg.data))
        self.seen += 1
        if self.progress is not None and self.seen % _PROGRESS_EVERY == 0:
            self.progress(self.seen, self.total)

    def _reorder(self, names: list[str], position: np.ndarray) -> np.ndarray:
        if sorted(names) != sorted(self.names) or len(names) != len(position):
            raise DatasetError(
                f"{self.bag}: JointState names change within the bag: {names} vs {self.names}"
            )
        index = {name: i for i, name in enumerate(names)}
        return position[[index[name] for name in self.names]]

    def _stack(self, rows: list[np.ndarray], what: str) -> np.ndarray:
        widths = {len(row) for row in rows}
        if len(widths) > 1:
            raise DatasetError(f"{self.bag}: {what} positions vary in length: {sorted(widths)}")
        return np.array(rows, dtype=np.float64)

    def build(self, robot: str) -> Dataset:
        if self.progress is not None:
            self.progress(self.seen, self.total)
        joint_stamps = np.asarray(self.joint_stamps, dtype=np.int64)
        task_stamps = np.asarray(self.task_stamps, dtype=np.int64)
        common, ji, ti = np.intersect1d(joint_stamps, task_stamps, return_indices=True)
        if common.size == 0:
            raise DatasetError(
                f"{self.bag}: no sample has both a JointState and a valid TaskState with "
                f"the same stamp ({len(joint_stamps):,} JointState, {len(task_stamps):,} "
                f"valid TaskState, {self.invalid:,} invalid TaskState)"
            )
        dropped_joint = len(joint_stamps) - common.size
        dropped_task = len(task_stamps) - common.size
        if dropped_joint or dropped_task or self.invalid:
            warnings.warn(
                f"{self.bag}: dropped {dropped_joint:,} JointState and {dropped_task:,} "
                f"TaskState messages without a partner of the same stamp, and "
                f"{self.invalid:,} TaskState messages with valid=False; "
                f"{common.size:,} samples kept",
                RuntimeWarning,
                stacklevel=3,
            )
        q = self._stack(self.joint_pos, "JointState")[ji]
        x = self._stack(self.task_pos, "TaskState")[ti]
        extras = {}
        for key, width in (("command", q.shape[1]), ("target", x.shape[1])):
            rows = self.extras.get(key)
            if rows:
                table = np.full((common.size, width), np.nan)
                for i, stamp in enumerate(common.tolist()):
                    row = rows.get(stamp)
                    if row is not None and row.shape == (width,):
                        table[i] = row
                extras[key + "s"] = table
        return Dataset(
            q=q,
            x=x,
            traj=self._trajectories(common),
            stamps=common,
            joint_names=list(self.names or []),
            task=self.task or "",
            labels=self.labels,
            robot=robot,
            **extras,
        )

    def _trajectories(self, stamps: np.ndarray) -> np.ndarray:
        """(N,) int64 trajectory id of each sample from the start markers."""
        if not self.start_stamps:
            return np.zeros(stamps.shape, dtype=np.int64)
        order = np.argsort(np.asarray(self.start_stamps, dtype=np.int64), kind="stable")
        marker_stamps = np.asarray(self.start_stamps, dtype=np.int64)[order]
        marker_ids = np.asarray(self.start_ids, dtype=np.int64)[order]
        # Marker k covers samples from its stamp to the next marker's.
        which = np.searchsorted(marker_stamps, stamps, side="right") - 1
        before_first = which < 0
        if np.all(np.diff(marker_ids) > 0):
            # Keep the recorded indices (they survive a round trip); samples
            # before the first marker are trajectory 0, ahead of the markers.
            shift = 1 if before_first.any() and marker_ids[0] == 0 else 0
            ids = np.where(before_first, 0, marker_ids[np.maximum(which, 0)] + shift)
        else:
            # Indices restart (e.g. two babbling runs in one bag): number in order.
            ids = which + 1
            ids = np.unique(ids, return_inverse=True)[1]
        return ids.astype(np.int64)


def file_hash(path: str | os.PathLike) -> str:
    """sha256 hex digest of a bag's data files, for model metadata.

    Hashes the storage files (``.mcap``/``.db3``, by sorted name) of a
    rosbag2 directory, or the file itself when ``path`` is a file; not
    ``metadata.yaml``, which rosbag2 tools may rewrite.

    Raises:
        DatasetError: path missing or the directory holds no data files.
    """
    bag = Path(path)
    if bag.is_file():
        files = [bag]
    elif bag.is_dir():
        files = sorted(
            p for p in bag.iterdir() if p.is_file() and p.suffix in {".mcap", ".db3", ".zstd"}
        )
        if not files:
            raise DatasetError(f"{bag}: no bag data files (.mcap/.db3) to hash")
    else:
        raise DatasetError(f"{bag}: no such bag (path does not exist)")
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as stream:
            for block in iter(lambda s=stream: s.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
