"""Writing a babbling ``Dataset`` as a rosbag2 (MCAP) directory, atomically, with
``rosbags`` (no ROS installation). The schema is ``uvs_core.bag_schema``; callers use
``uvs_core.dataset.write_bag``, the same function."""

from __future__ import annotations

import json
import os
import re
import shutil
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
    TRAJECTORY_START_TOPIC,
    UINT32_TYPE,
    DatasetError,
    Progress,
    typestore,
)

if TYPE_CHECKING:
    from uvs_core.dataset import Dataset


def _check_writable(dataset: Dataset) -> None:
    if len(dataset) == 0:
        raise ValueError("dataset has no samples; nothing to write")
    stamps = dataset.stamps
    if stamps[0] < 0 or stamps[-1] >= 2**31 * NS_PER_S:
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
    store = typestore()
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
            header = header_t(stamp=time_t(sec=stamp // NS_PER_S, nanosec=stamp % NS_PER_S),
                              frame_id="")
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
            if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
                progress(i + 1, count)
    if progress is not None:
        progress(count, count)
