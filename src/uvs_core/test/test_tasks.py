"""Tasks: forward maps, true Jacobians, camera, targets."""

import numpy as np
import pytest

from uvs_core.babble import babble
from uvs_core.robot import load_robot
from uvs_core.tasks import TASK_NAMES, PinholeCamera, look_at, make_task

SHAPES = {"single_point": (3, None), "multi_point": (12, None), "visual_servo": (2, 2),
          "pose": (6, None)}


@pytest.mark.parametrize("robot_name", ["gen3", "ur5e"])
@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_task_shapes_and_jacobian_matches_finite_differences(robot_name, task_name, rng,
                                                             central_difference):
    """True Jacobian vs central differences of the task's error from x(qa), e(x(qa), x(q))
    (x(q) - x(qa) for every task but pose, whose orientation error is the log map).
    Tolerance: 1e-8 per unit of the largest entry (round-off ~eps*|x|/h is 1e-8 px for
    |x| ~ 500 px, h = 1e-5)."""
    robot = load_robot(robot_name)
    task = make_task(task_name, robot)
    m, k = SHAPES[task_name]
    k = robot.n if k is None else k
    assert (task.m, task.k, len(task.labels)) == (m, k, m)
    for q in robot.sample(rng, 4):
        qa = task.select(q)
        jac = task.jacobian(qa)
        assert jac.shape == (m, k) and task.x(qa).shape == (m,)
        x0 = task.x(qa)
        numeric = central_difference(lambda q, x0=x0: task.error(x0, task.x(q)), qa)
        np.testing.assert_allclose(jac, numeric, atol=1e-8 * max(1.0, np.abs(jac).max()))


@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_task_batched_equals_looped(gen3, task_name, rng):
    task = make_task(task_name, gen3)
    qa = task.select(gen3.sample(rng, 5))
    for fn in (task.x, task.jacobian):
        batched = fn(qa)
        np.testing.assert_allclose(batched, np.stack([fn(row) for row in qa]), atol=1e-12)
        np.testing.assert_allclose(fn(qa[None]), batched[None], atol=1e-12)


def test_single_point_is_the_tool_position(gen3, rng):
    task = make_task("single_point", gen3)
    q = gen3.sample(rng, 3)
    np.testing.assert_array_equal(task.x(q), gen3.position(q))
    np.testing.assert_array_equal(task.jacobian(q), gen3.jacobian(q))
    assert task.units == "m" and task.labels == ["x", "y", "z"]


@pytest.mark.parametrize("scale", [0.1, 0.25])
def test_multi_point_frame_geometry(gen3, rng, scale):
    config = None if scale == 0.1 else {"scale": scale}
    task = make_task("multi_point", gen3, config)
    assert task.scale == scale
    q = gen3.sample(rng, 8)
    x = task.x(q).reshape(8, 4, 3)
    t = gen3.fk(q)
    np.testing.assert_allclose(x[:, 0], t[:, :3, 3], atol=1e-15)
    offsets = x[:, 1:] - x[:, :1]                         # (8, 3, 3) rows = s R e_i
    np.testing.assert_allclose(offsets, scale * np.swapaxes(t[:, :3, :3], 1, 2), atol=1e-14)
    np.testing.assert_allclose(offsets @ np.swapaxes(offsets, 1, 2),
                               np.broadcast_to(scale**2 * np.eye(3), (8, 3, 3)), atol=1e-14)


def test_select_expand_round_trip(gen3, rng):
    task = make_task("visual_servo", gen3)
    np.testing.assert_array_equal(task.active, [1, 3])
    q = gen3.sample(rng, 4)
    expanded = task.expand(task.select(q))
    np.testing.assert_array_equal(expanded[:, [1, 3]], q[:, [1, 3]])
    np.testing.assert_array_equal(expanded[:, [0, 2, 4, 5, 6]],
                                  np.broadcast_to(gen3.home[[0, 2, 4, 5, 6]], (4, 5)))
    with pytest.raises(ValueError, match="shape"):
        task.expand(np.zeros(3))


def test_camera_projection_values(central_difference):
    cam = PinholeCamera(fx=500.0, fy=400.0, cx=320.0, cy=240.0, width=640, height=480,
                        T_base_cam=look_at([0.0, -2.0, 0.0], [0.0, 0.0, 0.0]))
    # Optical frame: z along +y (viewing direction), x along +x (right), y along -z (down).
    np.testing.assert_allclose(cam.T_base_cam[:3, :3], [[1, 0, 0], [0, 0, 1], [0, -1, 0]],
                               atol=1e-15)
    np.testing.assert_allclose(cam.project(np.zeros(3)), [320.0, 240.0])
    np.testing.assert_allclose(cam.project([[0.5, 0.0, 0.0], [0.0, 0.0, 0.4], [0.0, 2.0, 0.0]]),
                               [[320.0 + 500 * 0.5 / 2, 240.0], [320.0, 240.0 - 400 * 0.4 / 2],
                                [320.0, 240.0]])
    np.testing.assert_array_equal(cam.in_view([[0.0, 0.0, 0.0], [0.0, -3.0, 0.0],
                                               [5.0, 0.0, 0.0], [0.0, 0.0, 1.3]]),
                                  [True, False, False, False])
    p = np.array([0.3, 0.5, -0.2])
    np.testing.assert_allclose(cam.project_jacobian(p), central_difference(cam.project, p),
                               atol=1e-6)


def test_visual_servo_defaults_keep_marker_in_view_and_well_conditioned(gen3):
    """The 2x2 image Jacobian is well conditioned at the start and along babbling, and
    the marker never leaves the image."""
    task = make_task("visual_servo", gen3)
    assert task.units == "px" and task.labels == ["u", "v"]
    np.testing.assert_allclose(task.home, np.array([0, 0, 0, 1.5708, 0, 0, 0]))
    assert np.linalg.cond(task.jacobian(task.home_active)) < 5.0
    data = babble(task, 5000, seed=3)
    assert task.in_view_q(data.q).all()
    assert task.valid(data.x).all()
    cond = np.linalg.cond(task.jacobian(task.select(data.q)))
    assert np.median(cond) < 5.0
    assert np.percentile(cond, 90) < 10.0
    # Two joints over their whole range stay in view too (the sampled targets need it).
    rng = np.random.default_rng(0)
    assert task.in_view_q(task.expand(task.select(gen3.sample(rng, 5000)))).all()


def test_sample_targets_are_fk_of_uniform_samples(gen3):
    task = make_task("single_point", gen3)
    targets = task.sample_targets(np.random.default_rng(7), 110)
    expected = gen3.position(gen3.sample(np.random.default_rng(7), 110))
    np.testing.assert_allclose(targets, expected, atol=1e-15)
    multi = make_task("multi_point", gen3).sample_targets(np.random.default_rng(7), 20)
    assert multi.shape == (20, 12)


def test_visual_servo_targets_in_view(gen3):
    narrow = {"camera": {"fx": 2000.0, "fy": 2000.0}}          # narrow view: rejections
    task = make_task("visual_servo", gen3, narrow)
    targets = task.sample_targets(np.random.default_rng(1), 200)
    assert targets.shape == (200, 2)
    assert np.all((targets >= 0) & (targets < [640, 480]))


def test_config_overrides_robot_defaults(gen3):
    task = make_task("visual_servo", gen3, {"active_joints": ["joint_1", 5],
                                            "home": {"joint_2": 0.3}})
    np.testing.assert_array_equal(task.active, [0, 5])
    assert task.q_fixed[1] == 0.3 and task.q_fixed[3] == pytest.approx(1.5708)
    assert task.camera.fx == 500.0                            # kept from gen3.yaml


@pytest.mark.parametrize("config, problem", [
    ({"active_joints": ["joint_9"]}, "unknown joint"),
    ({"active_joints": [1, 1]}, "distinct"),
    ({"home": {"joint_2": 3.0}}, "outside the joint limits"),
])
def test_bad_task_config(gen3, config, problem):
    with pytest.raises(ValueError, match=problem):
        make_task("visual_servo", gen3, config)


def test_unknown_task(gen3):
    with pytest.raises(ValueError, match="unknown task"):
        make_task("reach_the_moon", gen3)
