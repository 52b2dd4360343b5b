"""`uvs evaluate`: the benchmark's success measure through a live graph.

The summary's arithmetic against uvs_core.evaluation; a run on the in-process graph
(tj, a robot YAML whose safety box excludes one of the targets, one busy loop beside
it); bad input as one-line errors; and a run attached to a graph started by
`ros2 launch` (skipped where launch/ros2cli are missing, as tests/test_launch_system.py).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from uvs_bringup.evaluate import PlannedTarget, plan_targets, summarize, target_record
from uvs_bringup.runner import TargetResult, halt_kind
from uvs_core.evaluation import protocol, threshold_success
from uvs_core.robot import load_robot
from uvs_core.safety import Envelope
from uvs_core.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
GEN3 = load_robot("gen3")
SINGLE = make_task("single_point", GEN3)
LOW_CEILING = 0.95   # m: the safety box's top in the test robot YAML; target 1 of seed 0 is above


def _evaluate(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run(["uvs", "evaluate", *args], capture_output=True, text=True,
                          timeout=timeout)


def _launch_helpers():
    """tests/test_launch_system.py's Launched and wait_for_graph (one definition)."""
    spec = importlib.util.spec_from_file_location(
        "uvs_test_launch_helpers", Path(__file__).with_name("test_launch_system.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # raises where UVS_REQUIRE_LAUNCH_TESTS=1 lacks tools
    return module


LAUNCH = _launch_helpers()


_alive = LAUNCH._alive  # one definition: tests/test_launch_system.py's


# ------------------------------------------------------------------ pure helpers
@pytest.mark.parametrize(("reason", "kind"), [
    ("estimator timeout (no answer within 40 ms)", "estimator timeout"),
    ("joint limit: joint_2, joint_4", "joint limit"),
    ("singular (condition number 31.2)", "singular"),
    ("estimator timeout (no answer within 40 ms) [latched: set a target or call ~/resume]",
     "estimator timeout"),
    ("cause cleared (estimator unavailable: no answer for 1.0 s) [latched: x]",
     "cause cleared"),
    ("", "unspecified"),
])
def test_halt_kind_drops_the_details(reason, kind):
    assert halt_kind(reason) == kind


def test_plan_targets_are_the_benchmarks_and_skip_those_outside_the_envelope():
    box = Envelope(np.full(3, -2.0), np.array([2.0, 2.0, LOW_CEILING]))
    planned = plan_targets(SINGLE, seeds=2, count=4, envelope=box)
    assert [(p.seed, p.index) for p in planned] == [(s, i) for s in range(2) for i in range(4)]
    for seed in range(2):
        expected = SINGLE.sample_targets(np.random.default_rng(seed), 4)
        got = np.array([p.target for p in planned if p.seed == seed])
        np.testing.assert_array_equal(got, expected)
    skipped = [p for p in planned if p.skip]
    assert skipped, "seed 0's target 1 is at z = 1.02 m"
    for p in planned:
        assert bool(p.skip) == (p.target[2] > LOW_CEILING)
    assert "above the safety box" in skipped[0].skip


def _record(seed, initial, final, outcome, cycles, halted=None, held=0, stalled=0):
    """A target_record of a target at (initial, 0, 0) m from x = 0, ending at (final, 0, 0)."""
    result = TargetResult(target=[initial, 0.0, 0.0], initial_error=initial,
                          final_error=final, steps=cycles, seconds=1.0, outcome=outcome,
                          initial_position=[0.0, 0.0, 0.0],
                          final_position=[initial - final, 0.0, 0.0], cycles=cycles,
                          halted_cycles=halted or {}, stalled_cycles=stalled,
                          held_cycles=held)
    return target_record(PlannedTarget(seed, 0, np.array(result.target)), result, "euclidean")


def test_summarize_uses_the_benchmarks_thresholds_bins_and_counts_halted_cycles():
    records = [
        _record(0, 0.3, 0.0045, "converged", 100, {"estimator timeout": 1}, held=2),
        _record(0, 0.7, 0.05, "stalled", 60, stalled=25),
        _record(1, 1.2, 0.2, "halted", 50, {"joint limit": 20, "estimator timeout": 3}),
        _record(1, 1.7, 0.0, "converged", 90),
    ]
    np.testing.assert_allclose([r["final_distance"] for r in records],
                               [0.0045, 0.05, 0.2, 0.0], atol=1e-12)
    out = summarize("single_point", records)
    thr = protocol("single_point").threshold_values
    final = np.array([0.0045, 0.05, 0.2, 0.0])
    success = out["success"]
    # thresholds 0.001..0.1 m: 0.0045 passes 96 of 100, 0.05 passes 50, 0.2 none, 0 all
    assert success["total"] == pytest.approx((96 + 50 + 0 + 100) / 4)
    assert success["total"] == pytest.approx(threshold_success(final, thr))
    assert [b["n"] for b in success["bins"]] == [1, 1, 1, 1]
    assert [b["success"] for b in success["bins"]] == pytest.approx([96, 50, 0, 100])
    assert success["per_seed"] == pytest.approx({"0": 73.0, "1": 50.0})
    assert out["outcomes"] == {"converged": 2, "stalled": 1, "halted": 1, "timeout": 0}
    assert out["cycles"] == {"total": 300, "halted": {"estimator timeout": 4, "joint limit": 20},
                             "halted_total": 24, "stalled": 25, "held": 2,
                             "estimator_timeout_share": pytest.approx(4 / 300)}


# ------------------------------------------------------------------ in-process graph
@pytest.fixture(scope="module")
def low_ceiling_config(tmp_path_factory) -> Path:
    """The installed config, with the controller on a Gen3 YAML whose safety box ends at
    z = LOW_CEILING and `envelope: robot` (box and table)."""
    root = tmp_path_factory.mktemp("evaluate")
    config = root / "config"
    shutil.copytree(ROOT / "config", config)
    robot = yaml.safe_load((ROOT / "config" / "robots" / "gen3.yaml").read_text())
    robot["safety"]["box"]["max"][2] = LOW_CEILING
    robot_path = root / "gen3_low_ceiling.yaml"
    robot_path.write_text(yaml.safe_dump(robot))
    controller = yaml.safe_load((config / "controller.yaml").read_text())
    controller["controller"]["ros__parameters"].update(robot=str(robot_path), envelope="robot")
    (config / "controller.yaml").write_text(yaml.safe_dump(controller))
    return config


@pytest.mark.slow
def test_inprocess_tj_run_reports_the_protocols_figures(low_ceiling_config, tmp_path):
    out = tmp_path / "eval"
    result = _evaluate("--estimator", "tj", "--targets", "6", "--duration", "15",
                       "--load", "1", "--config", str(low_ceiling_config),
                       "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc == json.loads((out / "evaluation.json").read_text())
    assert (out / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert (doc["schema"], doc["graph"], doc["task"], doc["estimator"], doc["units"]) == \
        ("uvs-evaluate/1", "inproc", "single_point", "tj", "m")
    assert doc["protocol"]["thresholds"] == [0.001, 0.1, 0.001]
    assert doc["protocol"]["bin_edges"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    # the envelope: the controller's own (robot YAML box + table); target 1 is above the box
    assert doc["graph_settings"]["envelope"] == "robot"
    assert doc["envelope"]["skipped"] == 1
    skipped = doc["envelope"]["skipped_targets"][0]
    assert (skipped["seed"], skipped["index"]) == (0, 1)
    assert "above the safety box" in skipped["reason"]
    assert [t["index"] for t in doc["targets"]] == [0, 2, 3, 4, 5]
    assert doc["servoed"] == 5

    goals = SINGLE.sample_targets(np.random.default_rng(0), 6)
    home = SINGLE.x(SINGLE.home_active)
    for t in doc["targets"]:
        np.testing.assert_allclose(t["target"], goals[t["index"]])
        # measured from the homed arm, as the benchmark's step-0 distance
        assert t["initial_distance"] == pytest.approx(np.linalg.norm(goals[t["index"]] - home),
                                                      abs=2e-3)
        assert t["cycles"] > 0 and t["steps"] > 0
        if t["outcome"] == "converged":
            assert t["final_distance"] < 0.005   # the controller's default tolerance
            assert t["reason"] == ""
    assert doc["outcomes"]["converged"] >= 4, doc["targets"]
    assert sum(doc["outcomes"].values()) == 5

    finals = np.array([t["final_distance"] for t in doc["targets"]])
    success = doc["success"]
    assert success["total"] == pytest.approx(
        threshold_success(finals, protocol("single_point").threshold_values))
    assert sum(b["n"] for b in success["bins"]) == 5
    cycles = doc["cycles"]
    assert cycles["total"] == sum(t["cycles"] for t in doc["targets"])
    assert cycles["halted_total"] == sum(sum(t["halted_cycles"].values())
                                         for t in doc["targets"])
    assert cycles["estimator_timeout_share"] == pytest.approx(
        cycles["halted"].get("estimator timeout", 0) / cycles["total"])

    # the busy loop ran for the run and is gone
    assert doc["load"]["processes"] == 1 and len(doc["load"]["pids"]) == 1
    assert not _alive(doc["load"]["pids"][0])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("args", "message"), [
    (["--estimator", "bogus"], "unknown estimator 'bogus'; choose from tj, broyden"),
    (["--task", "bogus"], "unknown task 'bogus'; choose from single_point"),
    (["--targets", "0"], "argument --targets: must be > 0, got 0"),
    (["--seeds", "-1"], "argument --seeds: must be > 0, got -1"),
    (["--duration", "abc"], "argument --duration: not a number: 'abc'"),
    (["--load", "-2"], "argument --load: must be >= 0, got -2"),
    (["--graph", "ring"], "--graph 'ring': choose inproc or external"),
    (["--graph", "external", "--model", "/tmp"], "--model applies to --graph inproc"),
    (["--graph", "external", "--wait", "1"], "no servo graph within 1 s"),
    (["--resume"], "--resume needs --out DIR"),
    (["--resume", "--overwrite", "--out", "/tmp"], "--resume keeps DIR's targets and "
     "--overwrite replaces them; choose one"),
])
def test_bad_input_is_a_one_line_error(args, message):
    result = _evaluate(*args, timeout=60.0)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uvs: error: "), result.stderr
    assert message in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot resume from it"),
    ('{"schema": "uvs-benchmark/1"}', "not an `uvs evaluate` result"),
])
def test_resume_from_a_corrupt_result_is_a_one_line_error_and_keeps_the_file(
        tmp_path, content, message):
    (tmp_path / "evaluation.json").write_text(content)
    result = _evaluate("--out", str(tmp_path), "--resume", timeout=60.0)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert (tmp_path / "evaluation.json").read_text() == content


# ------------------------------------------------------------------ ros2 launch


@pytest.mark.slow
@pytest.mark.skipif(not LAUNCH.HAVE_TOOLS, reason="launch, launch_ros and ros2cli are not "
                    "installed (not on PyPI): ../shared/ros2-tools/install.sh or a ROS 2 "
                    "distribution provides them")
def test_external_graph_started_by_ros2_launch(tmp_path):
    launched = LAUNCH.Launched(tmp_path / "launch.log", "estimator:=tj")
    try:
        LAUNCH.wait_for_graph(launched, ["driver", "jacobian_estimator", "controller"])
        result = _evaluate("--graph", "external", "--targets", "3", "--wait", "30", "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        doc = json.loads(result.stdout)
        assert (doc["graph"], doc["task"], doc["estimator"]) == \
            ("external", "single_point", "tj")
        assert doc["servoed"] == 3 and doc["envelope"]["skipped"] == 0
        assert doc["outcomes"]["converged"] >= 2, doc["targets"]
        assert doc["restored"] == []
        assert "Traceback" not in launched.text
    finally:
        launched.close()


# ------------------------------------------------------------------ resuming
@pytest.mark.slow
def test_an_interrupted_run_keeps_its_targets_and_resume_servoes_only_the_rest(tmp_path):
    """Ctrl-C after the first target: evaluation.partial.json holds it; the same command
    with --resume servoes the rest only, and one more --targets extends the result."""
    import signal
    import time

    out = tmp_path / "eval"
    partial = out / "evaluation.partial.json"
    command = ["uvs", "evaluate", "--estimator", "tj", "--targets", "3", "--out", str(out)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180.0
        while not partial.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert partial.exists(), "no partial result after the first target"
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60.0)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, stderr[-2000:]
    assert f"the targets measured so far are in {partial}" in stderr
    assert not (out / "evaluation.json").exists()
    kept = json.loads(partial.read_text())
    assert 1 <= kept["servoed"] < 3
    first = kept["targets"][0]

    # the same settings are required: another duration is refused in one line
    refused = _evaluate(*command[2:], "--resume", "--duration", "5")
    assert refused.returncode == 2
    assert "was measured with duration 10.0, this run has 5.0" in refused.stderr

    done = _evaluate(*command[2:], "--resume", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{kept['servoed']} of 3 targets done, {3 - kept['servoed']} to servo" in done.stderr
    doc = json.loads(done.stdout)
    assert not partial.exists()
    assert [t["index"] for t in doc["targets"]] == [0, 1, 2]
    assert doc["targets"][0] == first                    # kept, not servoed again
    assert [r["servoed"] for r in doc["runs"]] == [kept["servoed"], 3 - kept["servoed"]]
    assert doc["success"]["total"] == pytest.approx(threshold_success(
        np.array([t["final_distance"] for t in doc["targets"]]),
        protocol("single_point").threshold_values))

    more = _evaluate(*command[2:4], "--targets", "4", "--out", str(out), "--resume", "--json")
    assert more.returncode == 0, more.stderr[-3000:]
    doc4 = json.loads(more.stdout)
    assert doc4["targets"][:3] == doc["targets"] and doc4["targets"][3]["index"] == 3
    assert len(doc4["runs"]) == 3 and doc4["runs"][-1]["servoed"] == 1
    np.testing.assert_allclose(doc4["targets"][3]["target"],
                               SINGLE.sample_targets(np.random.default_rng(0), 4)[3])
