"""Tests of uvs_core.dataset (and its parts bag_schema, bag_writer, bag_reader): rosbag2
(MCAP) writing and reading of babbling data."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from uvs_core import bag_reader, bag_schema
from uvs_core.dataset import (
    JOINT_STATES_TOPIC,
    TASK_STATE_MSG,
    TASK_STATE_TOPIC,
    TRAJECTORY_START_TOPIC,
    Dataset,
    DatasetError,
    file_hash,
    read_bag,
    write_bag,
)

TASK_STATE_FILE = Path(__file__).resolve().parents[2] / "uvs_interfaces" / "msg" / "TaskState.msg"
JOINTS = [f"joint_{i}" for i in range(1, 8)]


def make_dataset(trajectories=3, length=50, n=7, m=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    count = trajectories * length
    return Dataset(
        q=rng.uniform(-np.pi, np.pi, size=(count, n)),
        x=rng.normal(size=(count, m)),
        traj=np.repeat(np.arange(trajectories), length),
        stamps=1_700_000_000_000_000_000 + np.arange(count, dtype=np.int64) * 50_000_000,
        joint_names=JOINTS[:n],
        task="single_point",
        labels=["x", "y", "z"][:m],
        robot="gen3",
    )


def assert_same(a: Dataset, b: Dataset) -> None:
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.traj, b.traj)
    np.testing.assert_array_equal(a.stamps, b.stamps)
    assert a.traj.dtype == np.int64 and a.stamps.dtype == np.int64
    assert a.joint_names == b.joint_names
    assert a.task == b.task
    assert a.labels == b.labels
    assert a.robot == b.robot


@pytest.fixture
def data() -> Dataset:
    return make_dataset()


@pytest.fixture
def bag(tmp_path, data) -> Path:
    return write_bag(tmp_path / "babble", data)


def write_raw_bag(path: Path, messages) -> None:
    """Write a bag by hand: messages = [(topic, msgtype, log_ns, msg), ...]."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = bag_schema.typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for topic, msgtype, stamp, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], stamp, store.serialize_cdr(msg, msgtype))


def joint_state(stamp: int, q, names=JOINTS):
    types = bag_schema.typestore().types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
        frame_id="base_link",
    )
    empty = np.empty(0)
    return types["sensor_msgs/msg/JointState"](
        header=header,
        name=list(names),
        position=np.asarray(q, float),
        velocity=empty,
        effort=empty,
    )


def task_state(stamp: int, x, valid=True):
    types = bag_schema.typestore().types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
        frame_id="base_link",
    )
    return types["uvs_interfaces/msg/TaskState"](
        header=header,
        task="single_point",
        position=np.asarray(x, float),
        labels=["x", "y", "z"],
        valid=valid,
        velocity=np.zeros(0),
    )


# -- round trip ---------------------------------------------------------------


def test_round_trip_equal(bag, data):
    assert bag.is_dir()
    assert_same(read_bag(bag), data)


def test_round_trip_keeps_non_consecutive_trajectory_ids(tmp_path):
    data = make_dataset()
    data.traj = np.repeat(np.array([0, 4, 9]), 50)
    back = read_bag(write_bag(tmp_path / "b", data))
    np.testing.assert_array_equal(back.traj, data.traj)


def test_round_trip_keeps_commands_and_targets(tmp_path):
    """The babbler's /babble/command (NaN rows: none sent) and /babble/target."""
    data = make_dataset()
    rng = np.random.default_rng(3)
    data.commands = rng.normal(size=data.q.shape)
    data.commands[49] = np.nan                      # a trajectory's last sample
    data.targets = rng.normal(size=data.x.shape)
    back = read_bag(write_bag(tmp_path / "b", data))
    np.testing.assert_array_equal(back.commands, data.commands)
    np.testing.assert_array_equal(back.targets, data.targets)
    plain = read_bag(write_bag(tmp_path / "c", make_dataset()))
    assert plain.commands is None and plain.targets is None
    with pytest.raises(ValueError, match="commands must have shape"):
        Dataset(q=data.q, x=data.x, traj=data.traj, stamps=data.stamps,
                joint_names=data.joint_names, task=data.task, commands=data.q[:, :2])


def test_progress_reports_reach_total(tmp_path, data):
    writes, reads = [], []
    path = write_bag(tmp_path / "b", data, progress=lambda d, t: writes.append((d, t)))
    read_bag(path, progress=lambda d, t: reads.append((d, t)))
    assert writes[-1] == (150, 150)
    assert reads[-1] == (150 * 2 + 3, 150 * 2 + 3)


def test_embedded_task_state_definition_matches_msg_file():
    from rosbags.typesys import get_types_from_msg

    if not TASK_STATE_FILE.is_file():
        pytest.skip(f"not in a source checkout: {TASK_STATE_FILE} missing")
    name = "uvs_interfaces/msg/TaskState"
    embedded = get_types_from_msg(TASK_STATE_MSG, name)
    from_file = get_types_from_msg(TASK_STATE_FILE.read_text(), name)
    assert embedded == from_file
    fields = [f[0] for f in embedded[name][1]]
    assert fields == ["header", "task", "position", "labels", "valid", "velocity"]


# -- the file is a standard rosbag2 / MCAP bag ----------------------------------


def test_metadata_names_mcap_storage(bag):
    import yaml

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["babble.mcap"]
    assert (bag / "babble.mcap").is_file()
    counts = {
        t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]
    }
    assert counts == {JOINT_STATES_TOPIC: 150, TASK_STATE_TOPIC: 150, TRAJECTORY_START_TOPIC: 3}
    assert meta["custom_data"]["uvs.robot"] == "gen3"
    assert meta["custom_data"]["uvs.task"] == "single_point"


def test_independent_mcap_reader_decodes_both_topics(bag, data):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts = {JOINT_STATES_TOPIC: 0, TASK_STATE_TOPIC: 0, TRAJECTORY_START_TOPIC: 0}
    first = {}
    with open(bag / "babble.mcap", "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, message, decoded in reader.iter_decoded_messages():
            counts[channel.topic] += 1
            first.setdefault(channel.topic, (message, decoded))
    assert counts == {JOINT_STATES_TOPIC: 150, TASK_STATE_TOPIC: 150, TRAJECTORY_START_TOPIC: 3}
    message, joint = first[JOINT_STATES_TOPIC]
    np.testing.assert_array_equal(np.asarray(joint.position), data.q[0])
    assert list(joint.name) == data.joint_names
    stamp = joint.header.stamp.sec * 10**9 + joint.header.stamp.nanosec
    assert stamp == data.stamps[0] == message.log_time
    _, task = first[TASK_STATE_TOPIC]
    np.testing.assert_array_equal(np.asarray(task.position), data.x[0])
    assert task.task == "single_point" and task.valid is True
    assert list(task.labels) == ["x", "y", "z"]
    assert first[TRAJECTORY_START_TOPIC][1].data == 0


def test_file_hash_is_stable_and_content_sensitive(tmp_path, data, bag):
    digest = file_hash(bag)
    assert len(digest) == 64 and digest == file_hash(bag)
    other = make_dataset(seed=1)
    assert file_hash(write_bag(tmp_path / "other", other)) != digest
    with pytest.raises(DatasetError, match="no such bag"):
        file_hash(tmp_path / "missing")


# -- damaged and missing bags --------------------------------------------------


def test_truncated_mcap_raises_naming_file(bag):
    mcap = bag / "babble.mcap"
    raw = mcap.read_bytes()
    mcap.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"babble\.mcap.*of 303 messages") as err:
        read_bag(bag)
    # Half the file still holds a number of complete records; the report says how many.
    assert "readable before" in str(err.value)


def test_garbage_mcap_raises_naming_file(bag):
    (bag / "babble.mcap").write_bytes(os.urandom(5000))
    with pytest.raises(DatasetError, match=r"babble\.mcap.*0 of 303 messages"):
        read_bag(bag)


def test_missing_path_and_missing_metadata_raise(tmp_path):
    with pytest.raises(DatasetError, match="no such bag"):
        read_bag(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty.*no metadata\.yaml"):
        read_bag(tmp_path / "empty")


def test_bag_without_dataset_topics_raises(tmp_path):
    types = bag_schema.typestore().types
    path = tmp_path / "other"
    write_raw_bag(
        path, [("/chatter", "std_msgs/msg/UInt32", 1, types["std_msgs/msg/UInt32"](data=1))]
    )
    with pytest.raises(DatasetError, match=r"missing /joint_states .* and /task_state"):
        read_bag(path)


# -- atomic writing -------------------------------------------------------------


def test_failure_mid_write_leaves_nothing(tmp_path, data, monkeypatch):
    store = bag_schema.typestore()
    real = store.serialize_cdr
    calls = []

    def failing(msg, typename):
        calls.append(typename)
        if len(calls) > 100:
            raise RuntimeError("disk on fire")
        return real(msg, typename)

    monkeypatch.setattr(store, "serialize_cdr", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_bag(tmp_path / "bag", data)
    assert len(calls) == 101
    assert list(tmp_path.iterdir()) == []


def test_existing_path_needs_overwrite(tmp_path, data):
    path = write_bag(tmp_path / "bag", data)
    with pytest.raises(DatasetError, match="exists"):
        write_bag(path, make_dataset(seed=1))
    assert_same(read_bag(path), data)
    newer = make_dataset(seed=1)
    write_bag(path, newer, overwrite=True)
    assert_same(read_bag(path), newer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_stale_partial_of_dead_process_is_removed(tmp_path, data):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f".bag.partial-{int(dead.stdout)}"
    (stale / "bag").mkdir(parents=True)
    write_bag(tmp_path / "bag", data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_unordered_stamps_rejected(tmp_path, data):
    data.stamps[10] = data.stamps[9]
    with pytest.raises(ValueError, match="strictly increasing"):
        write_bag(tmp_path / "bag", data)
    assert not (tmp_path / "bag").exists()


# -- pairing and live-babbler bags ------------------------------------------------


def test_unpaired_and_invalid_samples_are_dropped(tmp_path):
    types = bag_schema.typestore().types
    uint32 = types["std_msgs/msg/UInt32"]
    t0 = 5 * 10**9
    dt = 10**7
    msgs = []
    for i in range(6):
        stamp = t0 + i * dt
        if i == 3:
            msgs.append(("/babble/trajectory_start", "std_msgs/msg/UInt32", stamp, uint32(data=1)))
        msgs.append(
            (
                JOINT_STATES_TOPIC,
                "sensor_msgs/msg/JointState",
                stamp,
                joint_state(stamp, np.full(7, float(i))),
            )
        )
        if i == 2:
            continue  # sample 2 has only a JointState
        msgs.append(
            (
                TASK_STATE_TOPIC,
                "uvs_interfaces/msg/TaskState",
                stamp + 1000,
                task_state(stamp, [i, -i, 0.5], valid=i != 4),
            )
        )
    path = tmp_path / "live"
    write_raw_bag(path, msgs)
    with pytest.warns(
        RuntimeWarning, match=r"dropped 2 JointState .* 1 TaskState messages with valid=False"
    ):
        back = read_bag(path)
    np.testing.assert_array_equal(back.q[:, 0], [0, 1, 3, 5])
    np.testing.assert_array_equal(back.x[:, 1], [0, -1, -3, -5])
    np.testing.assert_array_equal(back.stamps, t0 + np.array([0, 1, 3, 5]) * dt)
    # Samples before the first marker are trajectory 0; the marker says 1.
    np.testing.assert_array_equal(back.traj, [0, 0, 1, 1])
    assert back.joint_names == JOINTS and back.task == "single_point"
    assert back.robot == "gen3"


def test_no_markers_is_one_trajectory_and_joint_order_is_normalised(tmp_path):
    stamps = [10**9, 2 * 10**9]
    msgs = [
        (
            JOINT_STATES_TOPIC,
            "sensor_msgs/msg/JointState",
            stamps[0],
            joint_state(stamps[0], np.arange(7.0)),
        ),
        (
            JOINT_STATES_TOPIC,
            "sensor_msgs/msg/JointState",
            stamps[1],
            joint_state(stamps[1], np.arange(7.0)[::-1].copy(), names=JOINTS[::-1]),
        ),
        (
            TASK_STATE_TOPIC,
            "uvs_interfaces/msg/TaskState",
            stamps[0],
            task_state(stamps[0], [1, 2, 3]),
        ),
        (
            TASK_STATE_TOPIC,
            "uvs_interfaces/msg/TaskState",
            stamps[1],
            task_state(stamps[1], [4, 5, 6]),
        ),
    ]
    write_raw_bag(tmp_path / "b", msgs)
    back = read_bag(tmp_path / "b")
    np.testing.assert_array_equal(back.traj, [0, 0])
    np.testing.assert_array_equal(back.q, [np.arange(7.0), np.arange(7.0)])
    np.testing.assert_array_equal(back.x, [[1, 2, 3], [4, 5, 6]])


def test_dataset_rejects_inconsistent_shapes(data):
    with pytest.raises(ValueError, match="sample counts differ"):
        Dataset(
            q=data.q,
            x=data.x[:-1],
            traj=data.traj,
            stamps=data.stamps,
            joint_names=data.joint_names,
            task="single_point",
            labels=data.labels,
        )
    with pytest.raises(ValueError, match="joint_names"):
        Dataset(
            q=data.q,
            x=data.x,
            traj=data.traj,
            stamps=data.stamps,
            joint_names=data.joint_names[:3],
            task="single_point",
            labels=data.labels,
        )


def test_random_damage_gives_dataset_or_dataset_error(bag, data):
    mcap = bag / "babble.mcap"
    raw = mcap.read_bytes()
    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(40):
        start = int(rng.integers(0, len(raw) - 64))
        damaged = bytearray(raw)
        damaged[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        mcap.write_bytes(bytes(damaged))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                back = read_bag(bag)
        except DatasetError as err:
            assert "babble" in str(err)
            outcomes.add("error")
        else:
            assert back.q.shape[1] == data.q.shape[1] and len(back) <= len(data)
            outcomes.add("read")
    assert "error" in outcomes


def test_task_states_written_before_the_velocity_field_still_read(tmp_path):
    """Bags recorded before TaskState gained `velocity` (issue 16) hold the shorter
    message; the reader takes either."""
    store = bag_schema.typestore()
    old_t = store.types[bag_schema.TASK_STATE_V1_TYPE]
    header_t = store.types["std_msgs/msg/Header"]
    time_t = store.types["builtin_interfaces/msg/Time"]
    old = old_t(header=header_t(stamp=time_t(sec=3, nanosec=5), frame_id=""), task="single_point",
                position=np.array([0.1, 0.2, 0.3]), labels=["x", "y", "z"], valid=True)
    raw = store.serialize_cdr(old, bag_schema.TASK_STATE_V1_TYPE)
    msg = bag_reader._Collector(tmp_path / "bag", None, 0)._task_state(raw)
    np.testing.assert_array_equal(msg.position, [0.1, 0.2, 0.3])
    assert msg.valid and msg.header.stamp.sec == 3
    new = store.types[bag_schema.TASK_STATE_TYPE](header=old.header, task="single_point",
                                          position=old.position, labels=old.labels, valid=True,
                                          velocity=np.array([1.0, 0.0, 0.0]))
    msg = bag_reader._Collector(tmp_path / "bag", None, 0)._task_state(
        store.serialize_cdr(new, bag_schema.TASK_STATE_TYPE))
    np.testing.assert_array_equal(msg.velocity, [1.0, 0.0, 0.0])
