"""nk_ens: K nk_tanh members, J = mean, u = relative spread (algebra, batch = loop,
persistence, NaN for the others, calibration of the shipped model, the service)."""

import math

import numpy as np
import pytest

from uvs_core.babble import babble
from uvs_core.estimators import ModelError, load_estimator, make_estimator
from uvs_core.evaluation import protocol
from uvs_core.paths import installed_dir
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_estimation.jacobian_service import JacobianService, ModelConfig, build_estimator
from uvs_learning.nk_ensemble import ensemble_stats

MODELS = installed_dir("models")
GEN3 = load_robot("gen3")


@pytest.fixture(scope="module")
def task():
    return make_task("single_point", GEN3)


@pytest.fixture(scope="module")
def small(task):
    """Three members fitted for two epochs on 3,000 samples (seconds)."""
    ds = babble(task, 3000, seed=0)
    est = make_estimator("nk_ens", task, members=3, epochs=2)
    est.fit(task.select(ds.q), ds.x, ds.traj)
    return est, task.select(ds.q)


@pytest.fixture(scope="module")
def shipped(task):
    return load_estimator(MODELS / "single_point" / "nk_ens", task=task, name="nk_ens")


def test_ensemble_stats_of_two_members():
    j = np.array([[3.0, 0.0], [0.0, 4.0]])          # |J|_F = 5
    d = np.array([[1.0, 0.0], [0.0, 0.0]])
    mean, u = ensemble_stats(np.stack([j - d, j + d]))
    np.testing.assert_array_equal(mean, j)
    # members at J -/+ D: RMS deviation |D|_F = 1, over |J|_F = 5
    assert u == pytest.approx(0.2, rel=1e-15)
    mean, u = ensemble_stats(np.stack([j, j, j]))
    assert u == 0.0
    # batched: (K, B, m, k) -> (B, m, k), (B,)
    mean, u = ensemble_stats(np.stack([np.stack([j - d, j]), np.stack([j + d, j])]))
    np.testing.assert_allclose(u, [0.2, 0.0])


def test_estimate_is_the_members_mean_and_batch_equals_loop(small):
    est, qa = small
    q = qa[::500]
    members = np.stack([m.estimate_batch(q) for m in est.members])
    jac, u = est.estimate_batch_with_uncertainty(q)
    np.testing.assert_allclose(jac, members.mean(axis=0), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(est.estimate_batch(q), jac)
    for i in range(q.shape[0]):
        one, ui = est.estimate_with_uncertainty(q[i])
        np.testing.assert_allclose(one, jac[i], rtol=0, atol=1e-14)
        assert ui == pytest.approx(u[i], rel=1e-12)
        dev = members[:, i] - jac[i]
        want = math.sqrt(np.mean(np.sum(dev * dev, axis=(1, 2)))) / np.linalg.norm(jac[i])
        assert ui == pytest.approx(want, rel=1e-12)
    assert est.info["member_seeds"] == [0, 1, 2]
    # differently seeded members disagree: u > 0, and not wildly
    assert np.all(u > 1e-4) and np.all(u < 2.0)


def test_save_load_round_trip(small, tmp_path):
    est, qa = small
    est.save(tmp_path / "m")
    again = load_estimator(tmp_path / "m", task=est.task, name="nk_ens")
    q = qa[:50]
    for a, b in zip(est.estimate_batch_with_uncertainty(q),
                    again.estimate_batch_with_uncertainty(q)):
        np.testing.assert_array_equal(a, b)
    # fewer members in the weights than the metadata says: refused, naming the file
    import torch
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("member2.")},
               tmp_path / "m" / "model.pt")
    with pytest.raises(ModelError, match="model.pt.*member 2"):
        load_estimator(tmp_path / "m", task=est.task)


def test_parameters_are_checked(task):
    with pytest.raises(ValueError, match="members must be >= 2"):
        make_estimator("nk_ens", task, members=1)
    with pytest.raises(ValueError, match="unknown parameter"):
        make_estimator("nk_ens", task, member=3)


@pytest.mark.parametrize("name", ["tj", "broyden"])
def test_estimators_without_uncertainty_report_nan(task, name):
    est = make_estimator(name, task)
    qa = task.q_fixed[task.active] + 0.1
    jac, u = est.estimate_with_uncertainty(qa)
    assert math.isnan(u) and not est.has_uncertainty
    np.testing.assert_array_equal(jac, est.estimate(qa))
    jac, u = est.estimate_batch_with_uncertainty(np.stack([qa, qa]))
    assert jac.shape == (2, 3, 7) and np.isnan(u).all()


def test_shipped_model_is_more_uncertain_far_from_its_data(task, shipped):
    """Configurations of the babbling (the data's distribution) against joint angles drawn
    uniformly within the limits (the targets' distribution, mostly far from the data): u
    is larger there, and where u is larger the Jacobian error is larger (rank
    correlation over the uniform draws)."""
    from scipy.stats import spearmanr

    options = {**protocol("single_point").babble_options(GEN3.n), "seed": 123}
    ds = babble(task, 2000, **options)
    near = task.select(ds.q)
    rng = np.random.default_rng(0)
    lo, hi = GEN3.lower[task.active], GEN3.upper[task.active]
    lo, hi = np.maximum(lo, -np.pi), np.minimum(hi, np.pi)
    far = rng.uniform(lo, hi, (2000, task.k))
    _, u_near = shipped.estimate_batch_with_uncertainty(near)
    jac, u_far = shipped.estimate_batch_with_uncertainty(far)
    assert np.median(u_far) > 1.5 * np.median(u_near)
    err = np.linalg.norm(jac - task.jacobian(far), axis=(1, 2))
    assert spearmanr(u_far, err).statistic > 0.3


def test_the_service_answers_with_the_uncertainty(task, shipped):
    est, path = build_estimator("nk_ens", task, ModelConfig(MODELS))
    assert path == MODELS / "single_point" / "nk_ens"
    service = JacobianService(task, "nk_ens", est)
    q = np.array([0.3, 0.6, -0.2, 1.2, 0.1, 0.8, 0.2])
    answer = service.estimate(q.tolist(), task.x_from_q(q).tolist())
    assert answer.success and answer.estimator == "nk_ens"
    jac, u = shipped.estimate_with_uncertainty(q)
    np.testing.assert_array_equal(answer.jacobian, jac)
    assert answer.uncertainty == u and 0.0 < u < 1.0
    service.swap("tj", make_estimator("tj", task))
    answer = service.estimate(q.tolist())
    assert answer.success and math.isnan(answer.uncertainty)
