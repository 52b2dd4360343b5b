"""`uvs collect`: OU babbling in simulation written as a rosbag2 bag the loader reads."""

import json
import subprocess

import numpy as np
import pytest

from uvs_core.dataset import read_bag
from uvs_core.evaluation import protocol as protocol_of
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task


def _uvs(*args):
    return subprocess.run(["uvs", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("task", "m"), [("single_point", 3), ("multi_point", 12), ("visual_servo", 2)]
)
def test_collect_writes_a_bag_of_the_requested_task(tmp_path, task, m):
    out = tmp_path / "bag"
    result = _uvs("collect", "--task", task, "--samples", "450", "--seed", "3",
                  "--horizon", "100", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["samples"] == 450 and summary["trajectories"] == 5
    assert summary["task"] == task and len(summary["data_hash"]) == 64

    data = read_bag(out)
    assert data.q.shape == (450, 7) and data.x.shape == (450, m)
    assert np.bincount(data.traj).tolist() == [100, 100, 100, 100, 50]
    task_model = make_task(task, load_robot("gen3"))
    np.testing.assert_allclose(data.x, task_model.x(task_model.select(data.q)), atol=1e-9)
    starts = data.q[np.r_[0, np.flatnonzero(np.diff(data.traj)) + 1]]
    # the default (design) protocol's start: DESIGN.md's straight arm for the Gen3's
    # position tasks, the task's home for visual_servo
    start = protocol_of(task, "design").start_for(7)
    expected = task_model.q_fixed if start is None else start
    np.testing.assert_allclose(starts, np.broadcast_to(expected, starts.shape))


def test_collect_is_reproducible_by_seed(tmp_path):
    for name in ("a", "b"):
        assert _uvs("collect", "--task", "single_point", "--samples", "200", "--seed", "7",
                    "--out", str(tmp_path / name)).returncode == 0
    np.testing.assert_array_equal(read_bag(tmp_path / "a").q, read_bag(tmp_path / "b").q)


def test_collect_paper_protocol(tmp_path):
    """--protocol paper: the reference code's babbling, from its start pose, every joint
    within 1.22 rad/s and inside its limits; far wider than the default."""
    runs = {}
    for protocol in ("design", "paper"):
        out = tmp_path / protocol
        result = _uvs("collect", "--task", "single_point", "--samples", "2000", "--seed", "2",
                      "--protocol", protocol, "--out", str(out), "--json")
        assert result.returncode == 0, result.stderr
        runs[protocol] = (json.loads(result.stdout.strip().splitlines()[-1]), read_bag(out))
    summary, data = runs["paper"]
    assert (summary["protocol"], summary["sigma"], summary["ou_dt"]) == ("paper", 1.0, 1.0)
    assert summary["start"] == [0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0]
    q = data.q.reshape(20, 100, 7)
    np.testing.assert_allclose(q[:, 0], np.broadcast_to(summary["start"], (20, 7)))
    assert np.abs(np.diff(q, axis=1)).max() <= 0.05 * 1.22 + 1e-9
    assert load_robot("gen3").in_limits(data.q).all()
    design = runs["design"][1].q
    assert runs["design"][0]["sigma"] == 0.2 and runs["design"][0]["start"] == [0.0] * 7
    # Mean joint speed: mostly at the 1.22 rad/s clip, several times the default's.
    speed = np.abs(np.diff(q, axis=1)).mean() / 0.05
    design_speed = np.abs(np.diff(design.reshape(20, 100, 7), axis=1)).mean() / 0.05
    assert speed > 0.8 and speed > 2 * design_speed


def test_collect_refuses_to_overwrite_without_the_flag(tmp_path):
    out = tmp_path / "bag"
    first = _uvs("collect", "--task", "single_point", "--samples", "10", "--out", str(out))
    assert first.returncode == 0, first.stderr
    again = _uvs("collect", "--task", "single_point", "--samples", "10", "--out", str(out))
    assert again.returncode == 2
    assert "exists" in again.stderr and "--overwrite" in again.stderr


def test_collect_rejects_bad_arguments(tmp_path):
    result = _uvs("collect", "--task", "single_point", "--samples", "0",
                  "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "argument --samples: must be > 0, got 0" in result.stderr
    result = _uvs("collect", "--task", "single_point", "--samples", "10", "--robot", "nope",
                  "--out", str(tmp_path / "y"))
    assert result.returncode == 2 and "nope" in result.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_collect_inside_the_safety_envelope(tmp_path):
    out = tmp_path / "kept"
    result = _uvs("collect", "--task", "single_point", "--samples", "2000", "--horizon", "200",
                  "--seed", "3", "--envelope", "robot", "--out", str(out))
    assert result.returncode == 0, result.stderr
    robot = load_robot("gen3")
    z = robot.position(read_bag(out).q)[:, 2]
    assert z.min() >= robot.envelope.table_offset == pytest.approx(0.05)
