"""nk_adapt: the nk_tanh prior corrected online (secant algebra, reset, batch = loop,
rank projection, model directories, training)."""

import json
import shutil

import numpy as np
import pytest

from uvs_core.control import task_rank
from uvs_core.estimators import ModelError, load_estimator, make_estimator
from uvs_core.evaluation import batched, protocol, rollout
from uvs_core.paths import installed_dir
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_learning.nk_adapt import BatchedAdaptation

MODELS = installed_dir("models")
GEN3 = load_robot("gen3")


@pytest.fixture(scope="module")
def tasks():
    return {name: make_task(name, GEN3) for name in ("single_point", "multi_point")}


def _adapt(task, **params):
    """The shipped nk_adapt of ``task`` (a tiny directory naming models/<task>/nk_tanh),
    with online parameters replaced by ``params``."""
    est = load_estimator(MODELS / task.name / "nk_adapt", task=task, name="nk_adapt")
    if params:
        est.params.update(params)
        est._extract()
    return est


def _walk(task, steps, seed, scale=0.03):
    """A random joint walk from the start pose: qa (steps, k) rad."""
    rng = np.random.default_rng(seed)
    start = task.q_fixed[task.active]
    return start + np.cumsum(rng.normal(0.0, scale, (steps, task.k)), axis=0)


def test_after_reset_it_is_its_prior_exactly(tasks):
    task = tasks["single_point"]
    prior = load_estimator(MODELS / "single_point" / "nk_tanh", task=task)
    est = _adapt(task)
    qa = _walk(task, 20, seed=0)
    np.testing.assert_array_equal(est.estimate(qa[0]), prior.estimate(qa[0]))
    for q in qa:
        est.update(q, task.x(q[None])[0])
    assert np.linalg.norm(est.residual) > 1e-3
    assert np.abs(est.estimate(qa[-1]) - prior.estimate(qa[-1])).max() > 1e-3
    est.reset()
    np.testing.assert_array_equal(est.residual, np.zeros((task.m, task.k)))
    np.testing.assert_array_equal(est.estimate(qa[-1]), prior.estimate(qa[-1]))


def test_broyden_step_meets_the_secant_of_the_priors_error(tasks):
    """alpha = 1, no forgetting: after a step, D dq equals what the prior mispredicted,
    (x1 - x0) - (f(q1) - f(q0))."""
    task = tasks["single_point"]
    est = _adapt(task, alpha=1.0)
    q0, q1 = _walk(task, 2, seed=1)
    x0, x1 = task.x(np.stack([q0, q1]))
    est.update(q0, x0)
    np.testing.assert_array_equal(est.residual, 0.0)
    est.update(q1, x1)
    expected = (x1 - x0) - (est.predict(q1) - est.predict(q0))
    np.testing.assert_allclose(est.residual @ (q1 - q0), expected, rtol=0, atol=1e-12)
    # and the estimate is the prior's Jacobian plus D
    np.testing.assert_allclose(est.estimate(q1), est._np_jacobian(q1) + est.residual,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("method, params, tolerance", [
    ("broyden", {"alpha": 1.0}, 1e-8),
    ("broyden", {"alpha": 0.5}, 1e-4),
    ("rls", {"rls_lambda": 1.0, "rls_p0": 1e6}, 1e-4),
])
def test_a_linear_model_error_is_learned(tasks, method, params, tolerance):
    """x = f(q) + A q (the prior off by a constant Jacobian A): D converges to A."""
    task = tasks["single_point"]
    est = _adapt(task, method=method, **params)
    a = np.random.default_rng(2).normal(0.0, 0.3, (task.m, task.k))
    for q in _walk(task, 200, seed=3):
        est.update(q, est.predict(q) + a @ q)
    np.testing.assert_allclose(est.residual, a, rtol=0, atol=tolerance)


def test_forgetting_pulls_the_correction_back_to_the_prior(tasks):
    task = tasks["single_point"]
    a = np.random.default_rng(4).normal(0.0, 0.3, (task.m, task.k))
    qa = _walk(task, 60, seed=5)
    norms = {}
    for forgetting in (0.0, 0.2):
        est = _adapt(task, alpha=1.0, forgetting=forgetting)
        for i, q in enumerate(qa):
            # the model error stops after 30 steps: only forgetting undoes D
            est.update(q, est.predict(q) + a @ (q if i < 30 else qa[29]))
        norms[forgetting] = np.linalg.norm(est.residual)
    assert norms[0.2] < 0.1 * norms[0.0]


@pytest.mark.parametrize("method", ("broyden", "rls"))
def test_batch_equals_loop(tasks, method):
    task = tasks["multi_point"]
    est = _adapt(task, method=method, alpha=0.7, forgetting=0.05)
    walks = np.stack([_walk(task, 15, seed=s) for s in range(3)], axis=1)  # (T, B, k)
    view = batched(est, 3)
    assert isinstance(view, BatchedAdaptation)
    view.reset()
    singles = [_adapt(task, method=method, alpha=0.7, forgetting=0.05) for _ in range(3)]
    for qa in walks:
        x = task.x(qa)
        view.update(qa, x)
        for e, q, xx in zip(singles, qa, x):
            e.update(q, xx)
        np.testing.assert_allclose(view.estimate_batch(qa),
                                   np.stack([e.estimate(q) for e, q in zip(singles, qa)]),
                                   rtol=0, atol=1e-12)
    # a step without motion leaves D alone
    before = view.residual.copy()
    view.update(walks[-1], task.x(walks[-1]))
    np.testing.assert_array_equal(view.residual, before)


def test_multi_point_estimate_has_the_tasks_rank(tasks):
    task = tasks["multi_point"]
    q = task.q_fixed[task.active] + 0.2
    s = np.linalg.svd(_adapt(task).estimate(q), compute_uv=False)
    assert task_rank(task) == 6 and s[5] > 0.01 and s[6] < 1e-12
    raw = np.linalg.svd(_adapt(task, project_rank=False).estimate(q), compute_uv=False)
    assert raw[6] > 1e-6
    # the projection is the nearest rank-6 matrix: the other singular values are kept
    np.testing.assert_allclose(s[:6], raw[:6], rtol=1e-10)


def test_adaptation_lowers_the_jacobian_error_and_servos_better_on_multi_point(tasks):
    """Ten targets of the paper's protocol: nk_adapt's mean |J_hat - J*|_F is below the
    prior's and it ends closer to the targets (seed 0, targets 0-9 of the benchmark)."""
    task = tasks["multi_point"]
    options = protocol("multi_point").rollout_options(task.robot.n)
    goals = task.sample_targets(np.random.default_rng(0), 10)
    prior = load_estimator(MODELS / "multi_point" / "nk_tanh", task=task)
    r_prior = rollout(task, prior, goals, **options)
    r_adapt = rollout(task, _adapt(task), goals, **options)
    assert np.mean(r_adapt.frobenius) < 0.7 * np.mean(r_prior.frobenius)
    assert np.median(r_adapt.distance[:, -1]) < np.median(r_prior.distance[:, -1])
    assert np.median(r_adapt.distance[:, -1]) < 0.01


def test_bad_parameters_are_rejected(tasks):
    task = tasks["single_point"]
    for params, match in (({"method": "kalman"}, "method"), ({"alpha": 0.0}, "alpha"),
                          ({"forgetting": 1.0}, "forgetting"), ({"rls_lambda": 0.0},
                                                                 "rls_lambda"),
                          ({"rls_p0": 0.0}, "rls_p0"), ({"bogus": 1}, "unknown")):
        with pytest.raises(ValueError, match=match):
            make_estimator("nk_adapt", task, **params)


def test_tiny_directory_errors_name_the_file(tasks, tmp_path):
    task = tasks["single_point"]
    tiny = tmp_path / "nk_adapt"
    shutil.copytree(MODELS / "single_point" / "nk_adapt", tiny)
    with pytest.raises(ModelError, match="nk_tanh.*does not exist"):
        load_estimator(tiny, task=task)          # ../nk_tanh is not beside it here
    meta = json.loads((tiny / "metadata.json").read_text())
    meta["prior"] = str(MODELS / "multi_point" / "nk_tanh")
    (tiny / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="multi_point/nk_tanh/metadata.json.*'task'"):
        load_estimator(tiny, task=task)


def test_save_writes_a_directory_that_stands_alone(tasks, tmp_path):
    task = tasks["single_point"]
    est = _adapt(task, method="rls")
    est.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert "prior" not in meta and meta["params"]["method"] == "rls"
    assert meta["prior_source"].endswith("single_point/nk_tanh")
    again = load_estimator(tmp_path / "m", task=task, name="nk_adapt")
    q = task.q_fixed[task.active] + 0.1
    np.testing.assert_array_equal(again.estimate(q), est.estimate(q))


def test_fit_trains_the_prior_as_nk_tanh(tasks):
    """`uvs train --estimator nk_adapt` trains the same network nk_tanh does."""
    from uvs_core.babble import babble

    task = tasks["single_point"]
    data = babble(task, 2000, seed=0)
    qa = task.select(data.q)
    ests = {}
    for name in ("nk_tanh", "nk_adapt"):
        ests[name] = make_estimator(name, task, epochs=1)
        ests[name].fit(qa, data.x, data.traj)
    q = qa[::97]
    np.testing.assert_array_equal(ests["nk_adapt"].estimate_batch(q),
                                  ests["nk_tanh"].estimate_batch(q))


def test_a_model_made_from_the_trained_prior_equals_one_trained_itself(tasks, tmp_path):
    """adapt_from_prior (what `uvs benchmark` does when it trains nk_tanh too) gives the
    model train_model gives nk_adapt on the same data and seed: the same Jacobians,
    held-out error and training facts, from a directory that holds no weights."""
    from uvs_core.babble import babble
    from uvs_learning.training import adapt_from_prior, train_model

    task = tasks["multi_point"]
    data = babble(task, 2000, seed=0)
    train_model("nk_tanh", task, data, out=tmp_path / "nk_tanh", epochs=1, seed=3)
    trained = train_model("nk_adapt", task, data, out=tmp_path / "trained", epochs=1,
                          seed=3, alpha=1.0)
    made = adapt_from_prior(tmp_path / "nk_tanh", task, data, tmp_path / "made", seed=3,
                            epochs=1, alpha=1.0)
    assert sorted(p.name for p in (tmp_path / "made").iterdir()) == ["metadata.json"]
    meta = json.loads((tmp_path / "made" / "metadata.json").read_text())
    assert meta["prior"] == "../nk_tanh" and meta["params"]["alpha"] == 1.0
    assert made["params"] == trained["params"]
    for key in ("jacobian_frobenius_mean", "jacobian_frobenius_median", "val_loss",
                "best_epoch", "samples", "val_samples"):
        assert made[key] == trained[key], key
    ests = {name: load_estimator(tmp_path / name, task=task, name="nk_adapt")
            for name in ("made", "trained")}
    for qa, x in zip(task.select(data.q)[:40], data.x[:40]):
        np.testing.assert_array_equal(ests["made"].estimate(qa), ests["trained"].estimate(qa))
        for est in ests.values():
            est.update(qa, x)
    assert np.abs(ests["made"].residual).max() > 0.0       # the correction did move

    with pytest.raises(ValueError, match=r"\['lr'\] differ from the prior's"):
        adapt_from_prior(tmp_path / "nk_tanh", task, data, tmp_path / "other", seed=3,
                         lr=1e-4)
    with pytest.raises(ValueError, match=r"\['epochs'\]"):
        adapt_from_prior(tmp_path / "nk_tanh", task, data, tmp_path / "other", seed=3,
                         epochs=2)
    with pytest.raises(ValueError, match=r"\['seed'\]"):
        adapt_from_prior(tmp_path / "nk_tanh", task, data, tmp_path / "other", seed=0)
    assert not (tmp_path / "other").exists()
