"""Every config/*.yaml against the parameter spec of the node it configures
(uvs_ros.params): every key is a parameter of the node, of its type, valid alone and
with the others; a value that differs from the node's default is listed below with
the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "config"


def _specs() -> dict:
    """file name -> {section (node name) -> ParamSpec}."""
    from uvs_bringup.recorder import recorder_spec
    from uvs_control.params import SPEC as controller
    from uvs_driver.babbler_node import SPEC as babbler
    from uvs_driver.driver_node import SPEC as driver
    from uvs_estimation.estimator_node import estimator_spec
    from uvs_vision.hue_tracker_node import SPEC as hue_tracker
    from uvs_vision.sim_camera_node import SPEC as sim_camera

    return {
        "babbler.yaml": {"babbler": babbler},
        "controller.yaml": {"controller": controller},
        "driver.yaml": {"driver": driver},
        "hue_tracker.yaml": {"hue_tracker": hue_tracker, "target_tracker": hue_tracker},
        "jacobian_estimator.yaml": {"jacobian_estimator": estimator_spec()},
        "recorder.yaml": {"recorder": recorder_spec()},
        "sim_camera.yaml": {"sim_camera": sim_camera},
    }


# (file, section, parameter) -> why the file's value is not the node's default
DOCUMENTED = {
    ("hue_tracker.yaml", "target_tracker", "hue_low"):
        "the second tracker finds the sim camera's green target ring, hue 45..75",
    ("hue_tracker.yaml", "target_tracker", "hue_high"):
        "the second tracker finds the sim camera's green target ring, hue 45..75",
    ("jacobian_estimator.yaml", "jacobian_estimator", "model_dir"):
        "'' is the installed models/, the node's default, which the node resolves to a path",
}


def test_every_config_file_has_a_spec():
    assert sorted(p.name for p in CONFIG.glob("*.yaml")) == sorted(_specs())


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG.glob("*.yaml")))
def test_config_file_matches_its_nodes_spec(name):
    differences_found = {}
    for section, spec in _specs()[name].items():
        problems, differences = spec.yaml_problems(CONFIG / name, section)
        assert problems == []
        differences_found.update({(name, section, key): value
                                  for key, value in differences.items()})
    documented = {key for key in DOCUMENTED if key[0] == name}
    assert set(differences_found) == documented, differences_found


def test_the_check_fails_on_an_unknown_key_and_a_bad_value(tmp_path):
    from uvs_control.params import SPEC

    text = (CONFIG / "controller.yaml").read_text()
    bad = tmp_path / "controller.yaml"
    bad.write_text(text.replace("    gain: 1.0", "    gain: 1.0\n    gian: 2.0")
                   .replace("estimator_timeout: 0.04", "estimator_timeout: 0.06"))
    problems, _ = SPEC.yaml_problems(bad, "controller")
    assert problems == [f"{bad}: controller: gian: not a parameter of the node"]
    bad.write_text(text.replace("estimator_timeout: 0.04", "estimator_timeout: 0.06"))
    problems, _ = SPEC.yaml_problems(bad, "controller")
    assert problems == [f"{bad}: controller: estimator_timeout 0.06 s must be shorter than "
                        "the period 1/rate = 0.05 s"]
