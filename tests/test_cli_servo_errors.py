"""`uvs servo` with bad arguments, models or config folders: one line, exit code 2,
nothing left running, no traceback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _servo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["uvs", "servo", "--targets", "1", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A config folder whose driver.yaml does not parse, one without the controller's
    section, and a model directory with empty metadata."""
    root = tmp_path_factory.mktemp("broken")
    bad_yaml = root / "bad_yaml"
    shutil.copytree(ROOT / "config", bad_yaml)
    (bad_yaml / "driver.yaml").write_text("driver: [\n")
    no_section = root / "no_section"
    shutil.copytree(ROOT / "config", no_section)
    (no_section / "controller.yaml").write_text("other:\n  ros__parameters: {}\n")
    model = root / "model"
    model.mkdir()
    (model / "metadata.json").write_text("{}")
    return {"bad_yaml": bad_yaml, "no_section": no_section, "model": model, "root": root}


@pytest.mark.parametrize(("args", "message"), [
    (["--estimator", "bogus"], "estimator must be one of tj, broyden, llknn"),
    (["--config", "/nonexistent/uvs"], "--config /nonexistent/uvs: no such folder"),
    (["--model", "/nonexistent/model", "--estimator", "nk_tanh"],
     "--model /nonexistent/model: no such model directory"),
])
def test_bad_arguments_are_one_line_errors(args, message):
    result = _servo(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"uvs: error: {message}" or message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("case", "message"), [
    ("bad_yaml", "driver.yaml is not valid YAML"),
    ("no_section", "controller.yaml has no 'controller: ros__parameters:' section"),
    ("empty", "lacks driver.yaml (node driver)"),
])
def test_bad_config_folders_are_one_line_errors(broken, case, message):
    folder = broken["root"] if case == "empty" else broken[case]
    result = _servo("--config", str(folder), "--estimator", "tj")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("uvs: error: ")


def test_a_corrupt_model_is_a_one_line_error_naming_the_file(broken):
    result = _servo("--estimator", "nk_tanh", "--model", str(broken["model"]))
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("uvs: error: jacobian_estimator: estimator 'nk_tanh'"), last
    assert f"{broken['model']}/metadata.json: field 'estimator' is missing" in last
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--robot", "bogus"], "uvs: error: robot 'bogus': no file bogus.yaml"),
    (["--backend", "gen3", "--robot", "ur5e"],
     "uvs: error: backend 'gen3' drives a Kinova Gen3 (gen3, gen3_6dof), not robot 'ur5e': "
     "use backend sim to servo 'ur5e' in simulation"),
])
def test_a_robot_model_that_cannot_be_servoed_is_a_one_line_error(args, message):
    result = _servo(*args, "--estimator", "tj")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(message), result.stderr


def test_a_model_made_for_another_robot_is_refused_naming_both(tmp_path):
    """The shipped multi_point nk_tanh is the Gen3's: the UR5e's estimator refuses it."""
    result = _servo("--robot", "ur5e", "--task", "multi_point", "--estimator", "nk_tanh")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("uvs: error: jacobian_estimator: estimator 'nk_tanh': model "), last
    assert "multi_point/nk_tanh was made for robot 'gen3', this node serves robot 'ur5e'" \
        in last, last
    assert "uvs collect --robot ur5e --task multi_point" in last, last
    assert "Traceback" not in result.stderr
