"""The benchmark's metrics and batched rollout (uvs_core.evaluation): hand-made ground truth,
batch equals loop."""

import math

import numpy as np
import pytest

from uvs_core.control import ControlConfig, control_step, task_rank
from uvs_core.estimators import make_estimator
from uvs_core.estimators.classical import Broyden
from uvs_core.evaluation import (
    DESIGN_START,
    PAPER_START,
    PROTOCOL_VARIANTS,
    PROTOCOLS,
    BatchedBroyden,
    batched,
    bin_indices,
    binned_success,
    positive_definite,
    protocol,
    rollout,
    summarize,
    task_distance,
    threshold_success,
)
from uvs_core.robot import load_robot
from uvs_core.sim import Simulation
from uvs_core.tasks import make_task


@pytest.fixture(scope="module")
def robot():
    return load_robot("gen3")


@pytest.fixture(scope="module")
def single(robot):
    return make_task("single_point", robot)


def test_protocol_thresholds_are_the_papers():
    single = PROTOCOLS["single_point"].threshold_values
    multi = PROTOCOLS["multi_point"].threshold_values
    visual = PROTOCOLS["visual_servo"].threshold_values
    assert single.size == 100 and single[0] == pytest.approx(0.001) \
        and single[-1] == pytest.approx(0.1)
    assert multi.size == 250 and multi[-1] == pytest.approx(0.25)
    assert visual.size == 100 and visual[0] == 1.0 and visual[-1] == 100.0


def test_threshold_success_averages_over_thresholds():
    thresholds = np.array([0.01, 0.02, 0.03, 0.04])
    # 0.005 passes all 4, 0.025 passes 2 (0.03, 0.04), 1.0 passes none, NaN fails.
    final = np.array([0.005, 0.025, 1.0, np.nan])
    assert threshold_success(final, thresholds) == pytest.approx(100 * (4 + 2) / 16)
    # strictly below: a final distance equal to a threshold fails it
    assert threshold_success(np.array([0.02]), thresholds) == pytest.approx(50.0)
    assert math.isnan(threshold_success(np.array([]), thresholds))


def test_threshold_success_on_the_paper_grid():
    thr = PROTOCOLS["single_point"].threshold_values
    # 0.0505 m passes thresholds 0.051..0.1: 50 of 100.
    assert threshold_success(np.array([0.0505]), thr) == pytest.approx(50.0)
    assert threshold_success(np.array([0.0]), thr) == 100.0


def test_bins_are_half_open_with_an_open_last_bin():
    edges = (0.0, 0.5, 1.0, 1.5, 2.0)
    idx = bin_indices(np.array([0.0, 0.49, 0.5, 1.2, 1.99, 2.0, 3.0]), edges)
    assert idx.tolist() == [0, 0, 1, 2, 3, 4, 4]


def test_binned_success_rows():
    edges = (0.0, 0.5, 1.0)
    thr = np.array([0.1, 0.2])
    initial = np.array([0.1, 0.2, 0.7, 0.9])
    final = np.array([0.05, 0.15, 0.5, 0.05])
    row = binned_success(initial, final, edges, thr)
    assert [b["n"] for b in row["bins"]] == [2, 2]       # no trajectory >= 1.0: no open bin
    assert row["bins"][0]["success"] == pytest.approx(75.0)
    assert row["bins"][1]["success"] == pytest.approx(50.0)
    assert row["total"] == pytest.approx(62.5) and row["n"] == 4
    far = binned_success(np.array([0.1, 1.5]), np.array([0.0, 0.0]), edges, thr)
    assert far["bins"][-1]["label"] == ">= 1.0" and far["bins"][-1]["n"] == 1
    assert far["bins"][1]["success"] is None            # empty bin


def test_task_distance_kinds():
    x = np.zeros((2, 12))
    x_star = np.zeros((2, 12))
    x_star[0, 0:3] = [3.0, 4.0, 0.0]       # point 0 off by 5
    x_star[0, 9:12] = [0.0, 0.0, 2.0]      # point 3 off by 2
    assert task_distance(x, x_star, "sum_of_points").tolist() == [7.0, 0.0]
    assert task_distance(x, x_star, "euclidean")[0] == pytest.approx(math.sqrt(29.0))
    with pytest.raises(ValueError):
        task_distance(x, x_star, "manhattan")


def test_positive_definite_on_known_matrices():
    eye = np.eye(2)
    rot90 = np.array([[0.0, -1.0], [1.0, 0.0]])
    skewed = np.array([[1.0, 5.0], [-5.0, 1.0]])     # not symmetric, symmetric part = I
    indefinite = np.diag([1.0, -1.0])
    j_true = np.stack([eye, eye, eye, eye, eye])
    j_hat = np.stack([eye, -eye, np.linalg.inv(rot90), np.linalg.inv(skewed),
                      np.linalg.inv(indefinite)])
    # J* J_hat+ = I, -I, rot90 (symmetric part 0), skewed, indefinite
    assert positive_definite(j_true, j_hat).tolist() == [True, False, False, True, False]
    # 3x7: J_hat = J* is always PD (J* J*+ = I); a J_hat with a lost row is not
    rng = np.random.default_rng(0)
    j = rng.normal(size=(3, 7))
    lost = j.copy()
    lost[2] = 0.0
    assert positive_definite(j, j) and not positive_definite(j, lost)
    assert not positive_definite(j, np.full((3, 7), np.nan))


def test_positive_definite_is_false_for_a_tall_task(robot):
    task = make_task("multi_point", robot)
    j = task.jacobian(np.full(7, 0.3))
    assert not positive_definite(j, j)   # 12 x 12 of rank 6


def _random_walk(rng, steps, k, m):
    qa = np.cumsum(rng.normal(scale=0.05, size=(steps, k)), axis=0)
    qa[3] = qa[2]                           # a step with no motion (skipped, anchor kept)
    qa[6] = qa[5] + 1e-9                    # below min_motion
    x = np.tanh(qa @ rng.normal(size=(k, m)))
    return qa, x


def test_batched_broyden_equals_per_instance(single):
    rng = np.random.default_rng(3)
    batch, steps = 5, 12
    j0 = rng.normal(size=(3, 7))
    ref = [Broyden(single, initial_jacobian=j0.tolist(), alpha=0.7) for _ in range(batch)]
    walks = [_random_walk(rng, steps, 7, 3) for _ in range(batch)]
    est = batched(ref[0], batch)
    assert isinstance(est, BatchedBroyden)
    est.reset()
    for t in range(steps):
        qa = np.stack([w[0][t] for w in walks])
        x = np.stack([w[1][t] for w in walks])
        est.update(qa, x)
        for r, q, xx in zip(ref, qa, x):
            r.update(q, xx)
        np.testing.assert_allclose(est.estimate_batch(qa),
                                   np.stack([r.estimate(q) for r, q in zip(ref, qa)]),
                                   rtol=1e-12, atol=1e-12)
    est.reset()
    np.testing.assert_array_equal(est.estimate_batch(qa), np.broadcast_to(j0, (batch, 3, 7)))


def test_rollout_with_tj_matches_a_step_by_step_loop(single):
    targets = single.sample_targets(np.random.default_rng(7), 4)
    tj = make_estimator("tj", single)
    straight = np.zeros(7)
    r = rollout(single, tj, targets, steps=100, start=straight)
    config = ControlConfig.paper(dt=0.05)
    limits = single.robot.velocity_limits[single.active]
    for i, goal in enumerate(targets):
        sim = Simulation(single, dt=0.05)
        x = sim.reset(straight)[0]
        for t in range(100):
            assert np.linalg.norm(goal - x) == pytest.approx(r.distance[i, t], abs=1e-12)
            qa = sim.qa[0]
            qdot, _ = control_step(single.jacobian(qa), x, goal, qa, config,
                                   velocity_limits=limits, rank=task_rank(single))
            x = sim.step(qdot).x[0]
        np.testing.assert_allclose(r.x_final[i], x, atol=1e-12)
    assert np.all(r.frobenius == 0.0)
    # J* is singular only at the straight start pose; elsewhere TJ meets the criterion.
    assert r.pd_undefined[:, 0].all() and not r.pd_undefined[:, 1:].any()
    assert r.positive_definite.all()
    assert np.all(r.distance[:, -1] < 0.05 * r.distance[:, 0])


def test_rollout_broyden_batch_equals_one_at_a_time(single):
    targets = single.sample_targets(np.random.default_rng(1), 3)
    est = make_estimator("broyden", single,
                         initial_jacobian=single.jacobian(np.full(7, 0.2)).tolist())
    together = rollout(single, est, targets, steps=15)
    for i in range(3):
        alone = rollout(single, est, targets[i:i + 1], steps=15)
        np.testing.assert_allclose(alone.distance[0], together.distance[i], atol=1e-9)


def test_rollout_halt_mode_zeroes_commands_at_joint_limits(single):
    goals = single.sample_targets(np.random.default_rng(0), 110)
    tj = make_estimator("tj", single)
    halt = rollout(single, tj, goals, joint_limits="halt")
    clip = rollout(single, tj, goals, joint_limits="clip")
    assert halt.halted.any() and not clip.halted.any()
    stuck = halt.halted.any(axis=1)
    assert np.mean(halt.distance[stuck, -1]) > np.mean(clip.distance[stuck, -1])
    with pytest.raises(ValueError):
        rollout(single, tj, goals, steps=1, joint_limits="ignore")


def test_protocol_variants():
    """"paper" (the default) holds the reference code's conventions, "design" DESIGN.md's
    summary; both share the paper's data sizes, thresholds and bins."""
    assert PROTOCOLS is PROTOCOL_VARIANTS["paper"]
    paper, design = protocol("single_point"), protocol("single_point", "design")
    assert (paper.steps, paper.start, paper.velocity_mode, paper.joint_limits) == \
        (200, PAPER_START, "clip", "mask")
    assert (paper.ou_sigma, paper.ou_dt) == (1.0, 1.0)
    assert (design.steps, design.start, design.velocity_mode, design.joint_limits) == \
        (100, DESIGN_START, "scale", "clip")
    assert DESIGN_START == (0.0,) * 7
    # The Gen3's start poses do not apply to an arm with another number of joints.
    assert design.start_for(6) is None and design.start_for(7).tolist() == [0.0] * 7
    assert (design.ou_sigma, design.ou_dt) == (0.2, None)
    for a, b in ((paper, design),
                 (protocol("multi_point"), protocol("multi_point", "design"))):
        assert (a.samples, a.epochs, a.thresholds, a.bin_edges) == \
            (b.samples, b.epochs, b.thresholds, b.bin_edges)
    # Multi-point: the reference code's distance is the norm of the stacked 12-vector.
    assert protocol("multi_point").distance == "euclidean"
    assert protocol("multi_point", "design").distance == "sum_of_points"
    assert protocol("visual_servo").start is None        # its own bent-elbow start
    assert paper.babble_options()["limit_mode"] == "mask"
    assert paper.rollout_options()["steps"] == 200
    with pytest.raises(ValueError, match="design, paper|paper, design"):
        protocol("single_point", "mine")
    with pytest.raises(ValueError, match="single_point"):
        protocol("juggling")


def test_rollout_paper_code_conventions(single, robot):
    """velocity_mode "clip": no cap in the control law, each joint clipped by the
    simulation; "mask" keeps every joint inside its limits; the start pose is used."""
    goals = single.sample_targets(np.random.default_rng(3), 40)
    tj = make_estimator("tj", single)
    start = np.asarray(PAPER_START)
    r = rollout(single, tj, goals, steps=60, start=start, velocity_mode="clip",
                joint_limits="mask")
    np.testing.assert_allclose(r.distance[:, 0],
                               np.linalg.norm(goals - robot.position(start), axis=1))
    # The same trajectories by hand: J* pinv, gain 1, per-joint clip, masked limits.
    sim = Simulation(single, batch=40, velocity_limits=1.22, velocity_mode="clip",
                     limit_mode="mask")
    x = sim.reset(start)
    for _ in range(60):
        jac = single.jacobian(sim.qa)
        qdot = np.einsum("bkm,bm->bk", np.linalg.pinv(jac), goals - x)
        x = sim.step(qdot).x
    np.testing.assert_allclose(r.distance[:, -1], np.linalg.norm(goals - x, axis=1),
                               atol=1e-9)
    # A whole-vector cap keeps the direction: a different path to the same targets.
    scaled = rollout(single, tj, goals, steps=60, start=start)
    assert not np.allclose(scaled.distance[:, 10], r.distance[:, 10])
    with pytest.raises(ValueError, match="velocity_mode"):
        rollout(single, tj, goals, steps=1, velocity_mode="wrap")


def test_summarize_reports_the_papers_numbers():
    proto = PROTOCOLS["single_point"]
    n, t = 4, 3
    distance = np.array([[0.3, 0.2, 0.1, 0.0005],
                         [0.7, 0.5, 0.3, 0.2],
                         [1.2, 1.0, 0.5, 0.05],
                         [1.7, 1.5, 1.0, 0.0]])
    frob = np.tile([1.0, 2.0, 3.0], (n, 1))
    cond = np.array([[1.0, 2.0, np.inf]] * n)
    pd = np.array([[True] * t, [True, False, True], [True] * t, [True] * t])
    s = summarize(proto, distance, frob, cond, pd, halted=np.zeros((n, t), bool),
                  seed_of=np.array([0, 0, 1, 1]))
    assert [b["n"] for b in s["success"]["bins"]] == [1, 1, 1, 1]
    assert s["success"]["bins"][0]["success"] == 100.0
    assert s["success"]["bins"][1]["success"] == 0.0
    assert s["success"]["bins"][2]["success"] == pytest.approx(50.0)
    assert s["success"]["total"] == pytest.approx(62.5)
    assert s["success"]["per_seed"] == [50.0, pytest.approx(75.0)]
    assert s["frobenius"]["mean"] == 2.0 and s["frobenius"]["per_step_mean"] == [1, 2, 3]
    assert s["condition"]["infinite"] == 4 and s["condition"]["quantiles"]["50"] == 1.5
    assert s["positive_definite"]["share"] == 0.75
    assert s["positive_definite"]["not_always"]["mean"] == pytest.approx(0.2)
    assert s["positive_definite"]["always"]["n"] == 3
