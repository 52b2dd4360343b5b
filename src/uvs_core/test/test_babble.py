"""OU babbling: reproducibility, trajectory structure, limits, OU statistics, speed."""

import numpy as np
import pytest

from uvs_core.babble import OUProcess, babble
from uvs_core.dataset import Dataset
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task


@pytest.fixture(scope="module")
def single(gen3):
    return make_task("single_point", gen3)


def test_seeded_reproducibility(single):
    a, b = babble(single, 1000, seed=4), babble(single, 1000, seed=4)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.allclose(a.q, babble(single, 1000, seed=5).q)


def test_dataset_structure(single, gen3):
    data = babble(single, 250, horizon=100, dt=0.05)
    assert isinstance(data, Dataset)
    assert data.q.shape == (250, 7) and data.x.shape == (250, 3)
    assert data.traj.dtype == np.int64 and data.stamps.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(data.traj), [100, 100, 50])
    np.testing.assert_array_equal(data.stamps, np.arange(250) * 50_000_000)
    assert data.joint_names == list(gen3.joint_names)
    assert (data.task, data.labels, data.robot) == ("single_point", ["x", "y", "z"], "gen3")


def test_trajectories_start_at_home_and_x_matches_q(single, gen3):
    data = babble(single, 1000, horizon=100)
    starts = np.flatnonzero(np.diff(data.traj, prepend=-1))
    np.testing.assert_array_equal(starts, np.arange(0, 1000, 100))
    # the task's start pose (gen3.yaml: the paper's, not the straight robot home)
    np.testing.assert_array_equal(data.q[starts], np.broadcast_to(
        [0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0], (10, 7)))
    np.testing.assert_allclose(data.x[starts], np.broadcast_to(
        gen3.position(single.home), (10, 3)))
    np.testing.assert_allclose(data.x, single.x_from_q(data.q), atol=1e-15)


def test_commands_are_the_ou_process(single):
    """q_{t+1} - q_t = dt * (t-th OU sample): the state is recorded before each step."""
    seed, horizon = 11, 20
    data = babble(single, 3 * horizon, horizon=horizon, seed=seed)
    ou = OUProcess((3, 7), rng=np.random.default_rng(seed))
    commands = np.stack([ou.sample() for _ in range(horizon - 1)], axis=1)   # (3, H-1, 7)
    dq = np.diff(data.q.reshape(3, horizon, 7), axis=1)
    np.testing.assert_allclose(dq, 0.05 * commands, atol=1e-14)


def test_joint_limits_respected(gen3):
    task = make_task("single_point", gen3)
    data = babble(task, 20000, sigma=1.0)        # wild babbling to reach the limits
    assert gen3.in_limits(data.q).all()
    at_limit = np.isclose(np.abs(data.q[:, [1, 3, 5]]), gen3.upper[[1, 3, 5]])
    assert at_limit.any(axis=0).all()             # every limited joint got clipped
    step = np.abs(np.diff(data.q, axis=0))[np.diff(data.traj) == 0]
    assert np.all(step <= 0.05 * gen3.velocity_limits + 1e-12)


def test_visual_servo_babble_keeps_inactive_joints(gen3):
    task = make_task("visual_servo", gen3)
    data = babble(task, 1000, seed=2)
    assert data.x.shape == (1000, 2) and data.labels == ["u", "v"]
    np.testing.assert_array_equal(data.q[:, [0, 2, 4, 5, 6]], np.zeros((1000, 5)))
    np.testing.assert_allclose(data.q[0], task.home)


def test_ou_stationary_std():
    """Stationary std sigma / sqrt(theta (2 - theta dt)) ~ sigma / sqrt(2 theta) = 0.365."""
    ou = OUProcess((4000, 2), theta=0.15, sigma=0.2, dt=0.05, rng=0)
    for _ in range(1500):                          # 11 time constants
        x = ou.sample()
    assert x.std() == pytest.approx(0.2 / np.sqrt(2 * 0.15), rel=0.05)
    assert abs(x.mean()) < 0.02
    ou.reset()
    np.testing.assert_array_equal(ou.state, np.zeros((4000, 2)))


def test_ou_first_sample_from_mu():
    ou = OUProcess(3, theta=0.15, sigma=0.2, dt=0.05, mu=0.0, rng=np.random.default_rng(0))
    expected = 0.2 * np.sqrt(0.05) * np.random.default_rng(0).standard_normal(3)
    np.testing.assert_allclose(ou.sample(), expected, atol=1e-15)


def test_progress_reports_reach_total(single):
    calls = []
    babble(single, 450, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (450, 450)
    done = [c[0] for c in calls]
    assert done == sorted(done) and all(total == 450 for _, total in calls)


def test_paper_code_babbling(single, gen3):
    """The reference code's babbling: OU without a time step (ou_dt 1, sigma 1), each
    joint clipped to 1.22 rad/s, joints masked 10 steps before a limit, from its
    start pose [0, .5, 0, -.5, 0, .5, 0]."""
    start = np.array([0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0])
    seed, horizon = 3, 100
    data = babble(single, 200 * horizon, horizon=horizon, seed=seed, theta=0.15, sigma=1.0,
                  ou_dt=1.0, start=start, velocity_limits=1.22, velocity_mode="clip",
                  limit_mode="mask")
    q = data.q.reshape(200, horizon, 7)
    np.testing.assert_array_equal(q[:, 0], np.broadcast_to(start, (200, 7)))
    velocity = np.diff(q, axis=1) / 0.05
    assert np.abs(velocity).max() <= 1.22 + 1e-9
    # OU std sigma / sqrt(theta (2 - theta)) = 1.90 rad/s: most commands saturate.
    assert np.mean(np.isclose(np.abs(velocity), 1.22)) > 0.4
    # The first command is the first OU sample, clipped per joint, then masked.
    first = np.clip(np.random.default_rng(seed).standard_normal((200, 7)), -1.22, 1.22)
    moved = velocity[:, 0] != 0
    np.testing.assert_allclose(velocity[:, 0][moved], first[moved], atol=1e-9)
    assert (np.abs(q[:, :, [1, 3, 5]]) < gen3.upper[[1, 3, 5]]).all()
    # Wide coverage: the continuous joints travel several radians.
    assert np.abs(q[:, -1, 0]).max() > 3.0


def test_100k_samples_make_1000_trajectories(single):
    data = babble(single, 100_000)
    assert len(data) == 100_000 and data.traj[-1] == 999


def test_servo_law_is_the_capped_true_jacobian_inverse():
    from uvs_core.babble import servo_law

    task = make_task("single_point", load_robot("gen3"))
    q = np.array([0.3, 0.6, -0.2, 1.2, 0.1, 0.8, 0.2])
    x = task.x_from_q(q)
    near = x + np.array([0.01, -0.02, 0.005])
    qdot = servo_law(task, q, x, near)
    np.testing.assert_allclose(task.jacobian_from_q(q) @ qdot, near - x, atol=1e-12)
    far = servo_law(task, q, x, x + np.array([3.0, 0.0, 0.0]))
    assert np.max(np.abs(far)) == pytest.approx(1.22)          # whole-vector cap
    unc = np.linalg.pinv(task.jacobian_from_q(q)) @ np.array([3.0, 0.0, 0.0])
    np.testing.assert_allclose(far / np.linalg.norm(far), unc / np.linalg.norm(unc))


def test_servo_babbler_adds_noise_to_five_percent_of_commands():
    from uvs_core.babble import ServoBabbler, servo_law

    task = make_task("single_point", load_robot("gen3"))
    envelope = task.robot.envelope.without_table()
    babbler = ServoBabbler(task, envelope=envelope, rng=3)
    rng = np.random.default_rng(0)
    residuals, flags = [], []
    for _ in range(20000):
        q = task.robot.sample(rng, 1)[0]
        x = task.x_from_q(q)
        qdot, noisy = babbler.command(q, x)
        residual = qdot - servo_law(task, q, x, babbler.target)
        assert (np.linalg.norm(residual) > 0) == noisy
        residuals.append(residual)
        flags.append(noisy)
    flags = np.array(flags)
    assert abs(flags.mean() - 0.05) < 0.006                  # 5 % (binomial sd 0.0015)
    noise = np.array(residuals)[flags]
    assert noise.std() == pytest.approx(0.1, rel=0.05)        # N(0, 0.1) per joint
    assert abs(noise.mean()) < 0.01
    # Targets: x of joint samples, inside the envelope; a new one per reset.
    first = babbler.target.copy()
    assert envelope.target_problem(babbler.reset(), "m") is None
    assert not np.allclose(babbler.target, first)


def test_servo_babbler_draws_a_new_target_when_the_current_one_is_reached():
    from uvs_core.babble import ServoBabbler

    task = make_task("single_point", load_robot("gen3"))
    babbler = ServoBabbler(task, noise_fraction=0.0, rng=1)
    reached = babbler.target.copy()
    q = task.home
    qdot, noisy = babbler.command(q, reached + 0.001)          # within 0.01 m
    assert not noisy and not np.allclose(babbler.target, reached)
