"""Babbling datasets and their rosbag2 (MCAP) files, in pure Python.

A dataset is N samples of (q, x): full joint positions ``q: (N, n) rad`` and
the task state ``x: (N, m)`` (m or px), grouped into trajectories. On disk it
is a rosbag2 directory (``metadata.yaml`` + one ``.mcap`` file) that
``ros2 bag info/play`` and Foxglove open, written and read with the
``rosbags`` library so that no ROS installation is needed.

The bag schema (the topics, their message types, how a sample is paired by stamp) is
written down in ``uvs_core.bag_schema``.

This module is the public face: ``Dataset`` and ``file_hash`` live here, the schema in
``uvs_core.bag_schema``, ``write_bag`` in ``uvs_core.bag_writer`` and ``read_bag`` in
``uvs_core.bag_reader``, all re-exported here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uvs_core.bag_reader import read_bag
from uvs_core.bag_schema import (
    JOINT_STATES_TOPIC,
    TASK_STATE_MSG,
    TASK_STATE_TOPIC,
    TRAJECTORY_START_TOPIC,
    DatasetError,
)
from uvs_core.bag_writer import write_bag

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
