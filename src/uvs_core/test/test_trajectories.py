"""Moving targets: the paths' geometry and velocity, and tracking rollouts against the
closed-form lag of a first-order servo."""

import math

import numpy as np
import pytest

from uvs_core.estimators import make_estimator
from uvs_core.evaluation import tracking_metrics, tracking_rollout
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_core.trajectories import TargetPath, benchmark_paths, plane_axes, task_targets

START = (0.6, -0.1, 0.3)
Q0 = np.array([0.0, 0.6, 0.0, 1.2, 0.0, 0.8, 0.0])   # the moving benchmark's start pose


@pytest.mark.parametrize("normal", [(0, 0, 1), (0, 1, 0), (1, 1, 1)])
def test_circle_starts_at_start_has_its_radius_speed_and_period(normal):
    path = TargetPath("circle", START, normal, size=0.1, speed=0.05)
    assert path.period == pytest.approx(2 * math.pi * 0.1 / 0.05)
    t = np.linspace(0.0, path.period, 401)
    p, dp = path.sample(t)
    np.testing.assert_allclose(p[0], START, atol=1e-15)
    np.testing.assert_allclose(p[-1], START, atol=1e-12)
    u, v = plane_axes(normal)
    centre = np.asarray(START) - 0.1 * u
    np.testing.assert_allclose(np.linalg.norm(p - centre, axis=1), 0.1, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(dp, axis=1), 0.05, atol=1e-12)
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    np.testing.assert_allclose((p - centre) @ n, 0.0, atol=1e-12)   # in the plane
    # dp/dt is the derivative of p (central differences), counter-clockwise about n
    h = 1e-6
    fd = (path.sample(t + h)[0] - path.sample(t - h)[0]) / (2 * h)
    np.testing.assert_allclose(dp, fd, atol=1e-8)
    assert np.all(np.cross(p - centre, dp) @ n > 0)


def test_line_goes_out_and_back_at_constant_speed():
    path = TargetPath("line", START, (0, 0, 2.0), size=0.1, speed=0.05)
    assert path.period == pytest.approx(4.0)
    p, dp = path.sample(np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_allclose(p[:, 2] - START[2], [0.0, 0.05, 0.1, 0.05, 0.0, 0.05],
                               atol=1e-12)
    np.testing.assert_allclose(p[:, :2], np.tile(START[:2], (6, 1)), atol=1e-15)
    np.testing.assert_allclose(dp[:, 2], [0.05, 0.05, -0.05, -0.05, 0.05, 0.05])


def test_paths_reject_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        TargetPath("spiral", START, (0, 0, 1))
    with pytest.raises(ValueError, match="axis"):
        TargetPath("line", START, (0, 0, 0))
    with pytest.raises(ValueError, match="speed"):
        TargetPath("line", START, (0, 0, 1), speed=0.0)


def test_task_targets_move_every_point_of_the_frame_rigidly():
    task = make_task("multi_point", load_robot("gen3"))
    x0 = task.x(task.select(Q0))
    path = TargetPath("circle", x0[:3], (0, 0, 1))
    t = np.array([0.0, 1.0, 2.5])
    xs, vs = task_targets(task, x0, path, t)
    p, dp = path.sample(t)
    assert xs.shape == vs.shape == (3, 12)
    for i in range(4):
        np.testing.assert_allclose(xs[:, 3 * i:3 * i + 3] - x0[3 * i:3 * i + 3],
                                   p - p[0], atol=1e-15)
        np.testing.assert_allclose(vs[:, 3 * i:3 * i + 3], dp)
    with pytest.raises(ValueError, match="3-D points"):
        task_targets(make_task("visual_servo", load_robot("gen3")), np.zeros(2), path, t)
    assert [p.kind for p in benchmark_paths(x0[:3], quick=True)] == ["circle", "line"]
    assert len(benchmark_paths(x0[:3])) == 6


def test_tracking_metrics_leave_out_the_settling_time():
    error = np.array([[9.0, 9.0, 3.0, 4.0], [9.0, 9.0, 0.0, 0.0]])
    m = tracking_metrics(error, dt=0.5, settle=1.0)       # samples at t >= 1 s: 2 of 4
    assert m["rms"] == pytest.approx(math.sqrt((9 + 16) / 4))
    assert m["max"] == 4.0 and m["final"] == 2.0 and m["samples"] == 4
    assert m["rms_per_run"] == pytest.approx([math.sqrt(12.5), 0.0])
    with pytest.raises(ValueError, match="settle"):
        tracking_metrics(error, dt=0.5, settle=2.0)


def test_true_jacobian_tracks_a_circle_with_feed_forward_and_lags_without():
    """Feedback alone is a first-order servo: on a circle at angular rate w = v / r its
    steady lag is v / sqrt(gain^2 + w^2) (44.7 mm at 0.05 m/s, r 0.1 m, gain 1). The
    feed-forward removes it but for the Euler step's chord error, about dt v^2 / (2 r)
    (0.6 mm)."""
    task = make_task("single_point", load_robot("gen3"))
    x0 = task.x(task.select(Q0))
    path = TargetPath("circle", x0, (0, 0, 1), size=0.1, speed=0.05)
    times = np.arange(253) * 0.05
    xs, vs = task_targets(task, x0, path, times)
    est = make_estimator("tj", task)
    ff = tracking_rollout(task, est, xs[None], vs[None], start=Q0)
    fb = tracking_rollout(task, est, xs[None], None, start=Q0)
    assert ff.error.shape == (1, 253) and ff.x.shape == (1, 253, 3)
    assert ff.error[0, 0] == pytest.approx(0.0, abs=1e-12)    # the arm starts on the path
    lag = 0.05 / math.sqrt(1.0 + 0.5 ** 2)
    # after 8 s (8 time constants) the feedback-only error is the steady lag
    np.testing.assert_allclose(fb.error[0, 160:], lag, rtol=0.03)
    m_ff = tracking_metrics(ff.error, 0.05, 2.0)
    assert m_ff["max"] < 1.0e-3 and m_ff["rms"] == pytest.approx(0.05 * 0.05 ** 2 / 0.2,
                                                                 rel=0.2)
    assert not ff.halted.any() and not fb.halted.any()
