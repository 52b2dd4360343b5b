"""Reading a babbling bag (rosbag2 directory or bare MCAP file) into a ``Dataset``, with
a diagnosis of damaged files (how many messages survive, where the scan stopped). The
schema is ``uvs_core.bag_schema``; callers use ``uvs_core.dataset.read_bag``, the same
function."""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uvs_core.bag_schema import (
    ARRAY_TYPE,
    COMMAND_TOPIC,
    JOINT_STATE_TYPE,
    JOINT_STATES_TOPIC,
    NS_PER_S,
    PROGRESS_EVERY,
    TARGET_TOPIC,
    TASK_STATE_TOPIC,
    TASK_STATE_TYPE,
    TASK_STATE_V1_TYPE,
    TRAJECTORY_START_TOPIC,
    UINT32_TYPE,
    DatasetError,
    Progress,
    typestore,
)

if TYPE_CHECKING:
    from uvs_core.dataset import Dataset


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
        store = typestore()
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
            return self.deserialize(raw, TASK_STATE_V1_TYPE)

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
            self.joint_stamps.append(stamp.sec * NS_PER_S + stamp.nanosec)
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
                self.task_stamps.append(stamp.sec * NS_PER_S + stamp.nanosec)
                self.task_pos.append(msg.position)
        elif topic == chosen["command"]:
            msg = self.deserialize(raw, ARRAY_TYPE)
            self.extras.setdefault("command", {})[timestamp] = np.asarray(msg.data, float)
        elif topic == chosen["target"]:
            msg = self._task_state(raw)
            stamp = msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec
            self.extras.setdefault("target", {})[stamp] = np.asarray(msg.position, float)
        else:
            msg = self.deserialize(raw, UINT32_TYPE)
            self.start_stamps.append(timestamp)
            self.start_ids.append(int(msg.data))
        self.seen += 1
        if self.progress is not None and self.seen % PROGRESS_EVERY == 0:
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
        # Imported here: uvs_core.dataset imports this module to re-export read_bag.
        from uvs_core.dataset import Dataset

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
