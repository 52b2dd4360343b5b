# Over 600 lines: the tests of one module, uvs_core.control, in the order of its sections.
"""The control law (paper Eq. 1): numeric ground truth, safety checks, batches, closed loop."""

import math

import numpy as np
import pytest

from uvs_core.control import (
    HALT_JOINT_LIMIT,
    HALT_NONE,
    HALT_NONFINITE_JACOBIAN,
    HALT_NONFINITE_STATE,
    HALT_SINGULAR,
    ControlConfig,
    ServoMonitor,
    condition_number,
    control_step,
    midrange_gradient,
    pseudo_inverse,
    task_rank,
)
from uvs_core.robot import load_robot
from uvs_core.sim import Simulation
from uvs_core.tasks import make_task

INF = math.inf
# No condition checks, no velocity cap, no margin: the bare law dq = gain J+ (x* - x).
BARE = ControlConfig(cond_slowdown=INF, cond_halt=INF, max_joint_velocity=INF,
                     joint_limit_margin=0.0)


def _diag_jacobian(singular_values, k=7):
    """(m, k) Jacobian with the given singular values on the diagonal."""
    s = np.asarray(singular_values, dtype=float)
    jac = np.zeros((s.size, k))
    jac[np.arange(s.size), np.arange(s.size)] = s
    return jac


@pytest.mark.parametrize("gain", [0.5, 1.0, 3.0])
def test_one_step_shrinks_a_linear_systems_error_by_gain_dt(rng, gain):
    # x = J q exactly, so after one Euler step of dt the error is (1 - gain dt) e.
    jac = rng.normal(size=(3, 7))
    q = rng.normal(size=7)
    x, x_star = jac @ q, rng.normal(size=3)
    config = ControlConfig(gain=gain, cond_slowdown=INF, cond_halt=INF,
                           max_joint_velocity=INF, dt=0.05)
    qdot, info = control_step(jac, x, x_star, q, config)
    x_next = jac @ (q + 0.05 * qdot)
    np.testing.assert_allclose(x_star - x_next, (1 - gain * 0.05) * (x_star - x), atol=1e-12)
    np.testing.assert_allclose(qdot, gain * np.linalg.pinv(jac) @ (x_star - x), atol=1e-12)
    assert not info.halted and info.reason == HALT_NONE
    assert info.error_norm == pytest.approx(np.linalg.norm(x_star - x))
    assert info.scale == 1.0


def test_pseudo_inverse_matches_numpy_and_damped_least_squares_formula(rng):
    for shape in [(3, 7), (12, 7), (2, 2)]:
        jac = rng.normal(size=shape)
        np.testing.assert_allclose(pseudo_inverse(jac), np.linalg.pinv(jac), atol=1e-12)
        lam = 0.3
        dls = jac.T @ np.linalg.inv(jac @ jac.T + lam**2 * np.eye(shape[0])) \
            if shape[0] <= shape[1] else \
            np.linalg.inv(jac.T @ jac + lam**2 * np.eye(shape[1])) @ jac.T
        np.testing.assert_allclose(pseudo_inverse(jac, damping=lam), dls, atol=1e-12)
    # Rank-deficient J (the Gen3's straight home pose): pinv drops the null directions.
    jac = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]])
    np.testing.assert_allclose(pseudo_inverse(jac), np.linalg.pinv(jac), atol=1e-12)


def test_damping_shortens_the_step_and_vanishes_as_lambda_goes_to_zero(rng):
    jac = _diag_jacobian([1.0, 0.5, 0.01])  # nearly singular
    x, x_star = np.zeros(3), np.array([0.1, 0.1, 0.1])
    plain, _ = control_step(jac, x, x_star, config=BARE)
    damped, _ = control_step(jac, x, x_star,
                             config=ControlConfig(**{**BARE.__dict__, "damping": 0.1}))
    assert plain[2] == pytest.approx(0.1 / 0.01)
    assert damped[2] == pytest.approx(0.01 * 0.1 / (0.01**2 + 0.1**2))  # s / (s^2 + l^2) e
    assert np.linalg.norm(damped) < np.linalg.norm(plain) / 10
    tiny, _ = control_step(jac, x, x_star,
                           config=ControlConfig(**{**BARE.__dict__, "damping": 1e-9}))
    np.testing.assert_allclose(tiny, plain, rtol=1e-6)


def test_velocity_cap_scales_the_whole_vector_and_keeps_its_direction(rng):
    jac = rng.normal(size=(3, 7))
    x, x_star = np.zeros(3), np.array([5.0, -3.0, 2.0])
    free, _ = control_step(jac, x, x_star, config=BARE)
    config = ControlConfig(**{**BARE.__dict__, "max_joint_velocity": 1.22})
    capped, info = control_step(jac, x, x_star, config=config)
    assert np.max(np.abs(capped)) == pytest.approx(1.22)
    np.testing.assert_allclose(capped, free * (1.22 / np.max(np.abs(free))), atol=1e-12)
    assert info.velocity_scale == pytest.approx(1.22 / np.max(np.abs(free)))
    assert not info.halted
    # Per-joint limits: the tightest ratio decides for the whole vector.
    limits = np.full(7, 10.0)
    limits[3] = 0.1
    per_joint, _ = control_step(jac, x, x_star, config=BARE, velocity_limits=limits)
    np.testing.assert_allclose(per_joint, free * 0.1 / abs(free[3]), atol=1e-12)
    # Slow commands are untouched.
    slow, info = control_step(jac, x, x_star * 1e-4, config=config)
    np.testing.assert_allclose(slow, free * 1e-4, atol=1e-15)
    assert info.velocity_scale == 1.0


@pytest.mark.parametrize("cond, scale", [(5.0, 1.0), (17.0, 1.0), (23.5, 0.5), (26.75, 0.25),
                                         (29.99, 0.01 / 13), (30.0, 0.0), (1e6, 0.0)])
def test_condition_number_slows_down_linearly_and_halts(cond, scale):
    jac = _diag_jacobian([1.0, 0.5, 1.0 / cond])
    x, x_star = np.zeros(3), np.array([0.01, 0.01, 0.01])
    free, _ = control_step(jac, x, x_star, config=BARE)
    config = ControlConfig(cond_slowdown=17.0, cond_halt=30.0, max_joint_velocity=INF)
    qdot, info = control_step(jac, x, x_star, config=config)
    assert info.condition == pytest.approx(cond)
    assert info.cond_scale == pytest.approx(scale, abs=1e-9)
    np.testing.assert_allclose(qdot, free * scale, atol=1e-9)
    assert bool(info.halted) == (cond >= 30.0)
    assert info.reason == (HALT_SINGULAR if cond >= 30.0 else HALT_NONE)
    if cond >= 30:
        assert info.describe().startswith("near singularity (condition number")
    # inf disables the check, as in the paper's evaluation.
    unchecked, info = control_step(jac, x, x_star, config=BARE)
    assert not info.halted and info.cond_scale == 1.0


def test_condition_check_spares_motion_away_from_a_singularity():
    jac = _diag_jacobian([1.0, 0.5, 1.0 / 40.0])             # condition 40 > cond_halt
    x, x_star = np.zeros(3), np.array([0.01, 0.01, 0.01])
    config = ControlConfig(max_joint_velocity=INF)
    _, halted = control_step(jac, x, x_star, config=config)
    assert halted.halted
    # Unknown previous condition (first step, e.g. off a singular start pose): free.
    qdot, info = control_step(jac, x, x_star, config=config, prev_condition=np.nan)
    assert not info.halted and info.cond_scale == 1.0 and np.any(qdot != 0)
    # Falling condition number (moving away): free.
    _, info = control_step(jac, x, x_star, config=config, prev_condition=50.0)
    assert not info.halted
    # Not falling (approaching, or standing still while halted): halted.
    for prev in (40.0, 39.9, 35.0):
        _, info = control_step(jac, x, x_star, config=config, prev_condition=prev)
        assert info.halted and info.reason == HALT_SINGULAR


def test_condition_rank_ignores_structural_zero_singular_values(gen3, rng):
    task = make_task("multi_point", gen3)
    assert task_rank(task) == 6
    assert task_rank(make_task("single_point", gen3)) == 3
    assert task_rank(make_task("visual_servo", gen3)) == 2
    jac = task.jacobian(task.select(gen3.sample(rng, 1))[0])
    assert condition_number(jac) > 1e12              # 4 rigid points: rank 6 of 7
    s = np.linalg.svd(jac, compute_uv=False)
    assert condition_number(jac, rank=6) == pytest.approx(s[0] / s[5])
    assert condition_number(np.zeros((3, 7))) == INF
    assert np.isnan(condition_number(np.full((3, 7), np.nan)))


def test_multi_point_condition_measure_is_the_twist_jacobians_for_any_frame_scale(gen3, rng):
    q = gen3.sample(rng, 50)
    twist = gen3.jacobian(q, kind="pose")                      # (50, 6, 7): v of p, w
    expected = np.linalg.svd(twist, compute_uv=False)
    for scale in (0.05, 0.1, 0.2):
        task = make_task("multi_point", gen3, {"scale": scale})
        jac = task.jacobian(q)
        got = np.linalg.svd(task.condition_transform @ jac, compute_uv=False)
        np.testing.assert_allclose(got[:, :6], expected, rtol=1e-9, atol=1e-12)
        assert np.all(got[:, 6] < 1e-9)                         # rank 6 of 7
        np.testing.assert_allclose(
            condition_number(jac, rank=6, transform=task.condition_transform),
            expected[:, 0] / expected[:, 5], rtol=1e-9)
    # The raw stacked J's condition depends on the lever arm (here scale 0.1 vs 0.2).
    raw = [np.median(condition_number(make_task("multi_point", gen3, {"scale": s}).jacobian(q),
                                      rank=6)) for s in (0.1, 0.2)]
    assert raw[0] > 1.4 * raw[1]
    for name in ("single_point", "visual_servo"):
        assert make_task(name, gen3).condition_transform is None


def test_multi_point_condition_is_below_slowdown_away_from_and_above_halt_at_singularities(
        gen3):
    """Measured on 1000 uniform joint samples whose joints 2, 4 and 6 each stand at least
    0.3 rad from 0, where their axes align with their neighbours' (the Gen3's singular
    families): the twist measure stays below the slowdown threshold (max 72, median 14),
    while the raw 12x7 condition number exceeds MoveIt Servo's halt value 30 on 65 % of
    them (median 37). Near the straight arm q = 0, a true singularity, it stays above
    the halt threshold (min 751 over 500 poses within 0.02 rad of it)."""
    task = make_task("multi_point", gen3)
    slowdown, halt = task.cond_thresholds
    assert (slowdown, halt) == (100.0, 300.0)
    rng = np.random.default_rng(0)
    q = gen3.sample(rng, 3000)
    q = q[np.all(np.abs(q[:, [1, 3, 5]]) >= 0.3, axis=1)][:1000]
    assert len(q) == 1000
    jac = task.jacobian(q)
    measure = condition_number(jac, rank=task_rank(task), transform=task.condition_transform)
    assert np.max(measure) < slowdown and np.max(measure) == pytest.approx(72.1, abs=0.1)
    assert np.median(measure) == pytest.approx(13.5, abs=0.1)
    raw = condition_number(jac, rank=task_rank(task))
    assert np.mean(raw > 30.0) == pytest.approx(0.649, abs=0.001)
    assert np.median(raw) == pytest.approx(37.3, abs=0.1)

    straight = condition_number(task.jacobian(np.zeros(7)), rank=6,
                                transform=task.condition_transform)
    assert straight > 1e12
    near = rng.uniform(-0.02, 0.02, size=(500, 7))
    measure = condition_number(task.jacobian(near), rank=6, transform=task.condition_transform)
    assert np.min(measure) > halt and np.min(measure) == pytest.approx(750.6, abs=0.1)


def test_control_step_checks_the_condition_of_the_transformed_jacobian(gen3):
    task = make_task("multi_point", gen3)
    config = ControlConfig.for_task(task, max_joint_velocity=INF)
    assert (config.cond_slowdown, config.cond_halt) == (100.0, 300.0)
    assert ControlConfig.for_task(task, cond_halt=INF).cond_slowdown == 100.0
    assert ControlConfig.for_task(make_task("single_point", gen3)).cond_halt == 30.0
    qa = np.array([0.3, 0.6, -0.2, 1.2, 0.1, 0.8, 0.2])
    jac, x = task.jacobian(qa), task.x(qa)
    x_star = x + 0.01
    twist = float(condition_number(jac, rank=6, transform=task.condition_transform))
    raw = float(condition_number(jac, rank=6))
    assert twist < 17.0 < 30.0 < raw                       # the old check halted here
    qdot, info = control_step(jac, x, x_star, qa, config, rank=6,
                              condition_transform=task.condition_transform)
    assert info.condition == pytest.approx(twist) and not info.halted
    free, _ = control_step(jac, x, x_star, qa, BARE, rank=6)
    np.testing.assert_allclose(qdot, free, atol=1e-12)   # the transform leaves J+ alone
    _, old = control_step(jac, x, x_star, qa, ControlConfig(max_joint_velocity=INF), rank=6)
    assert old.halted and old.reason == HALT_SINGULAR
    with pytest.raises(ValueError, match="condition_transform"):
        control_step(jac, x, x_star, qa, config, rank=6, condition_transform=np.eye(3))


def test_joint_limit_zeroes_the_whole_arm_and_exempts_continuous_joints():
    jac = np.eye(3)
    lower = np.array([-2.0, -INF, -1.0])
    upper = np.array([2.0, INF, 1.0])
    config = ControlConfig(cond_slowdown=INF, cond_halt=INF, max_joint_velocity=INF,
                           joint_limit_margin=0.1, dt=0.1)
    x = np.zeros(3)
    # Joint 0 at 1.85 moving +1 rad/s would reach 1.95 > 2.0 - 0.1 within dt.
    qa = np.array([1.85, 0.0, 0.0])
    qdot, info = control_step(jac, x, np.array([1.0, 0.5, 0.2]), qa, config, lower, upper)
    assert info.halted and info.reason == HALT_JOINT_LIMIT
    np.testing.assert_array_equal(qdot, np.zeros(3))
    assert info.limit_joints.tolist() == [True, False, False]
    assert info.describe(joint_names=["j2", "j3", "j4"]) == "joint limit: j2"
    # Moving back from inside the margin is allowed.
    qdot, info = control_step(jac, x, np.array([-1.0, 0.0, 0.0]), np.array([1.95, 0, 0]),
                              config, lower, upper)
    assert not info.halted and qdot[0] == pytest.approx(-1.0)
    # Stopping short of the margin is allowed.
    qdot, info = control_step(jac, x, np.array([0.4, 0.0, 0.0]), qa, config, lower, upper)
    assert not info.halted
    # A continuous joint far past any angle is never limited.
    qdot, info = control_step(jac, x, np.array([0.0, 50.0, 0.0]), np.array([0, 100.0, 0]),
                              config, lower, upper)
    assert not info.halted and qdot[1] == pytest.approx(50.0)
    # Lower limit side.
    _, info = control_step(jac, x, np.array([0.0, 0.0, -1.0]), np.array([0, 0, -0.85]),
                           config, lower, upper)
    assert info.halted and info.limit_joints.tolist() == [False, False, True]


def test_non_finite_inputs_give_zero_with_a_reason(rng):
    jac = rng.normal(size=(3, 7))
    x, x_star, qa = np.zeros(3), np.ones(3), np.zeros(7)
    bad_j = jac.copy()
    bad_j[1, 2] = np.nan
    for args, reason in [((bad_j, x, x_star, qa), HALT_NONFINITE_JACOBIAN),
                         ((jac * np.inf, x, x_star, qa), HALT_NONFINITE_JACOBIAN),
                         ((jac, np.array([0, np.nan, 0]), x_star, qa), HALT_NONFINITE_STATE),
                         ((jac, x, np.array([np.inf, 0, 0]), qa), HALT_NONFINITE_STATE),
                         ((jac, x, x_star, np.full(7, np.nan)), HALT_NONFINITE_STATE)]:
        with np.errstate(all="raise"):   # no floating-point warnings leak out
            qdot, info = control_step(*args, config=ControlConfig(),
                                      lower=np.full(7, -2.0), upper=np.full(7, 2.0))
        np.testing.assert_array_equal(qdot, np.zeros(7))
        assert info.halted and info.reason == reason and info.scale == 0.0


def test_nullspace_term_moves_joints_to_mid_range_without_moving_the_task(rng):
    jac = rng.normal(size=(3, 7))
    lower, upper = np.full(7, -2.0), np.full(7, 2.0)
    lower[0], upper[0] = -INF, INF                        # continuous: no pull
    qa = np.array([1.0, 1.5, -1.0, 0.5, 0.0, 1.9, -1.9])
    x = x_star = np.zeros(3)                              # no task error at all
    config = ControlConfig(cond_slowdown=INF, cond_halt=INF, max_joint_velocity=INF,
                           nullspace_gain=2.0, joint_limit_margin=0.0)
    qdot, info = control_step(jac, x, x_star, qa, config, lower, upper)
    assert not info.halted
    np.testing.assert_allclose(jac @ qdot, np.zeros(3), atol=1e-12)   # in the null space
    y = 2.0 * midrange_gradient(qa, lower, upper)
    assert y[0] == 0.0 and y[5] == pytest.approx(-2.0 * 1.9 / 4.0)
    np.testing.assert_allclose(qdot, (np.eye(7) - np.linalg.pinv(jac) @ jac) @ y, atol=1e-12)
    assert qdot @ y > 0                                   # it descends H
    off, _ = control_step(jac, x, x_star, qa, ControlConfig(**{**config.__dict__,
                                                                "nullspace_gain": 0.0}),
                          lower, upper)
    np.testing.assert_array_equal(off, np.zeros(7))


def test_batched_equals_looped(rng):
    b, m, k = 12, 3, 7
    jac = rng.normal(size=(b, m, k))
    jac[1, 0, 0] = np.nan                              # non-finite J
    jac[2] = _diag_jacobian([1.0, 0.5, 1 / 25.0])      # slowed down
    jac[3] = _diag_jacobian([1.0, 0.5, 1 / 45.0])      # halted
    x = rng.normal(size=(b, m))
    x[4, 1] = np.inf                                   # non-finite x
    x_star = rng.normal(size=(b, m)) * 3               # some rows hit the velocity cap
    qa = rng.uniform(-1.5, 1.5, size=(b, k))
    qa[5, 1] = 2.19                                    # close to the limit
    lower = np.array([-INF, -2.25, -INF, -2.58, -INF, -2.1, -INF])
    upper = -lower
    prev = rng.uniform(10, 60, size=b)
    prev[6] = np.nan
    config = ControlConfig(damping=0.01, nullspace_gain=0.5, dt=0.05)
    qdot, info = control_step(jac, x, x_star, qa, config, lower, upper, prev_condition=prev)
    assert qdot.shape == (b, k) and info.halted.shape == (b,)
    assert set(info.reason.tolist()) >= {HALT_NONFINITE_JACOBIAN, HALT_NONFINITE_STATE}
    for i in range(b):
        qi, ii = control_step(jac[i], x[i], x_star[i], qa[i], config, lower, upper,
                              prev_condition=prev[i])
        np.testing.assert_allclose(qdot[i], qi, atol=1e-12, err_msg=f"row {i}")
        for name, batched, single in zip(info._fields, info, ii):
            np.testing.assert_allclose(np.asarray(batched[i], float), np.asarray(single, float),
                                       atol=1e-12, err_msg=f"row {i} {name}")
    # A shared target (m,) broadcasts over the batch.
    shared, _ = control_step(jac, x, x_star[0], qa, config, lower, upper)
    single, _ = control_step(jac[0], x[0], x_star[0], qa[0], config, lower, upper)
    np.testing.assert_allclose(shared[0], single, atol=1e-12)


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="x must have shape"):
        control_step(np.eye(3), np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="J must have shape"):
        control_step(np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="rank"):
        control_step(np.eye(3), np.zeros(3), np.zeros(3), rank=4)


@pytest.mark.parametrize("field, value", [
    ("gain", 0.0), ("gain", -1.0), ("gain", INF), ("damping", -0.1), ("dt", 0.0),
    ("max_joint_velocity", 0.0), ("joint_limit_margin", -0.01), ("nullspace_gain", -1.0),
    ("cond_slowdown", 0.5), ("cond_halt", 10.0), ("gain", math.nan), ("gain", "1"),
])
def test_config_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=field if field != "cond_halt" else "cond_"):
        ControlConfig(**{field: value})


def test_config_defaults_and_paper_preset():
    default = ControlConfig()
    assert (default.gain, default.damping, default.cond_slowdown, default.cond_halt,
            default.max_joint_velocity) == (1.0, 0.0, 17.0, 30.0, 1.22)
    paper = ControlConfig.paper()
    assert paper.cond_halt == INF and paper.joint_limit_margin == 0.0 and paper.dt == 0.05
    assert ControlConfig(cond_slowdown=INF, cond_halt=INF).cond_halt == INF


def test_monitor_converges_with_hysteresis():
    monitor = ServoMonitor(tolerance=0.01, resume_factor=1.5)
    assert monitor.update(0.02)[0].tolist() == [False]
    assert monitor.update(0.009)[0].tolist() == [True]
    assert monitor.update(0.012)[0].tolist() == [True]     # within 1.5 x tolerance
    assert monitor.update(0.016)[0].tolist() == [False]    # target moved: servo again
    assert monitor.update(np.nan)[0].tolist() == [False]


def test_monitor_stall_needs_a_full_window_of_no_progress():
    monitor = ServoMonitor(tolerance=0.001, stall_window=5, stall_fraction=0.05)
    # Steady progress (10 % per step): never stalled.
    for i in range(30):
        converged, stalled = monitor.update(1.0 * 0.9**i)
        assert not stalled[0]
    # The error stops falling: stalled once 5 steps have passed without 5 % progress.
    flags = [monitor.update(0.9**29)[1][0] for _ in range(7)]
    assert flags == [False] * 4 + [True] * 3
    # Rising error counts as no progress too.
    monitor.reset()
    assert [monitor.update(0.1 + 0.01 * i)[1][0] for i in range(7)] == [False] * 5 + [True] * 2
    monitor.reset()
    assert not monitor.stalled[0]
    assert [monitor.update(0.5)[1][0] for _ in range(6)] == [False] * 5 + [True]


def test_monitor_is_batched_and_resets_per_row():
    monitor = ServoMonitor(tolerance=0.01, stall_window=3, batch=3)
    for _ in range(4):
        converged, stalled = monitor.update(np.array([0.5, 0.005, 0.5]))
    assert converged.tolist() == [False, True, False]
    assert stalled.tolist() == [True, False, True]
    monitor.reset(np.array([True, False, False]))
    converged, stalled = monitor.update(np.array([0.5, 0.005, 0.5]))
    assert stalled.tolist() == [False, False, True]
    with pytest.raises(ValueError):
        ServoMonitor(tolerance=0.0)


def test_closed_loop_with_the_true_jacobian_reaches_gen3_targets(gen3):
    """Algorithm 1 with the true J in the kinematic sim, from the home pose (singular:
    the arm stands straight) to 10 reachable targets, 100 steps of 0.05 s.

    In the linear regime the error contracts by (1 - gain dt) per step: with gain 2
    that is 0.9**100 ~ 3e-5, so an initial error of ~1.3 m (the farthest targets)
    ends far below 1 cm; with the paper's gain 1, 0.95**100 ~ 6e-3 leaves the
    farthest ones near 1 cm. Measured with 200 targets: 97 % within 1 cm; the rest
    stop at a joint limit or leave the singular start slowly under the velocity
    cap. 8/10 leaves room for that on this seed.
    """
    task = make_task("single_point", gen3, {"home": [0.0] * 7})
    targets = task.sample_targets(np.random.default_rng(7), 10)
    sim = Simulation(task, dt=0.05, batch=10, velocity_limits=1.22)
    x = sim.reset()
    lower, upper = gen3.lower[task.active], gen3.upper[task.active]
    config = ControlConfig(gain=2.0, dt=0.05)
    monitor = ServoMonitor(tolerance=0.005, batch=10)
    prev = np.full(10, np.nan)
    for _ in range(100):
        qdot, info = control_step(task.jacobian(sim.qa), x, targets, sim.qa, config, lower,
                                  upper, prev_condition=prev, rank=task_rank(task))
        prev = info.condition
        converged, _ = monitor.update(info.error_norm)
        qdot[converged] = 0.0
        x = sim.step(qdot).x
    final = np.linalg.norm(targets - x, axis=1)
    assert np.sum(final < 0.01) >= 8, final
    assert np.sum(monitor.converged) >= 8


def _closed_loop(task, targets, config, steps):
    """tj servo of a batch from the task's home: (final |x* - x|, reason codes at the end)."""
    lower, upper = task.robot.lower[task.active], task.robot.upper[task.active]
    sim = Simulation(task, dt=config.dt, batch=len(targets), velocity_limits=1.22)
    x = sim.reset()
    monitor = ServoMonitor(tolerance=0.005, batch=len(targets))
    prev = np.full(len(targets), np.nan)
    reason = np.zeros(len(targets), dtype=int)
    for _ in range(steps):
        qdot, info = control_step(task.jacobian(sim.qa), x, targets, sim.qa, config, lower,
                                  upper, prev_condition=prev, rank=task_rank(task))
        prev = info.condition
        converged, _ = monitor.update(info.error_norm)
        qdot[converged] = 0.0
        reason = np.where(converged, HALT_NONE, info.reason)
        x = sim.step(qdot).x
    return np.linalg.norm(targets - x, axis=1), reason


def test_joint_limit_lock_goes_round_limits_that_halt_stops_at(gen3):
    """From the graph's start pose (the paper's), 40 targets, tj, 200 steps: "halt"
    zeroes the arm at the first predicted limit and leaves many targets unreached;
    "lock" locks that joint and solves with the other six. Measured: halt 22/40 with
    every miss a joint-limit halt, lock 40/40 (python benchmarks/limit_policy.py
    measures 200 targets)."""
    task = make_task("single_point", gen3)
    np.testing.assert_array_equal(task.home, [0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0])
    targets = task.sample_targets(np.random.default_rng(7), 40)
    results = {}
    for policy in ("halt", "lock"):
        config = ControlConfig.for_task(task, joint_limit_policy=policy)
        results[policy] = _closed_loop(task, targets, config, steps=200)
    halt_final, halt_reason = results["halt"]
    lock_final, lock_reason = results["lock"]
    assert np.sum(lock_final < 0.005) >= 39, lock_final
    assert np.sum(halt_final < 0.005) <= 30, halt_final
    missed = halt_final >= 0.005
    assert np.all(halt_reason[missed] == HALT_JOINT_LIMIT)
    assert not np.any(lock_reason == HALT_JOINT_LIMIT)


def test_joint_limit_lock_halts_when_no_joint_is_left():
    """A 1x2 task whose only useful joint is at its limit: lock finds no way and halts
    with the joint-limit reason; a target reachable by the free joint is served by it;
    a joint short of its limit moves at the speed that reaches it at the look-ahead."""
    jac = np.array([[1.0, 0.0]])       # x = q0 only
    config = ControlConfig(joint_limit_policy="lock", cond_slowdown=math.inf,
                           cond_halt=math.inf, joint_limit_margin=0.0)
    lower, upper = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    qdot, info = control_step(jac, np.array([1.0]), np.array([2.0]), np.array([1.0, 0.0]),
                              config, lower, upper)
    assert info.halted and info.reason == HALT_JOINT_LIMIT
    np.testing.assert_array_equal(qdot, [0.0, 0.0])
    np.testing.assert_array_equal(info.limit_joints, [True, False])
    jac2 = np.array([[1.0, 1.0]])      # x = q0 + q1: q1 can do q0's share
    qdot, info = control_step(jac2, np.array([1.0]), np.array([1.5]), np.array([1.0, 0.0]),
                              config, lower, upper)
    assert not info.halted and qdot[0] == 0.0 and qdot[1] > 0.0
    np.testing.assert_array_equal(info.limit_joints, [True, False])
    # 0.01 rad short of the limit with a 0.05 s look-ahead: joint 0 moves at 0.2 rad/s,
    # joint 1 takes the rest of the 0.5 task velocity (gain 1, error 0.5: 0.5 - 0.2).
    qdot, info = control_step(jac2, np.array([0.99]), np.array([1.49]), np.array([0.99, 0.0]),
                              config, lower, upper)
    np.testing.assert_allclose(qdot, [0.2, 0.3], atol=1e-12)
    np.testing.assert_array_equal(info.limit_joints, [True, False])
    with pytest.raises(ValueError, match="joint_limit_policy"):
        ControlConfig(joint_limit_policy="ignore")


def test_joint_limit_mask_zeroes_the_limited_joint_and_keeps_the_others_command():
    """mask (the paper's reference rule): the joint that would pass its limit within the
    look-ahead gets 0, the others keep exactly their unconstrained command, no halt."""
    jac = np.array([[1.0, 1.0]])
    lower, upper = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    free = ControlConfig(cond_slowdown=INF, cond_halt=INF, joint_limit_margin=0.0)
    mask = ControlConfig(cond_slowdown=INF, cond_halt=INF, joint_limit_margin=0.0,
                         joint_limit_policy="mask", limit_lookahead=0.5)
    q = np.array([0.9, 0.0])
    unconstrained, _ = control_step(jac, np.array([0.9]), np.array([1.9]), q, free)
    np.testing.assert_allclose(unconstrained, [0.5, 0.5])   # J+ e, e = 1
    qdot, info = control_step(jac, np.array([0.9]), np.array([1.9]), q, mask, lower, upper)
    # joint 0 would reach 0.9 + 0.5 * 0.5 = 1.15 > 1 within 0.5 s: masked; joint 1 keeps
    # 0.5 (not re-solved to 1.0, as lock would)
    np.testing.assert_allclose(qdot, [0.0, 0.5])
    assert not info.halted and info.reason == HALT_NONE
    np.testing.assert_array_equal(info.limit_joints, [True, False])
    # every joint limited: zero command, still not a halt (the rollout goes on)
    qdot, info = control_step(jac, np.array([1.8]), np.array([2.8]), np.array([0.9, 0.9]),
                              mask, lower, upper)
    np.testing.assert_array_equal(qdot, [0.0, 0.0])
    assert not info.halted


def test_velocity_limit_clip_caps_each_joint_where_scale_keeps_the_direction():
    """A command over the 1.22 rad/s cap: scale divides the whole vector by the largest
    ratio (direction kept); clip caps only the joints over it (the paper's rollout)."""
    jac = np.eye(3)
    x, target = np.zeros(3), np.array([2.44, 0.5, -0.1])     # gain 1: qdot = e
    scaled, info_s = control_step(jac, x, target, config=ControlConfig(
        cond_slowdown=INF, cond_halt=INF, velocity_limit_mode="scale"))
    clipped, info_c = control_step(jac, x, target, config=ControlConfig(
        cond_slowdown=INF, cond_halt=INF, velocity_limit_mode="clip"))
    np.testing.assert_allclose(scaled, [1.22, 0.25, -0.05])
    np.testing.assert_allclose(clipped, [1.22, 0.5, -0.1])
    assert info_s.velocity_scale == pytest.approx(0.5)
    assert info_c.velocity_scale == pytest.approx(0.5)      # the largest joint's
    with pytest.raises(ValueError, match="velocity_limit_mode"):
        ControlConfig(velocity_limit_mode="wrap")


def test_inverse_rank_drops_the_noise_singular_value_of_a_learned_multi_point_j(gen3):
    """A 12x7 multi-point J has rank 6 (x is a function of the 6-DOF tool pose). A
    learned one carries a small noise 7th singular value whose inverse dominates the
    plain pseudo-inverse's command; inverse_rank=6 leaves it out and recovers the true
    J's command."""
    task = make_task("multi_point", gen3)
    qa = task.home_active + 0.3
    jac = task.jacobian(qa)
    u, s, vt = np.linalg.svd(jac, full_matrices=False)
    assert s[6] < 1e-12 * s[0]
    noisy = jac + 1e-4 * np.outer(u[:, 6], vt[6])          # 7th value 1e-4
    x = task.x(qa)
    target = x + 0.01 * u[:, 6] + 0.05 * u[:, 0]
    free = ControlConfig(cond_slowdown=math.inf, cond_halt=math.inf,
                         max_joint_velocity=math.inf)
    exact, _ = control_step(jac, x, target, config=free)
    plain, _ = control_step(noisy, x, target, config=free)
    truncated, _ = control_step(noisy, x, target, config=free, inverse_rank=6)
    assert np.linalg.norm(plain) > 50 * np.linalg.norm(exact)
    np.testing.assert_allclose(truncated, exact, atol=1e-6 * np.linalg.norm(exact))


# ------------------------------------------------------------ feed-forward (moving targets)
@pytest.mark.parametrize("config", [
    BARE,
    ControlConfig(),                                              # condition checks, cap
    ControlConfig(joint_limit_policy="lock", nullspace_gain=0.5, damping=0.01),
    ControlConfig(velocity_limit_mode="clip", joint_limit_policy="mask"),
])
def test_a_zero_or_absent_target_velocity_is_the_law_without_it_bit_for_bit(rng, config):
    task = make_task("single_point", load_robot("gen3"))
    qa = rng.uniform(-1.5, 1.5, size=(16, 7))
    qa[:4, 1] = task.robot.upper[1] - 0.01          # some at a joint limit
    jac = task.jacobian(qa)
    x = task.x(qa)
    x_star = x + rng.normal(scale=0.2, size=x.shape)
    kwargs = dict(velocity_limits=task.robot.velocity_limits, rank=3,
                  prev_condition=np.full(16, np.nan))
    base, info = control_step(jac, x, x_star, qa, config, task.robot.lower,
                              task.robot.upper, **kwargs)
    for zero in (None, np.zeros(3), np.zeros((16, 3))):
        qdot, info0 = control_step(jac, x, x_star, qa, config, task.robot.lower,
                                   task.robot.upper, x_star_dot=zero, **kwargs)
        assert np.array_equal(qdot, base)
        for a, b in zip(info, info0):
            assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("gain", [0.5, 1.0, 3.0])
def test_feed_forward_adds_the_target_velocity_through_the_pseudo_inverse(rng, gain):
    # A linear system x = J q: qdot = J+ (xdot* + gain e), so x moves by dt (xdot* + gain e)
    # and the error to the moved target x* + dt xdot* shrinks by (1 - gain dt) exactly.
    jac = rng.normal(size=(3, 7))
    q = rng.normal(size=7)
    x, x_star, v = jac @ q, rng.normal(size=3), rng.normal(size=3)
    config = ControlConfig(gain=gain, cond_slowdown=INF, cond_halt=INF,
                           max_joint_velocity=INF, dt=0.05)
    qdot, info = control_step(jac, x, x_star, q, config, x_star_dot=v)
    np.testing.assert_allclose(qdot, np.linalg.pinv(jac) @ (v + gain * (x_star - x)),
                               atol=1e-12)
    x_next = jac @ (q + 0.05 * qdot)
    np.testing.assert_allclose((x_star + 0.05 * v) - x_next, (1 - gain * 0.05) * (x_star - x),
                               atol=1e-12)
    # |x* - x| is still the position error, whatever the velocity
    assert info.error_norm == pytest.approx(np.linalg.norm(x_star - x))
    # On target, the command is the feed-forward alone.
    qdot, _ = control_step(jac, x, x, q, config, x_star_dot=v)
    np.testing.assert_allclose(jac @ qdot, v, atol=1e-12)


def test_feed_forward_keeps_the_velocity_cap_and_halts_on_a_non_finite_velocity(rng):
    jac = rng.normal(size=(3, 7))
    q = np.zeros(7)
    x = jac @ q
    config = ControlConfig(cond_slowdown=INF, cond_halt=INF, max_joint_velocity=0.5)
    v = np.array([30.0, -20.0, 10.0])                  # far over the cap
    qdot, info = control_step(jac, x, x, q, config, x_star_dot=v)
    raw = np.linalg.pinv(jac) @ v
    assert np.max(np.abs(qdot)) == pytest.approx(0.5)
    np.testing.assert_allclose(qdot, raw * 0.5 / np.max(np.abs(raw)), atol=1e-12)
    assert info.velocity_scale == pytest.approx(0.5 / np.max(np.abs(raw)))
    qdot, info = control_step(jac, x, x, q, config, x_star_dot=[np.nan, 0.0, 0.0])
    assert info.halted and info.reason == HALT_NONFINITE_STATE
    np.testing.assert_array_equal(qdot, np.zeros(7))
    with pytest.raises(ValueError, match="x_star_dot"):
        control_step(jac, x, x, q, config, x_star_dot=np.zeros(2))


def test_feed_forward_batch_equals_loop(rng):
    task = make_task("single_point", load_robot("gen3"))
    qa = rng.uniform(-1.0, 1.0, size=(8, 7))
    jac, x = task.jacobian(qa), task.x(qa)
    x_star = x + rng.normal(scale=0.05, size=x.shape)
    v = rng.normal(scale=0.1, size=x.shape)
    v[::2] = 0.0                                     # zero and non-zero rows mixed
    config = ControlConfig(joint_limit_policy="lock")
    batch, _ = control_step(jac, x, x_star, qa, config, task.robot.lower, task.robot.upper,
                            rank=3, x_star_dot=v)
    for i in range(8):
        one, _ = control_step(jac[i], x[i], x_star[i], qa[i], config, task.robot.lower,
                              task.robot.upper, rank=3, x_star_dot=v[i])
        np.testing.assert_allclose(batch[i], one, atol=1e-12)
