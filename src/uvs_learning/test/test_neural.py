"""Neural estimators (nj, binj, nk_tanh, nk_relu): accuracy, closed forms, persistence."""

import time

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from uvs_core.estimators import (
    ModelError,
    NotFittedError,
    load_estimator,
    make_estimator,
    split_by_trajectory,
)
from uvs_learning.mlp import MLP, numpy_forward, numpy_input_jacobian
from uvs_learning.neural_jacobian import damped_pinv

NEURAL = ("nj", "binj", "nk_tanh", "nk_relu")

# Median relative Frobenius error ||J_hat - J*|| / ||J*|| at held-out
# configurations within 0.1 rad of the training data, after 5 epochs on
# 10,000 single-point samples. Measured: nj 0.11, nk_tanh 0.11, nk_relu 0.17,
# binj 0.50. Bounds are about 2x the measurements so other seeds and torch
# versions pass, yet an estimator that ignores q (a constant J) or has its
# scaling wrong (errors >= 1) fails. Bi-NJ is loose on purpose: for a 3x7 J
# the inverse term ||dq - J^+ dx||^2 cannot be met (J^+ dx lies in a 3-D
# subspace of the 7-D dq), so it biases J; the paper's Table I shows Bi-NJ
# as the weakest neural method on the single-point task for this reason.
TOLERANCE = {"nj": 0.25, "binj": 0.75, "nk_tanh": 0.25, "nk_relu": 0.35}


@pytest.fixture(scope="module")
def tasks():
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    robot = load_robot("gen3")
    names = ("single_point", "multi_point", "visual_servo")
    return {name: make_task(name, robot) for name in names}


@pytest.fixture(scope="module")
def single(tasks):
    from uvs_core.babble import babble

    task = tasks["single_point"]
    ds = babble(task, 10000, seed=0)
    return task.select(ds.q), ds.x, ds.traj


@pytest.fixture(scope="module")
def trained(tasks, single):
    task = tasks["single_point"]
    qa, x, traj = single
    out = {}
    for name in NEURAL:
        est = make_estimator(name, task, epochs=5)
        out[name] = (est, est.fit(qa, x, traj))
    return out


@pytest.mark.parametrize("name", NEURAL)
def test_close_to_true_jacobian_near_data(tasks, single, trained, name):
    task = tasks["single_point"]
    qa, x, traj = single
    est, report = trained[name]
    val = split_by_trajectory(traj, 0.15, 0)
    dist, _ = cKDTree(qa[~val]).query(qa[val])
    near = qa[val][dist < 0.1]
    assert len(near) > 50
    jt = task.jacobian(near)
    rel = np.linalg.norm(est.estimate_batch(near) - jt, axis=(1, 2)) / np.linalg.norm(
        jt, axis=(1, 2))
    assert np.median(rel) < TOLERANCE[name]
    assert report["epochs_run"] == 5 and 1 <= report["best_epoch"] <= 5
    assert report["n_val"] == val.sum()
    assert report["val_loss"] == min(v for _, v in report["history"])


@pytest.mark.parametrize("name", ("nk_tanh", "nk_relu"))
def test_nk_closed_form_equals_autograd(trained, single, name):
    est, _ = trained[name]
    qa = single[0][::97]
    auto = est.torch_jacobian(qa)  # float64 autograd through the torch network
    closed = est.estimate_batch(qa)
    scale = np.abs(auto).max()
    np.testing.assert_allclose(closed, auto, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(est.estimate(qa[3]), auto[3], rtol=1e-6, atol=1e-6 * scale)


def test_nk_derivative_matches_finite_differences(trained, single):
    est, _ = trained["nk_tanh"]
    q0 = single[0][1234]
    h = 1e-5
    fd = np.stack([(est.predict(q0 + h * e) - est.predict(q0 - h * e)) / (2 * h)
                   for e in np.eye(7)], axis=1)
    np.testing.assert_allclose(est.estimate(q0), fd, rtol=1e-6, atol=1e-8)


def test_nk_forward_fits_data(trained, single):
    est, _ = trained["nk_tanh"]
    qa, x, _ = single
    err = np.linalg.norm(est.predict(qa[::10]) - x[::10], axis=1)
    assert np.median(err) < 0.05  # m; the workspace spans ~1 m


@pytest.mark.parametrize("name", ("nj", "binj"))
def test_nj_numpy_equals_torch(trained, single, name):
    est, _ = trained[name]
    qa = single[0][::211]
    np.testing.assert_allclose(est.estimate_batch(qa), est.torch_jacobian(qa), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("activation", ("tanh", "relu"))
@pytest.mark.parametrize("layers", (0, 1, 3))
def test_mlp_numpy_closed_forms(activation, layers):
    torch.manual_seed(0)
    net = MLP(5, 4, hidden=16, layers=layers, activation=activation).double()
    z = torch.randn(6, 5, dtype=torch.float64)
    w = net.linear_layers()
    np.testing.assert_allclose(numpy_forward(w, activation, z.numpy()),
                               net(z).detach().numpy(), rtol=1e-12)
    auto = torch.vmap(torch.func.jacrev(net))(z).detach().numpy()
    y, jac = numpy_input_jacobian(w, activation, z.numpy())
    np.testing.assert_allclose(jac, auto, rtol=1e-10, atol=1e-12)
    _, j1 = numpy_input_jacobian(w, activation, z.numpy()[2])
    np.testing.assert_allclose(j1, auto[2], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ("tanh", "relu"))
def test_forward_tangent_equals_jvp(activation):
    torch.manual_seed(2)
    net = MLP(5, 3, hidden=16, layers=2, activation=activation).double()
    z = torch.randn(6, 5, dtype=torch.float64)
    dz = torch.randn(6, 2, 5, dtype=torch.float64)  # two directions per point
    y, dy = net.forward_tangent(z, dz)
    np.testing.assert_allclose(y.detach().numpy(), net(z).detach().numpy(), rtol=1e-12)
    for p in range(2):
        _, ref = torch.func.jvp(net, (z,), (dz[:, p],))
        np.testing.assert_allclose(dy[:, p].detach().numpy(), ref.detach().numpy(),
                                   rtol=1e-10, atol=1e-12)


def _nk_batch(tasks, single, **params):
    """An NK estimator with normalisation set and its training tensors (first 4,000 samples)."""
    task = tasks["single_point"]
    qa, x, traj = (a[:4000] for a in single)
    est = make_estimator("nk_tanh", task, **params)
    train = ~split_by_trajectory(traj, 0.15, 0)
    est.q_mean, est.q_std = qa[train].mean(0), qa[train].std(0)
    est.x_mean, est.x_std = x[train].mean(0), x[train].std(0)
    data = est._prepare(qa, x, train, traj)
    torch.manual_seed(0)
    return est, est._new_net(), data, (qa, x, traj, train)


def test_nk_secant_weight_zero_is_plain_mse(tasks, single):
    est, net, data, _ = _nk_batch(tasks, single, secant_weight=0.0)
    assert set(data) == {"items", "z", "y"}  # no pairs built at all
    idx = torch.arange(0, data["items"], 7)
    want = ((net(data["z"][idx]) - data["y"][idx]) ** 2).sum(dim=1).mean()
    assert est._loss(net, data, idx).item() == want.item()


def test_nk_secant_term_is_the_weighted_directional_residual(tasks, single):
    """loss = MSE + w * mean_t ||J(z_t) (z_t+1 - z_t) - (y_t+1 - y_t)||^2 / mean ||dz||^2."""
    est, net, data, (qa, x, traj, train) = _nk_batch(tasks, single, secant_weight=2.5)
    idx = torch.arange(data["items"])
    got = est._loss(net, data, idx).item()
    mse = ((net(data["z"]) - data["y"]) ** 2).sum(dim=1).mean().item()
    # Independent reference from the raw arrays: successor pairs within one
    # trajectory, both ends in the training split.
    i = np.flatnonzero(train[:-1] & train[1:] & (traj[1:] == traj[:-1]))
    zn = (qa - est.q_mean) / est.q_std
    yn = (x - est.x_mean) / est.x_std
    dz = torch.as_tensor(zn[i + 1] - zn[i], dtype=torch.float32)
    dy = torch.as_tensor(yn[i + 1] - yn[i], dtype=torch.float32)
    _, jdz = torch.func.jvp(net, (torch.as_tensor(zn[i], dtype=torch.float32),), (dz,))
    term = ((jdz - dy) ** 2).sum(dim=1).mean().item() / (dz ** 2).sum(dim=1).mean().item()
    assert got == pytest.approx(mse + 2.5 * term, rel=1e-4)
    assert int(data["have"].sum()) == i.size


def test_nk_secant_pairs_stay_in_trajectory_and_split(tasks):
    task = tasks["single_point"]
    traj = np.repeat([0, 1, 2, 3], 5)
    qa = np.random.default_rng(0).normal(size=(20, 7))
    x = qa[:, :3] * 2.0
    mask = np.ones(20, bool)
    mask[5:10] = False  # trajectory 1 held out
    mask[17] = False    # a gap inside trajectory 3
    est = make_estimator("nk_tanh", task, secant_steps=2)
    data = est._prepare(qa, x, mask, traj)
    sel = np.flatnonzero(mask)
    have = data["have"].numpy().astype(bool)
    for row, t in enumerate(sel):
        for o in (1, 2):
            partner = t + o
            expected = partner < 20 and mask[partner] and traj[partner] == traj[t]
            assert have[row, o - 1] == expected, (t, o)
            if expected:
                want = (qa[partner] - qa[t]) / est.q_std
                np.testing.assert_allclose(data["dz"][row, o - 1].numpy(), want, rtol=1e-6)
    with pytest.raises(ValueError, match="secant_weight"):
        make_estimator("nk_tanh", task, secant_weight=-1.0)


@pytest.mark.parametrize("shape", ((3, 7), (12, 7), (2, 2)))
def test_damped_pinv_matches_pinv(shape):
    torch.manual_seed(1)
    jac = torch.randn(8, *shape, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(damped_pinv(jac, 1e-12).detach().numpy(),
                               torch.linalg.pinv(jac).detach().numpy(), rtol=1e-6, atol=1e-8)
    damped_pinv(jac).sum().backward()
    assert torch.isfinite(jac.grad).all()


@pytest.mark.parametrize("task_name,m,k", [("single_point", 3, 7), ("multi_point", 12, 7),
                                           ("visual_servo", 2, 2)])
@pytest.mark.parametrize("name", NEURAL)
def test_shapes_every_task(tasks, name, task_name, m, k):
    from uvs_core.babble import babble

    task = tasks[task_name]
    ds = babble(task, 600, seed=2)
    qa = task.select(ds.q)
    est = make_estimator(name, task, epochs=1, hidden=16)
    if task_name == "multi_point":
        assert est.params["layers"] == 4
    est.fit(qa, ds.x, ds.traj)
    assert est.estimate(qa[3]).shape == (m, k)
    assert est.estimate_batch(qa[:4]).shape == (4, m, k)
    assert np.isfinite(est.estimate_batch(qa)).all()


def test_paper_defaults(tasks):
    assert make_estimator("nk_tanh", tasks["single_point"]).params["weight_decay"] == 0.0
    assert make_estimator("nk_relu", tasks["single_point"]).params["weight_decay"] == 1e-4
    assert make_estimator("nk_tanh", tasks["multi_point"]).params["weight_decay"] == 1e-6
    assert make_estimator("nk_relu", tasks["multi_point"]).params["weight_decay"] == 1e-5
    assert make_estimator("nj", tasks["visual_servo"]).params["layers"] == 1
    nj = make_estimator("binj", tasks["multi_point"])
    assert (nj.params["layers"], nj.params["epochs"], nj.params["beta"], nj.params["pairs"]) == (
        4, 40, 1.0, 10)


@pytest.mark.parametrize("name", NEURAL)
def test_bad_input_and_not_fitted(tasks, trained, name):
    with pytest.raises(NotFittedError):
        make_estimator(name, tasks["single_point"]).estimate(np.zeros(7))
    est, _ = trained[name]
    with pytest.raises(ValueError, match="expected 7"):
        est.estimate(np.zeros(8))
    with pytest.raises(ValueError, match="finite"):
        est.estimate(np.array([0, np.nan, 0, 0, 0, 0, 0.0]))


@pytest.mark.parametrize("name", NEURAL)
def test_inference_is_fast(trained, single, name):
    est, _ = trained[name]
    qs = single[0][:500]
    times = []
    for q in qs:
        t0 = time.perf_counter()
        est.estimate(q)
        times.append(time.perf_counter() - t0)
    # ~10-20 us measured; the service answers within a control step only if
    # this stays well under 0.2 ms, even on a loaded CI machine.
    assert np.median(times) < 2e-4


@pytest.mark.parametrize("name", NEURAL)
def test_save_load_round_trip(tasks, trained, single, name, tmp_path):
    task = tasks["single_point"]
    est, _ = trained[name]
    path = est.save(tmp_path / name)
    assert sorted(p.name for p in path.iterdir()) == ["metadata.json", "model.pt"]
    state = torch.load(path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = load_estimator(path, task, name=name)
    qa = single[0][:100]
    np.testing.assert_array_equal(loaded.estimate_batch(qa), est.estimate_batch(qa))
    np.testing.assert_array_equal(loaded.estimate(qa[5]), est.estimate(qa[5]))


@pytest.fixture
def nk_model(trained, tmp_path):
    return trained["nk_tanh"][0].save(tmp_path / "nk")


def test_missing_weights(nk_model, tasks):
    (nk_model / "model.pt").unlink()
    with pytest.raises(ModelError, match=r"model\.pt.*missing"):
        load_estimator(nk_model, tasks["single_point"])


def test_truncated_weights(nk_model, tasks):
    path = nk_model / "model.pt"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ModelError, match=r"model\.pt.*corrupt"):
        load_estimator(nk_model, tasks["single_point"])


def test_garbage_weights(nk_model, tasks):
    (nk_model / "model.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match=r"model\.pt"):
        load_estimator(nk_model, tasks["single_point"])


def test_weights_not_matching_metadata(nk_model, tasks):
    import json

    meta_path = nk_model / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["params"]["hidden"] = 50
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"model\.pt.*do not match"):
        load_estimator(nk_model, tasks["single_point"])


def test_mismatched_task_and_estimator(nk_model, tasks):
    with pytest.raises(ModelError, match=r"metadata\.json.*'task'.*expected 'visual_servo'"):
        load_estimator(nk_model, tasks["visual_servo"])
    with pytest.raises(ModelError, match=r"metadata\.json.*'estimator'.*expected 'nj'"):
        load_estimator(nk_model, tasks["single_point"], name="nj")
