"""`uvs train`: a bag in, a model directory with metadata out; bad input is a clear error."""

import json
import subprocess

import numpy as np
import pytest

from uvs_core.estimators import load_estimator
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task


def _uvs(*args):
    return subprocess.run(["uvs", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "babble"
    result = _uvs("collect", "--task", "single_point", "--samples", "3000", "--seed", "1",
                  "--out", str(path))
    assert result.returncode == 0, result.stderr
    return path


def test_train_writes_a_model_and_reports_json(bag, tmp_path):
    out = tmp_path / "nk"
    result = _uvs("train", "--estimator", "nk_tanh", "--data", str(bag), "--out", str(out),
                  "--epochs", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["estimator"] == "nk_tanh" and report["task"] == "single_point"
    assert report["epochs_run"] == 3 and 1 <= report["best_epoch"] <= 3
    assert report["val_loss"] > 0 and 0 < report["jacobian_frobenius_mean"] < 2.0
    assert (out / "metadata.json").exists() and (out / "model.pt").exists()
    assert "epoch 3/3" in result.stderr  # progress with losses

    task = make_task("single_point", load_robot("gen3"))
    model = load_estimator(out, task=task, name="nk_tanh")
    q = np.full(7, 0.1)
    assert model.estimate(q).shape == (3, 7)
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["data_hash"] == report["data_hash"] and len(metadata["data_hash"]) == 64


def test_train_refuses_to_overwrite_and_keeps_the_model(bag, tmp_path):
    out = tmp_path / "nk"
    assert _uvs("train", "--estimator", "nk_relu", "--data", str(bag), "--out", str(out),
                "--epochs", "1").returncode == 0
    before = (out / "model.pt").read_bytes()
    again = _uvs("train", "--estimator", "nk_relu", "--data", str(bag), "--out", str(out),
                 "--epochs", "1")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (out / "model.pt").read_bytes() == before


def test_train_on_a_missing_or_corrupt_bag_names_the_file(tmp_path, bag):
    missing = _uvs("train", "--estimator", "nk_tanh", "--data", str(tmp_path / "nope"),
                   "--out", str(tmp_path / "m"))
    assert missing.returncode == 2 and "nope" in missing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text((bag / "metadata.yaml").read_text())
    mcap = next(bag.glob("*.mcap"))
    (broken / mcap.name).write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 3])
    corrupt = _uvs("train", "--estimator", "nk_tanh", "--data", str(broken),
                   "--out", str(tmp_path / "m"))
    assert corrupt.returncode == 2 and mcap.name in corrupt.stderr
    assert not (tmp_path / "m").exists()


def test_train_rejects_a_task_the_bag_does_not_hold(bag, tmp_path):
    result = _uvs("train", "--estimator", "nk_tanh", "--data", str(bag), "--task", "multi_point",
                  "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and "single_point" in result.stderr
