"""train_model: the acceptance run, metadata, model files, loading checks."""

import json
import time

import numpy as np
import pytest

from uvs_core.estimators import ModelError, load_estimator
from uvs_learning.training import train_model

META_FIELDS = {
    "estimator", "task", "robot", "m", "k", "active", "params", "data_hash", "val_loss",
    "jacobian_frobenius_mean", "epochs_run", "best_epoch", "uvs_version", "created",
}


@pytest.fixture(scope="module")
def robot():
    from uvs_core.robot import load_robot

    return load_robot("gen3")


@pytest.fixture(scope="module")
def task(robot):
    from uvs_core.tasks import make_task

    return make_task("single_point", robot)


@pytest.fixture(scope="module")
def data20k(task):
    from uvs_core.babble import babble

    return babble(task, 20000, seed=0)


@pytest.fixture(scope="module")
def small(task):
    from uvs_core.babble import babble

    return babble(task, 3000, seed=4)


def test_nk_tanh_acceptance_run(task, data20k, tmp_path):
    """The issue's acceptance run: nk_tanh, 20,000 single-point samples, 10 epochs.

    Paper network (2 x 100 tanh) with the default secant term (weight 30,
    lr 1e-2 cosine). Same as ``uvs collect --task single_point --samples
    20000 --seed 0`` + ``uvs train --estimator nk_tanh --epochs 10``.
    """
    calls = []
    t0 = time.perf_counter()
    result = train_model("nk_tanh", task, data20k, out=tmp_path / "nk", epochs=10,
                         progress=lambda *a: calls.append(a), data_hash="sha256:test")
    elapsed = time.perf_counter() - t0
    assert elapsed < 60.0  # ~3-6 s on 2 shared cores
    assert [c[0] for c in calls] == list(range(1, 11))
    assert all(c[1] == 10 for c in calls)
    # Mean over held-out trajectories, including their far ends where no
    # training trajectory passes within 0.5 rad (the mean of |J*|_F is 1.24).
    # Measured 0.115 mean / 0.061 median (seeds 1, 2, which also change the
    # split: 0.113 / 0.124 mean); the paper's plain MSE (secant_weight=0)
    # gives 0.24 / 0.16. 0.15 leaves ~20 % for torch versions and BLAS
    # rounding, and fails if the secant term is lost or mis-scaled.
    assert result["params"]["secant_weight"] > 0
    assert result["jacobian_frobenius_mean"] < 0.15
    assert result["jacobian_frobenius_median"] < 0.09
    assert result["epochs_run"] == 10
    assert result["val_loss"] == pytest.approx(min(c[3] for c in calls))


def test_metadata_and_files(task, small, tmp_path):
    result = train_model("nk_relu", task, small, out=tmp_path / "m", epochs=2,
                         data_hash="sha256:abc", hidden=32)
    path = tmp_path / "m"
    assert sorted(p.name for p in path.iterdir()) == ["metadata.json", "model.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp dirs left
    meta = json.loads((path / "metadata.json").read_text())
    assert META_FIELDS <= set(meta)
    assert meta["estimator"] == "nk_relu" and meta["task"] == "single_point"
    assert (meta["robot"], meta["m"], meta["k"], meta["active"]) == ("gen3", 3, 7, list(range(7)))
    assert meta["params"]["hidden"] == 32 and meta["params"]["epochs"] == 2
    assert meta["params"]["weight_decay"] == 1e-4
    assert meta["data_hash"] == "sha256:abc"
    assert meta["epochs_run"] == 2 and meta["best_epoch"] in (1, 2)
    assert isinstance(meta["uvs_version"], str) and meta["uvs_version"]
    for key in ("fit_seconds", "eval_seconds", "total_seconds", "path"):
        assert key in result
    assert result["jacobian_frobenius_mean"] == meta["jacobian_frobenius_mean"]
    # Training facts survive a load + re-save.
    est = load_estimator(path, task)
    assert est.info["data_hash"] == "sha256:abc"
    est.save(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "metadata.json").read_text())
    assert again["jacobian_frobenius_mean"] == meta["jacobian_frobenius_mean"]


@pytest.mark.parametrize("name,weights", [("tj", None), ("broyden", "data.npz"),
                                          ("llknn", "data.npz"), ("nj", "model.pt"),
                                          ("binj", "model.pt")])
def test_every_estimator_trains_and_loads(task, small, tmp_path, name, weights):
    extra = {"hidden": 16} if weights == "model.pt" else {}
    result = train_model(name, task, small, out=tmp_path / name, epochs=1, **extra)
    files = sorted(p.name for p in (tmp_path / name).iterdir())
    assert files == sorted(["metadata.json"] + ([weights] if weights else []))
    if name == "tj":
        assert result["jacobian_frobenius_mean"] == 0.0
    est = load_estimator(tmp_path / name)
    q = task.select(small.q[:20])
    assert est.estimate_batch(q).shape == (20, 3, 7)


def test_no_output_dir(task, small):
    result = train_model("llknn", task, small)
    assert "path" not in result
    assert np.isfinite(result["val_loss"])


def test_dataset_for_other_task_rejected(robot, small):
    from uvs_core.tasks import make_task

    with pytest.raises(ValueError, match="recorded for task 'single_point'"):
        train_model("nk_tanh", make_task("multi_point", robot), small)


def test_unknown_parameter_for_estimator(task, small):
    with pytest.raises(ValueError, match="'llknn': unknown parameter.*'hidden'"):
        train_model("llknn", task, small, hidden=16)


def test_unknown_estimator(task, small):
    with pytest.raises(ValueError, match="unknown estimator"):
        train_model("nk_sigmoid", task, small)


def test_load_checks_request(robot, task, small, tmp_path):
    from uvs_core.tasks import make_task

    train_model("nk_tanh", task, small, out=tmp_path / "nk", epochs=1, hidden=8)
    with pytest.raises(ModelError, match=r"nk.metadata\.json: field 'task' mismatch: "
                                         r"expected 'multi_point', found 'single_point'"):
        load_estimator(tmp_path / "nk", make_task("multi_point", robot))
    with pytest.raises(ModelError, match=r"field 'estimator' mismatch: expected 'nj'"):
        load_estimator(tmp_path / "nk", task, name="nj")
    meta_path = tmp_path / "nk" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["robot"] = "ur5"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"field 'robot' mismatch: expected 'gen3', found 'ur5'"):
        load_estimator(tmp_path / "nk", task)
    meta_path.write_text('{"estimator": "nk_tanh"')
    with pytest.raises(ModelError, match=r"metadata\.json: corrupt JSON"):
        load_estimator(tmp_path / "nk", task)


# ------------------------------------------------------------------ robust loss

def test_residual_penalty_values_and_gradient():
    import torch

    from uvs_learning.mlp import residual_penalty

    res = torch.tensor([[0.03, 0.04], [0.6, 0.8], [0.0, 0.0]], requires_grad=True)
    mse = residual_penalty(res, "mse")
    huber = residual_penalty(res, "huber", 0.1)
    np.testing.assert_allclose(mse.detach(), [0.0025, 1.0, 0.0], rtol=1e-6)
    # ||r|| = 0.05 <= delta: squared; ||r|| = 1: 2 * 0.1 * 1 - 0.01.
    np.testing.assert_allclose(huber.detach(), [0.0025, 0.19, 0.0], rtol=1e-6)
    huber.sum().backward()
    grad = res.grad.numpy()
    np.testing.assert_allclose(grad[0], [0.06, 0.08], rtol=1e-5)       # 2 r
    np.testing.assert_allclose(grad[1], [0.12, 0.16], rtol=1e-5)       # 2 delta r / |r|
    assert np.all(np.isfinite(grad[2])) and np.all(grad[2] == 0)
    with pytest.raises(ValueError, match="loss"):
        residual_penalty(res, "l1")


@pytest.fixture(scope="module")
def visual_outliers():
    """visual_servo babbling (paper protocol), and the same x as a tracker with 2 px noise,
    5 % dropped frames and 10 % wrong blobs recorded it."""
    from dataclasses import replace

    from uvs_core.babble import babble
    from uvs_core.evaluation import protocol
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task
    from uvs_core.tracker_noise import TrackerNoise, noisy_dataset_x

    vs = make_task("visual_servo", load_robot("gen3"))
    data = babble(vs, 4000, **protocol("visual_servo").babble_options(vs.robot.n))
    noise = TrackerNoise(pixel_std=2.0, drop_prob=0.05, outlier_prob=0.1)
    x = noisy_dataset_x(noise, np.random.default_rng(0), data.x, data.traj, 640, 480)
    return vs, data, replace(data, x=x)


def test_huber_loss_resists_tracker_outliers(visual_outliers):
    """nk_tanh on outlier-ridden visual-servo data: Huber's Jacobian is several times
    closer to the true one than the MSE's (measured: ~17 against ~108 px/rad at 5000
    samples, 10 epochs); on clean data the two agree."""
    vs, clean, noisy = visual_outliers
    err = {}
    for tag, data in (("clean", clean), ("noisy", noisy)):
        for loss in ("mse", "huber"):
            result = train_model("nk_tanh", vs, data, epochs=6, loss=loss)
            assert result["params"]["loss"] == loss
            err[tag, loss] = result["jacobian_frobenius_mean"]
    assert err["noisy", "huber"] < 0.4 * err["noisy", "mse"], err
    assert err["clean", "huber"] == pytest.approx(err["clean", "mse"], rel=0.3), err


def test_loss_option_is_validated(visual_outliers, tmp_path):
    vs, clean, _ = visual_outliers
    with pytest.raises(ValueError, match="no training loss"):
        train_model("llknn", vs, clean, loss="huber")
    with pytest.raises(ValueError, match="loss must be one of"):
        train_model("nk_tanh", vs, clean, epochs=1, loss="l1")
    with pytest.raises(ValueError, match="huber_delta must be > 0"):
        train_model("nj", vs, clean, epochs=1, loss="huber", huber_delta=0.0)
    result = train_model("binj", vs, clean, out=tmp_path / "binj", epochs=1, loss="huber",
                         huber_delta=0.2)
    loaded = load_estimator(tmp_path / "binj", task=vs)
    assert (loaded.params["loss"], loaded.params["huber_delta"]) == ("huber", 0.2)
    assert np.isfinite(result["val_loss"])
