"""uvs_core.tracker_noise: each effect at the rate set, and the rollout that sees it."""

import numpy as np
import pytest

from uvs_core.estimators import make_estimator
from uvs_core.evaluation import protocol, rollout
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_core.tracker_noise import TrackerNoise, noisy_dataset_x, observe_batch, sample_frame

W, H = 640, 480


@pytest.mark.parametrize("kwargs", [{"pixel_std": -1.0}, {"drop_prob": 1.0},
                                    {"outlier_prob": -0.1}, {"outlier_min_px": float("nan")}])
def test_invalid_noise_is_rejected(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TrackerNoise(**kwargs)


def test_default_noise_is_off():
    assert not TrackerNoise().active
    x = np.random.default_rng(0).uniform(0, 400, (50, 2))
    np.testing.assert_array_equal(
        observe_batch(TrackerNoise(), np.random.default_rng(1), x, x + 1, W, H), x)


def test_observe_batch_rates():
    b = 40_000
    rng = np.random.default_rng(3)
    x = rng.uniform((100, 100), (540, 380), (b, 2))
    last = x + 1000.0                       # recognisable stale values
    noise = TrackerNoise(pixel_std=2.0, drop_prob=0.2, outlier_prob=0.1, outlier_min_px=60)
    seen = observe_batch(noise, np.random.default_rng(0), x, last, W, H)
    dropped = np.all(seen == last, axis=1)
    err = np.linalg.norm(seen - x, axis=1)
    wrong = ~dropped & (err >= 60.0)
    inlier = ~dropped & ~wrong
    assert dropped.mean() == pytest.approx(0.2, abs=0.01)
    # A dropped frame hides whatever else happened to it: 0.8 * 0.1 are seen wrong.
    assert wrong.mean() == pytest.approx(0.08, abs=0.01)
    assert np.std(seen[inlier] - x[inlier], axis=0) == pytest.approx([2.0, 2.0], rel=0.03)
    assert np.all((seen[wrong] >= 0) & (seen[wrong] <= [W - 1, H - 1]))
    # The first step has no last measurement: drops read the truth, no NaN.
    first = observe_batch(TrackerNoise(drop_prob=0.5), np.random.default_rng(0), x, None, W, H)
    np.testing.assert_array_equal(first, x)


def test_sample_frame_rates_and_seed():
    noise = TrackerNoise(pixel_std=3.0, drop_prob=0.25, outlier_prob=0.15)
    uv = np.array([320.0, 240.0])

    def frames(seed):
        rng = np.random.default_rng(seed)
        return [sample_frame(noise, rng, uv, W, H, margin=20.0) for _ in range(8000)]

    a, b = frames(5), frames(5)
    assert [f.dropped for f in a] == [f.dropped for f in b]
    np.testing.assert_array_equal([f.offset for f in a], [f.offset for f in b])
    assert np.mean([f.dropped for f in a]) == pytest.approx(0.25, abs=0.015)
    wrong = np.array([f.outlier for f in a if f.outlier is not None])
    assert len(wrong) / len(a) == pytest.approx(0.15, abs=0.015)
    assert np.all(np.linalg.norm(wrong - uv, axis=1) >= noise.outlier_min_px)
    assert np.all((wrong >= 20.0) & (wrong <= [W - 21.0, H - 21.0]))
    assert np.std([f.offset for f in a], axis=0) == pytest.approx([3.0, 3.0], rel=0.05)


def test_noisy_dataset_drops_hold_within_a_trajectory():
    traj = np.repeat(np.arange(200), 50)
    x = np.random.default_rng(0).uniform(0, 400, (traj.size, 2))
    seen = noisy_dataset_x(TrackerNoise(drop_prob=0.3), np.random.default_rng(1), x, traj,
                           W, H)
    held = np.all(seen[1:] == seen[:-1], axis=1)
    assert held.mean() == pytest.approx(0.3 * 199 * 49 / (traj.size - 1), abs=0.015)
    first = np.r_[True, traj[1:] != traj[:-1]]
    np.testing.assert_array_equal(seen[first], x[first])       # never across trajectories


def test_rollout_sees_the_noisy_tracker():
    task = make_task("visual_servo", load_robot("gen3"))
    tj = make_estimator("tj", task)
    options = protocol("visual_servo").rollout_options(task.robot.n)
    options["steps"] = 100
    goals = task.sample_targets(np.random.default_rng(0), 16)
    clean = rollout(task, tj, goals, **options)
    off = rollout(task, tj, goals, tracker_noise=TrackerNoise(), **options)
    np.testing.assert_array_equal(off.distance, clean.distance)
    noisy = rollout(task, tj, goals, tracker_noise=TrackerNoise(pixel_std=3.0),
                    noise_seed=1, **options)
    again = rollout(task, tj, goals, tracker_noise=TrackerNoise(pixel_std=3.0),
                    noise_seed=1, **options)
    np.testing.assert_array_equal(noisy.distance, again.distance)
    reached = clean.distance[:, -1] < 1.0
    assert reached.sum() >= 5
    # Noise of 3 px leaves the servo jittering a few px around the target, not on it.
    final = noisy.distance[reached, -1]
    assert np.all(final < 15.0) and np.median(final) > 0.5
    with pytest.raises(ValueError, match="camera"):
        rollout(make_task("single_point", task.robot), tj, np.zeros((1, 3)),
                tracker_noise=TrackerNoise(pixel_std=1.0))
