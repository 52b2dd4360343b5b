"""`uvs urdf`: the URDF of a robot description, read back by pinocchio's URDF parser."""

import json
import subprocess

import numpy as np
import pinocchio as pin
import pytest

from uvs_core.robot import load_robot
from uvs_core.urdf import TOOL_LINK, robot_urdf


def _uvs(*args):
    return subprocess.run(["uvs", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["gen3", "ur5e"])
def test_printed_urdf_parses_and_places_the_tool_where_the_dh_model_does(name):
    result = _uvs("urdf", "--robot", name)
    assert result.returncode == 0, result.stderr
    robot = load_robot(name)
    assert result.stdout == robot_urdf(robot)
    model = pin.buildModelFromXML(result.stdout)
    assert list(model.names)[1:] == list(robot.joint_names)
    data = model.createData()
    pin.framesForwardKinematics(model, data, pin.neutral(model))   # every joint at 0
    np.testing.assert_allclose(data.oMf[model.getFrameId(TOOL_LINK)].homogeneous,
                               robot.fk(np.zeros(robot.n)), atol=1e-12)


def test_out_writes_the_file_and_says_so(tmp_path):
    out = tmp_path / "gen3.urdf"
    result = _uvs("urdf", "--robot", "gen3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text() == robot_urdf(load_robot("gen3"))
    assert result.stdout.strip() == f"wrote {out}: URDF of gen3, 7 joints, 10 links"
    assert pin.buildModelFromUrdf(str(out)).nq == 11   # 4 continuous joints take 2 each


def test_json_summary_needs_out(tmp_path):
    out = tmp_path / "ur5e.urdf"
    result = _uvs("urdf", "--robot", "ur5e", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "robot": "ur5e", "out": str(out), "joints": 6, "links": 9}
    no_out = _uvs("urdf", "--json")
    assert no_out.returncode == 2 and "--json needs --out" in no_out.stderr


def test_unknown_robot_is_a_one_line_error_with_exit_2(tmp_path):
    result = _uvs("urdf", "--robot", "no_such_arm", "--out", str(tmp_path / "x.urdf"))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uvs: error: robot 'no_such_arm'")
    assert not (tmp_path / "x.urdf").exists()
