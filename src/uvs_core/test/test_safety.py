"""uvs_core.safety: the envelope, the joint look-ahead guard and unit errors, with values."""

import numpy as np
import pytest

from uvs_core.robot import Robot, load_robot
from uvs_core.safety import (
    Envelope,
    envelope_from_config,
    guard_command,
    joint_lookahead_guard,
    unit_error,
)

GEN3_YAML = "config/robots/gen3.yaml"


@pytest.fixture(scope="module")
def gen3():
    from pathlib import Path
    path = Path(__file__).resolve().parents[3] / GEN3_YAML
    return Robot.from_yaml(path)


def test_envelope_from_the_gen3_yaml(gen3):
    env = gen3.envelope
    np.testing.assert_array_equal(env.box_min, [-1.3, -1.3, -0.8])
    np.testing.assert_array_equal(env.box_max, [1.3, 1.3, 1.45])
    np.testing.assert_array_equal(env.table_normal, [0.0, 0.0, 1.0])
    assert env.table_offset == pytest.approx(0.05)
    assert env.point_problem([0.5, 0.0, 0.3]) is None
    assert "below the safety box" in env.point_problem([0.0, 0.0, -10.0])
    assert "z = -10.000" in env.point_problem([0.0, 0.0, -10.0])
    assert "0.050 m into the table" in env.point_problem([0.5, 0.0, 0.0])
    assert env.violation(np.array([[0.5, 0.0, 0.0], [0.5, 0.0, 0.3], [2.3, 0.0, 0.3]])) \
        == pytest.approx([0.05, 0.0, 1.0])
    assert env.without_table().point_problem([0.5, 0.0, 0.0]) is None


def test_bad_safety_sections_are_refused():
    with pytest.raises(ValueError, match="below max"):
        envelope_from_config({"box": {"min": [0, 0, 1], "max": [1, 1, 0]}})
    with pytest.raises(ValueError, match="unknown keys"):
        envelope_from_config({"sphere": {}})
    with pytest.raises(ValueError, match="3 numbers"):
        envelope_from_config({"table": {"normal": [0, 1]}})
    assert not envelope_from_config(None).bounded


def test_targets_of_point_tasks_are_checked_point_by_point(gen3):
    env = gen3.envelope
    assert env.target_problem([0.5, 0.0, 0.3], "m") is None
    assert env.target_problem([0.0, 0.0, -10.0], "m").startswith("target z = -10.000 m")
    two = [0.5, 0.0, 0.3, 0.5, 0.0, 0.01]
    assert env.target_problem(two, "m").startswith("target point 1")
    assert env.target_problem([-1e6, 5.0], "px") is None   # image targets: not checkable


def test_joint_guard_zeroes_a_joint_that_would_pass_its_limit_within_the_lookahead():
    lower, upper = np.array([-1.0, -1.0, -np.inf]), np.array([1.0, 1.0, np.inf])
    q = np.array([0.9, -0.9, 100.0])
    # 0.9 + 0.5 * 0.3 = 1.05 > 1: blocked; -0.9 + 0.5 * 0.1 inside; continuous free.
    out, blocked = joint_lookahead_guard(q, np.array([0.3, 0.1, 5.0]), 0.5, lower, upper)
    np.testing.assert_array_equal(out, [0.0, 0.1, 5.0])
    assert blocked == [0]
    # 0.9 + 0.5 * 0.19 = 0.995: allowed. Back inside from beyond a limit: allowed.
    out, blocked = joint_lookahead_guard(np.array([0.9, -1.2, 0.0]), np.array([0.19, 0.5, 0.0]),
                                         0.5, lower, upper)
    np.testing.assert_array_equal(out, [0.19, 0.5, 0.0])
    assert blocked == []


def test_guard_command_zeroes_a_command_heading_into_the_table(gen3):
    env = gen3.envelope
    # Elbow bent, tool at z = 0.26 m; joint 2 forward lowers it.
    q = np.array([0.0, 0.5, 0.0, 1.5708, 0.0, 0.5, 0.0])
    assert gen3.position(q)[2] == pytest.approx(0.2616, abs=1e-3)
    down = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert gen3.position(q + down * 0.5)[2] < 0.05
    verdict = guard_command(gen3, env, q, down, lookahead=0.5)
    np.testing.assert_array_equal(verdict.qdot, np.zeros(7))
    assert verdict.reason.startswith("envelope: tool point in 0.5 s")
    assert "into the table" in verdict.reason
    # The same command with a short look-ahead stays above the plane: untouched.
    verdict = guard_command(gen3, env, q, down, lookahead=0.05)
    np.testing.assert_array_equal(verdict.qdot, down)
    assert verdict.reason == ""
    # Without a table (the sim's box-only envelope): untouched.
    assert not guard_command(gen3, env.without_table(), q, down, 0.5).modified
    # From below the plane, a command that lifts the tool is allowed.
    low = np.array([0.0, 1.2, 0.0, 1.5708, 0.0, 0.5, 0.0])
    assert gen3.position(low)[2] < 0.05
    up = -0.2 * down
    verdict = guard_command(gen3, env, low, up, 0.5)
    np.testing.assert_array_equal(verdict.qdot, up)


def test_guard_command_applies_the_joint_guard_first(gen3):
    q = gen3.home.copy()
    q[1] = 2.2
    qdot = np.zeros(7)
    qdot[1], qdot[3] = 0.2, 0.1
    verdict = guard_command(gen3, Envelope(), q, qdot, 0.5)
    np.testing.assert_array_equal(verdict.qdot, [0, 0, 0, 0.1, 0, 0, 0])
    assert verdict.reason == "joint limit within 0.5 s: joint_2 not moved"


def test_unit_errors_are_joints_beyond_twice_their_limit():
    limits = load_robot("gen3").velocity_limits
    assert unit_error(np.full(7, 100.0), limits) == list(range(7))
    assert unit_error(np.array([2.0, 0, 0, 0, 0, 0, 2.5]), limits) == [6]   # 2.5 > 2 * 1.222
    assert unit_error(np.full(7, 1.3), limits) == []


def test_babbling_inside_the_envelope_keeps_the_tool_above_the_table(gen3):
    from uvs_core.babble import babble
    from uvs_core.tasks import make_task
    task = make_task("single_point", gen3)
    free = gen3.position(babble(task, 4000, horizon=200, seed=3).q)
    kept = gen3.position(babble(task, 4000, horizon=200, seed=3, envelope=gen3.envelope).q)
    assert np.mean(free[:, 2] < 0.05) > 0.05          # free babbling goes below the table
    assert kept[:, 2].min() >= 0.05                    # inside: never
    assert np.all(gen3.envelope.violation(kept) == 0.0)


def test_guard_batch_equals_guard_command_row_by_row(gen3):
    from uvs_core.safety import guard_batch
    rng = np.random.default_rng(0)
    q = gen3.sample(rng, 64)
    qdot = rng.uniform(-1.2, 1.2, size=(64, 7))
    batch = guard_batch(gen3, gen3.envelope, q, qdot, 0.5)
    for i in range(64):
        np.testing.assert_array_equal(batch[i],
                                      guard_command(gen3, gen3.envelope, q[i], qdot[i], 0.5).qdot)
