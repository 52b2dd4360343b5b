"""Kinematic simulation: integration, velocity scaling, joint limits, batches."""

import numpy as np
import pytest

from uvs_core.sim import Simulation, scale_velocity
from uvs_core.tasks import make_task

# These tests start at the straight arm, q = 0 (gen3.yaml's single_point starts bent).
STRAIGHT = {"home": [0.0] * 7}


def test_step_moves_q_by_dt_qdot(gen3):
    task = make_task("single_point", gen3, STRAIGHT)
    sim = Simulation(task, dt=0.05)
    q0 = np.array([0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7])
    np.testing.assert_allclose(sim.reset(q0), gen3.position(q0)[None])
    qdot = np.array([0.3, -0.2, 0.1, 0.5, -0.4, 0.2, 1.0])
    result = sim.step(qdot)
    np.testing.assert_allclose(result.q, (q0 + 0.05 * qdot)[None], rtol=0, atol=1e-15)
    np.testing.assert_allclose(result.x, gen3.position(q0 + 0.05 * qdot)[None], atol=1e-15)
    np.testing.assert_array_equal(sim.x, result.x)
    np.testing.assert_array_equal(result.qdot, qdot[None])
    assert not result.scaled.any() and not result.clipped.any()


def test_over_limit_command_scaled_as_whole_vector(gen3):
    task = make_task("single_point", gen3, STRAIGHT)
    sim = Simulation(task, dt=0.1)
    lim = gen3.velocity_limits
    qdot = np.array([2.0, 0.5, -1.0, 0.0, 0.3, -0.9, 0.1]) * lim     # joint 1 at 2x its limit
    result = sim.step(qdot)
    assert result.scaled.tolist() == [True]
    applied = (result.q[0] - gen3.home) / 0.1
    np.testing.assert_allclose(applied, qdot / 2.0, atol=1e-14)       # ratio 2 on every joint
    np.testing.assert_allclose(result.qdot[0], qdot / 2.0, atol=1e-15)
    assert np.max(np.abs(applied) / lim) == pytest.approx(1.0)


def test_scale_velocity_function():
    limits = np.array([1.0, 2.0, 0.5])
    qdot = np.array([[0.5, 1.0, 0.25], [3.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    out = scale_velocity(qdot, limits)
    np.testing.assert_array_equal(out[0], qdot[0])                      # within: untouched
    np.testing.assert_allclose(out[1], qdot[1] / 3.0)
    np.testing.assert_allclose(out[2], qdot[2] / 2.0)
    assert np.all(np.abs(out) <= limits + 1e-15)
    np.testing.assert_allclose(scale_velocity([4.0, -2.0], 1.22), [1.22, -0.61])
    np.testing.assert_allclose(scale_velocity([4.0, -2.0], [np.inf, 1.0]), [2.0, -1.0])


def test_custom_velocity_cap(gen3):
    task = make_task("single_point", gen3, STRAIGHT)
    sim = Simulation(task, velocity_limits=1.22)            # the paper's cap
    result = sim.step(np.full(7, 2.44))
    np.testing.assert_allclose(result.qdot, np.full((1, 7), 1.22))


def test_joint_limits_clip_and_report(gen3):
    task = make_task("single_point", gen3, STRAIGHT)
    sim = Simulation(task, dt=0.05)
    sim.reset(np.array([0.0, 2.24, 0.0, -2.57, 0.0, 0.0, 3.1]))
    result = sim.step(np.array([1.0, 1.0, 0.0, -1.0, 0.0, 0.5, 1.0]))
    np.testing.assert_allclose(result.q[0], [0.05, 2.2497, 0.0, -2.5796, 0.0, 0.025, 3.15],
                               atol=1e-15)
    np.testing.assert_array_equal(result.clipped[0], [False, True, False, True, False, False,
                                                      False])
    assert gen3.in_limits(sim.q).all()
    # Continuous joint 7 passed pi without wrapping or clipping.
    assert result.q[0, 6] > np.pi


def test_per_joint_velocity_clip_changes_direction(gen3):
    """velocity_mode "clip" (the paper's simulator): each joint clipped on its own."""
    task = make_task("single_point", gen3, STRAIGHT)
    sim = Simulation(task, dt=0.05, velocity_limits=1.22, velocity_mode="clip")
    qdot = np.array([2.44, -3.0, 0.6, 0.0, -1.22, 1.0, -0.1])
    result = sim.step(qdot)
    expected = np.array([1.22, -1.22, 0.6, 0.0, -1.22, 1.0, -0.1])
    np.testing.assert_allclose(result.qdot[0], expected, atol=1e-15)
    np.testing.assert_allclose(result.q[0], gen3.home + 0.05 * expected, atol=1e-15)
    assert result.scaled.tolist() == [True]
    # Within the limits the command is applied as is and nothing is reported.
    result = sim.step(expected)
    assert result.scaled.tolist() == [False]
    with pytest.raises(ValueError, match="velocity_mode"):
        Simulation(task, velocity_mode="wrap")


def test_joint_limit_mask_zeroes_joints_ten_steps_from_a_limit(gen3):
    """limit_mode "mask" (the paper's simulator): qdot_j = 0 when q_j + 10 qdot_j dt
    would reach a limit; the other joints move; a joint moving away is free."""
    task = make_task("single_point", gen3, STRAIGHT)
    sim = Simulation(task, dt=0.05, limit_mode="mask")
    q0 = np.array([0.0, 2.0, 0.0, -2.4, 0.0, 1.5, 3.1])
    sim.reset(q0)
    # joint 2: 2.0 + 10*0.05*0.6 = 2.3 > 2.2497 -> masked; joint 4: -2.4 - 0.5*0.3 =
    # -2.55 > -2.5796 -> moves; joint 6: moving away from its upper limit -> moves;
    # continuous joint 7 never masked.
    qdot = np.array([0.2, 0.6, 0.0, -0.3, 0.0, -1.0, 1.0])
    result = sim.step(qdot)
    applied = np.array([0.2, 0.0, 0.0, -0.3, 0.0, -1.0, 1.0])
    np.testing.assert_allclose(result.qdot[0], applied, atol=1e-15)
    np.testing.assert_allclose(result.q[0], q0 + 0.05 * applied, atol=1e-15)
    np.testing.assert_array_equal(result.clipped[0], [False, True] + [False] * 5)
    # Pushed on, a masked joint never reaches its limit.
    for _ in range(200):
        sim.step(np.array([0.0, 1.2, 0.0, -1.2, 0.0, 1.2, 0.0]))
    assert (np.abs(sim.q[0, [1, 3, 5]]) < gen3.upper[[1, 3, 5]]).all()
    assert sim.q[0, 1] > 2.2497 - 10 * 0.05 * 1.2 - 1e-12
    with pytest.raises(ValueError, match="limit_mode"):
        Simulation(task, limit_mode="halt")


def test_batch_of_arms(gen3):
    task = make_task("single_point", gen3, STRAIGHT)
    sim = Simulation(task, dt=0.05, batch=3)
    assert sim.q.shape == (3, 7) and sim.x.shape == (3, 3)
    qdot = np.array([[0.1] * 7, [-0.2] * 7, [0.0] * 6 + [5.0]])
    result = sim.step(qdot)
    expected = np.array([[0.005] * 7, [-0.01] * 7, [0.0] * 6 + [0.05 * 1.222]])
    np.testing.assert_allclose(result.q, expected, atol=1e-15)
    np.testing.assert_array_equal(result.scaled, [False, False, True])
    np.testing.assert_allclose(result.x, gen3.position(expected), atol=1e-15)
    # A (k,) command goes to every arm.
    result = sim.step(np.full(7, 0.2))
    np.testing.assert_allclose(result.q - expected, np.full((3, 7), 0.01), atol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        sim.step(np.zeros((2, 7)))


def test_visual_servo_sim_moves_only_active_joints(gen3):
    task = make_task("visual_servo", gen3)
    sim = Simulation(task, batch=2)
    np.testing.assert_array_equal(sim.q, np.broadcast_to(task.q_fixed, (2, 7)))
    result = sim.step(np.array([[0.2, -0.4], [1.0, 0.0]]))
    assert result.clipped.shape == (2, 2) and result.x.shape == (2, 2)
    np.testing.assert_allclose(task.select(result.q) - task.home_active,
                               [[0.01, -0.02], [0.05, 0.0]], atol=1e-15)
    inactive = [0, 2, 4, 5, 6]
    np.testing.assert_array_equal(result.q[:, inactive],
                                  np.broadcast_to(task.q_fixed[inactive], (2, 5)))
    np.testing.assert_allclose(result.x, task.x(task.select(result.q)), atol=1e-12)


def test_reset_forces_inactive_joints_and_checks_shape(gen3):
    task = make_task("visual_servo", gen3)
    sim = Simulation(task, batch=2)
    sim.reset(np.full(7, 0.5))
    np.testing.assert_array_equal(sim.q[0], [0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(sim.qa, np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="shape"):
        sim.reset(np.zeros(2))
