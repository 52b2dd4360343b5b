"""The pose task: SO(3) maps, the log-map error, the geometric 6 x n Jacobian, the pose
distance, and the control law on it."""

import numpy as np
import pytest

from uvs_core.control import ControlConfig, control_step
from uvs_core.evaluation import protocol, rollout, task_distance
from uvs_core.robot import load_robot
from uvs_core.tasks import (
    error_fn,
    make_task,
    quaternion_matrix,
    so3_exp,
    so3_left_jacobian,
    so3_log,
)


@pytest.fixture(scope="module")
def pose():
    return make_task("pose", load_robot("gen3"))


def _random_rotvecs(rng, count, max_angle=np.pi):
    axis = rng.normal(size=(count, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return axis * rng.uniform(0.0, max_angle, count)[:, None]


def test_log_inverts_exp_at_every_angle_including_0_and_pi(rng):
    phi = np.concatenate([_random_rotvecs(rng, 500), [[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0],
                                                      [0.0, 0.0, np.pi - 1e-9]]])
    np.testing.assert_allclose(so3_log(so3_exp(phi)), phi, atol=1e-12)
    # At pi exactly the axis' sign is arbitrary; the rotation is the same.
    back = so3_log(so3_exp(np.array([np.pi, 0.0, 0.0])))
    assert np.isclose(np.linalg.norm(back), np.pi) and np.isclose(abs(back[0]), np.pi)
    r = so3_exp(phi)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-14)


def test_left_jacobian_maps_rotation_vector_rates_to_angular_velocity(rng):
    """omega = J_l(phi) dphi/dt for R(t) = exp(phi(t)): [omega]x = dR/dt R^T."""
    h = 1e-6
    for phi in _random_rotvecs(rng, 20, max_angle=3.0):
        dphi = rng.normal(size=3)
        dr = (so3_exp(phi + h * dphi) - so3_exp(phi - h * dphi)) / (2 * h)
        w = dr @ so3_exp(phi).T
        omega = np.array([w[2, 1], w[0, 2], w[1, 0]])
        np.testing.assert_allclose(so3_left_jacobian(phi) @ dphi, omega, atol=1e-8)


def test_quaternion_matrix_matches_exp():
    # 90 deg about z: (x, y, z, w) = (0, 0, sin 45, cos 45), unnormalised by 2
    s = np.sqrt(0.5)
    np.testing.assert_allclose(quaternion_matrix((0.0, 0.0, 2 * s, 2 * s)),
                               so3_exp([0.0, 0.0, np.pi / 2]), atol=1e-15)
    with pytest.raises(ValueError, match="non-zero"):
        quaternion_matrix((0.0, 0.0, 0.0, 0.0))


def test_pose_x_is_position_and_rotation_vector_from_home(pose, rng):
    assert (pose.m, pose.k, pose.units) == (6, 7, "m")
    assert pose.labels == ["x", "y", "z", "rx", "ry", "rz"]
    np.testing.assert_allclose(pose.x(pose.home_active)[3:], 0.0, atol=1e-15)
    q = pose.robot.sample(rng, 10)
    t = pose.robot.fk(q)
    x = pose.x(q)
    np.testing.assert_array_equal(x[:, :3], t[:, :3, 3])
    np.testing.assert_allclose(pose.rotation(x), t[:, :3, :3], atol=1e-12)
    np.testing.assert_allclose(pose.x_from_pose(t[:, :3, 3], t[:, :3, :3]), x, atol=1e-12)


def test_pose_jacobian_is_the_blogs_cross_product_form(pose, rng):
    """Column j: linear z_j x (p - o_j), angular z_j (z_j, o_j: joint j's axis and origin)."""
    robot = pose.robot
    for q in robot.sample(rng, 3):
        frames = robot.frames(q)                     # base, joints 1..n, tool
        p = frames[-1, :3, 3]
        z = frames[1:-1, :3, 2]
        o = frames[1:-1, :3, 3]
        jac = pose.jacobian(q)
        np.testing.assert_allclose(jac[:3], np.cross(z, p - o).T, atol=1e-12)
        np.testing.assert_allclose(jac[3:], z.T, atol=1e-12)


def test_error_is_the_log_map_not_a_difference_of_rotation_vectors(pose):
    """Two orientations 0.02 rad apart across the wrap at pi: their rotation vectors
    differ by ~2 pi, the error is 0.02 rad about the axis."""
    a = np.array([0.0, 0.0, 0.0, 0.0, 0.0, np.pi - 0.01])
    b = np.array([0.0, 0.0, 0.0, 0.0, 0.0, -(np.pi - 0.01)])
    e = pose.error(a, b)
    np.testing.assert_allclose(e, [0, 0, 0, 0, 0, 0.02], atol=1e-12)
    assert np.linalg.norm(b - a) > 6.2
    # Small rotations about other axes compose, not add: R* R^T's angle.
    r_star, r = so3_exp([0.3, -0.2, 0.5]), so3_exp([-0.4, 0.1, 0.2])
    e = pose.error(np.r_[0, 0, 0, [-0.4, 0.1, 0.2]], np.r_[0.1, 0, 0, [0.3, -0.2, 0.5]])
    np.testing.assert_allclose(so3_exp(e[3:]) @ r, r_star, atol=1e-12)
    assert e[0] == 0.1


def test_other_tasks_keep_the_subtraction_bit_for_bit(gen3, rng):
    for name in ("single_point", "multi_point", "visual_servo"):
        task = make_task(name, gen3)
        assert error_fn(task) is None
        qa = task.select(gen3.sample(rng, 4))
        x, xs = task.x(qa), task.x(task.select(gen3.sample(rng, 4)))
        np.testing.assert_array_equal(task.error(x, xs), xs - x)
        jac = task.jacobian(qa)
        a, _ = control_step(jac, x, xs, qa, ControlConfig.paper())
        b, _ = control_step(jac, x, xs, qa, ControlConfig.paper(), error_fn=task.error)
        np.testing.assert_array_equal(a, b)


def test_pose_distance_is_position_and_angle_within_thresholds(pose):
    x = np.zeros(6)
    target = np.array([0.003, 0.004, 0.0, 0.0, 0.0, 0.2])    # 5 mm, 0.2 rad
    assert task_distance(x, target, "position") == pytest.approx(0.005)
    assert task_distance(x, target, "angle") == pytest.approx(0.2)
    assert task_distance(x, target, "pose") == pytest.approx(0.02)   # 0.1 m/rad x 0.2
    assert pose.distance(x, target) == pytest.approx(0.02)
    assert protocol("pose").distance == "pose"


def test_nk_feature_jacobian_maps_to_the_geometric_one(pose, rng):
    """Neural Kinematics learns (p, R R_home^T entries); the map of their derivative
    is the geometric Jacobian (finite differences of the features)."""
    h = 1e-6
    for qa in pose.select(pose.robot.sample(rng, 3)):
        y = pose.nk_features(pose.x(qa))
        dy = np.stack([(pose.nk_features(pose.x(qa + h * e)) - pose.nk_features(
            pose.x(qa - h * e))) / (2 * h) for e in np.eye(pose.k)], axis=-1)
        np.testing.assert_allclose(pose.nk_jacobian(y, dy), pose.jacobian(qa), atol=1e-8)


def test_coordinate_jacobian_maps_to_the_geometric_one(pose, rng):
    h = 1e-6
    for qa in pose.select(pose.robot.sample(rng, 3)):
        x = pose.x(qa)
        if np.linalg.norm(x[3:]) > 3.0:        # stay off the wrap for differences of phi
            continue
        dx = np.stack([(pose.x(qa + h * e) - pose.x(qa - h * e)) / (2 * h)
                       for e in np.eye(pose.k)], axis=-1)
        np.testing.assert_allclose(pose.coordinate_to_geometric(x, dx), pose.jacobian(qa),
                                   atol=1e-7)


def test_true_jacobian_servo_reaches_pose_targets_better_than_subtracting_rotvecs(pose):
    """The control law with the log-map error and the true J, 20 targets of the pose
    protocol (joints masked before their limits, which stop some): 13 end within 1 mm and
    0.01 rad; with x* - x (a difference of rotation vectors) 10."""
    from uvs_core.estimators import make_estimator

    goals = pose.sample_targets(np.random.default_rng(0), 20)
    opts = protocol("pose").rollout_options(pose.robot.n)

    def reached(task):
        r = rollout(task, make_estimator("tj", task), goals, **opts)
        return int(np.sum((task_distance(r.x_final, goals, "position") < 1e-3)
                          & (task_distance(r.x_final, goals, "angle") < 1e-2)))

    class Subtracting(type(pose)):
        def error(self, x, x_star):
            return np.asarray(x_star, dtype=float) - np.asarray(x, dtype=float)

    naive = Subtracting(pose.robot, pose.config)
    assert (reached(pose), reached(naive)) == (13, 10)


def test_broyden_secant_uses_the_log_map_across_the_wrap(pose):
    """Broyden (alpha 1) meets the latest secant condition J dq = e(x_prev, x): across the
    rotation vector's wrap the orientation moved 0.02 rad, not ~2 pi. The batched
    Broyden of the benchmark does the same."""
    from uvs_core.estimators import make_estimator
    from uvs_core.evaluation import BatchedBroyden

    est = make_estimator("broyden", pose, initial_jacobian=np.zeros((6, 7)).tolist())
    est.reset()
    q0, q1 = np.zeros(7), np.full(7, 0.01)
    x0 = np.array([0.4, 0.0, 0.5, 0.0, 0.0, np.pi - 0.01])
    x1 = np.array([0.41, 0.0, 0.5, 0.0, 0.0, -(np.pi - 0.01)])
    est.update(q0, x0)
    est.update(q1, x1)
    np.testing.assert_allclose(est.estimate(q1) @ (q1 - q0), [0.01, 0, 0, 0, 0, 0.02],
                               atol=1e-12)
    batched = BatchedBroyden.from_estimator(est, 2)
    batched.update(np.stack([q0, q0]), np.stack([x0, x0]))
    batched.update(np.stack([q1, q1]), np.stack([x1, x1]))
    np.testing.assert_allclose(batched.jacobian[0] @ (q1 - q0), [0.01, 0, 0, 0, 0, 0.02],
                               atol=1e-12)
