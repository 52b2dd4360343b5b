"""`uvs benchmark --quick`: the whole pipeline (babble, train, servo, report, plots) end to end."""

import json
import subprocess
import time

import numpy as np
import pytest

ESTIMATORS = ("tj", "broyden", "llknn", "nj", "binj", "nk_relu", "nk_tanh")


def _uvs(*args, timeout=300):
    return subprocess.run(["uvs", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick"
    start = time.monotonic()
    result = _uvs("benchmark", "--task", "single_point", "--estimators", ",".join(ESTIMATORS),
                  "--quick", "--workers", "2", "--out", str(out), "--json")
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout.strip().splitlines()[-1]), result.stderr, seconds


def test_quick_run_writes_every_file_within_two_minutes(quick):
    out, printed, stderr, seconds = quick
    assert seconds < 120
    for name in ("results.json", "report.md", "steps.npz", "fig_distance.png",
                 "fig_frobenius.png", "fig_condition.png", "fig_pd.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ESTIMATORS[1:]:
        assert (out / "models" / name / "metadata.json").exists()
    assert json.loads((out / "results.json").read_text()) == printed
    assert "training" in stderr and "evaluating" in stderr       # progress bars


def test_results_keys_and_ranges(quick):
    _, res, _, _ = quick
    assert res["schema"] == "uvs-benchmark/1" and res["task"] == "single_point"
    p = res["protocol"]
    assert (p["targets"], p["seeds"], p["steps"], p["samples"]) == (20, 2, 200, 20000)
    # The reference code's conventions (--protocol paper, the default): no cap in the
    # control law (inf -> null), each joint clipped to 1.22 rad/s by the simulation.
    assert p["variant"] == "paper" and p["start"] == [0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0]
    assert (p["velocity_mode"], p["velocity_cap"], p["joint_limits"]) == ("clip", 1.22, "mask")
    assert p["control"]["gain"] == 1.0 and p["control"]["max_joint_velocity"] is None
    assert (res["data"]["sigma"], res["data"]["ou_dt"]) == (1.0, 1.0)
    assert p["thresholds"]["count"] == 100 and p["bin_edges"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert res["command"].startswith("uvs benchmark") and "--quick" in res["command"]
    assert res["machine"]["cores"] >= 1 and res["machine"]["python"]
    for key in ("data_seconds", "training_seconds", "evaluation_seconds", "total_seconds"):
        assert res["timing"][key] >= 0
    assert set(res["estimators"]) == set(ESTIMATORS)
    for name, s in res["estimators"].items():
        assert 0.0 <= s["success"]["total"] <= 100.0
        assert s["trajectories"] == 40 and sum(b["n"] for b in s["success"]["bins"]) == 40
        for b in s["success"]["bins"]:
            assert b["success"] is None or 0.0 <= b["success"] <= 100.0
        assert len(s["frobenius"]["per_step_mean"]) == 200
        assert s["frobenius"]["mean"] >= 0.0
        q = s["condition"]["quantiles"]
        assert 1.0 <= q["0"] <= q["50"] <= q["100"]
        pd = s["positive_definite"]
        assert 0.0 <= pd["share"] <= 1.0
        assert pd["always"]["n"] + pd["not_always"]["n"] == 40
        assert s["paper"]["total"] > 0
        assert (s["training"] is None) == (name == "tj")
    assert res["estimators"]["tj"]["frobenius"]["mean"] == 0.0
    assert res["estimators"]["tj"]["positive_definite"]["share"] == 1.0


def test_true_jacobian_beats_broyden(quick):
    _, res, _, _ = quick
    ests = res["estimators"]
    # tj scores 95.8 on the full run (the paper 95.81); 40 trajectories leave a few
    # points of sampling noise. Broyden, starting every trajectory from one fixed
    # Jacobian, fails on the far targets (full run 86.2).
    assert ests["tj"]["success"]["total"] > 85.0
    assert ests["tj"]["success"]["total"] > ests["broyden"]["success"]["total"]


def test_steps_npz_and_report(quick):
    out, res, _, _ = quick
    with np.load(out / "steps.npz") as steps:
        assert steps["tj/distance"].shape == (40, 201)
        assert steps["nk_tanh/condition"].shape == (40, 200)
        final = steps["tj/distance"][:, -1]
    assert res["estimators"]["tj"]["final_distance"]["mean"] == pytest.approx(final.mean())
    report = (out / "report.md").read_text()
    assert "| Tanh-NK |" in report and "(94.07)" in report and "fig_distance.png" in report


def test_bad_arguments_are_clear_errors(tmp_path):
    unknown = _uvs("benchmark", "--estimators", "tj,magic", "--out", str(tmp_path / "a"))
    assert unknown.returncode == 2 and "magic" in unknown.stderr
    bad_param = _uvs("benchmark", "--quick", "--estimators", "tj,nk_tanh", "--param",
                     "nk_tanh.nope=1", "--out", str(tmp_path / "b"))
    assert bad_param.returncode == 2 and "nope" in bad_param.stderr
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text("{}")
    exists = _uvs("benchmark", "--quick", "--estimators", "tj", "--out", str(tmp_path / "c"))
    assert exists.returncode == 2 and "--overwrite" in exists.stderr


def test_epochs_given_twice_the_run_wide_flag_wins(tmp_path):
    """`--epochs` with `--param EST.epochs`: a run, not a Python error, and the run-wide
    flag decides (the per-estimator value applies where `--epochs` is not given)."""
    both = _uvs("benchmark", "--quick", "--estimators", "nk_tanh", "--epochs", "1",
                "--param", "nk_tanh.epochs=2", "--targets", "2", "--seeds", "1",
                "--out", str(tmp_path / "both"), "--json")
    assert both.returncode == 0, both.stderr
    training = json.loads(both.stdout.strip().splitlines()[-1])["estimators"]["nk_tanh"]
    assert training["training"]["epochs_run"] == 1


def test_a_robot_with_other_joints_starts_from_its_home_and_the_report_says_so(tmp_path):
    """The paper protocol's start pose is the 7-joint Gen3's; a 6-joint UR5e starts from
    its task's home, and results.json and report.md say that, not the Gen3's pose."""
    out = tmp_path / "ur5e"
    result = _uvs("benchmark", "--robot", "ur5e", "--quick", "--estimators", "tj",
                  "--targets", "2", "--seeds", "1", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["protocol"]["start"] is None
    report = (out / "report.md").read_text()
    assert "from the task's start pose" in report and "q = [0.0, 0.5" not in report
    gen3 = _uvs("benchmark", "--quick", "--estimators", "tj", "--targets", "2", "--seeds",
                "1", "--out", str(tmp_path / "gen3"), "--json")
    assert json.loads(gen3.stdout.strip().splitlines()[-1])["protocol"]["start"] == \
        [0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0]


def test_design_protocol_variant(tmp_path):
    """--protocol design: DESIGN.md's summary (100 steps from zeros, whole-vector cap,
    clipped positions, OU sigma 0.2 with dt)."""
    out = tmp_path / "design"
    result = _uvs("benchmark", "--protocol", "design", "--estimators", "tj,broyden",
                  "--targets", "5", "--seeds", "1", "--samples", "2000", "--out", str(out),
                  "--json")
    assert result.returncode == 0, result.stderr
    res = json.loads(result.stdout.strip().splitlines()[-1])
    p = res["protocol"]
    assert (p["variant"], p["steps"], p["start"], p["joint_limits"]) == \
        ("design", 100, [0.0] * 7, "clip")
    assert p["velocity_mode"] == "scale" and p["control"]["max_joint_velocity"] == 1.22
    assert (res["data"]["sigma"], res["data"]["ou_dt"]) == (0.2, None)
    assert "--protocol design" in res["command"]
    with np.load(out / "steps.npz") as steps:
        assert steps["tj/distance"].shape == (5, 101)
    assert "protocol variant 'design'" in (out / "report.md").read_text()


def test_a_given_model_is_evaluated_instead_of_trained(tmp_path):
    """--model EST=DIR: the benchmark servos with that model (a shipped one here) and
    trains nothing for EST; a model of another task is refused with the reason."""
    from uvs_core.paths import installed_dir

    shipped = installed_dir("models") / "single_point" / "nk_tanh"
    out = tmp_path / "given"
    result = _uvs("benchmark", "--estimators", "tj,nk_tanh", "--model", f"nk_tanh={shipped}",
                  "--targets", "5", "--seeds", "1", "--samples", "2000", "--out", str(out),
                  "--json")
    assert result.returncode == 0, result.stderr
    res = json.loads(result.stdout.strip().splitlines()[-1])
    training = res["estimators"]["nk_tanh"]["training"]
    meta = json.loads((shipped / "metadata.json").read_text())
    assert training["path"] == str(shipped.resolve())
    assert training["fit_seconds"] is None and training["samples"] == meta["samples"]
    assert not (out / "models" / "nk_tanh").exists()
    assert f"--model nk_tanh={shipped}" in res["command"]
    # the shipped model servoes (94.5 over 1100 trajectories; an untrained one scores ~0)
    assert res["estimators"]["nk_tanh"]["success"]["total"] > 50.0

    other = installed_dir("models") / "visual_servo" / "nk_tanh"
    wrong = _uvs("benchmark", "--estimators", "nk_tanh", "--model", f"nk_tanh={other}",
                 "--out", str(tmp_path / "wrong"))
    assert wrong.returncode == 2 and "field 'task' mismatch" in wrong.stderr


def test_shares_prior_only_for_the_same_recipe():
    """nk_adapt's prior is the run's nk_tanh model when every training parameter agrees;
    nk_adapt's online parameters may differ."""
    from uvs_bringup.benchmark import shares_prior
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    task = make_task("multi_point", load_robot("gen3"))
    both = ["nk_adapt", "nk_tanh"]
    assert shares_prior(task, both, {})
    assert shares_prior(task, both, {"nk_adapt": {"alpha": 1.0, "method": "rls"}})
    assert shares_prior(task, both, {"nk_tanh": {"lr": 1e-4}, "nk_adapt": {"lr": 1e-4}})
    assert not shares_prior(task, both, {"nk_adapt": {"lr": 1e-4}})
    assert not shares_prior(task, both, {"nk_tanh": {"seed": 1}})
    assert not shares_prior(task, ["nk_adapt", "nj"], {})
    assert not shares_prior(task, ["nk_tanh"], {})


def test_nk_adapt_prior_is_trained_once_and_scores_as_if_trained_itself(tmp_path):
    """With nk_tanh in the run, nk_adapt's prior is not trained a second time: its model
    names ../nk_tanh and holds no weights. Alone, nk_adapt trains its own; both score
    the same trajectories identically (same recipe, same seed, same network)."""
    common = ("benchmark", "--task", "multi_point", "--targets", "5", "--seeds", "2",
              "--samples", "2000", "--epochs", "2", "--json")
    both = _uvs(*common, "--estimators", "nk_tanh,nk_adapt", "--out", str(tmp_path / "both"))
    alone = _uvs(*common, "--estimators", "nk_adapt", "--out", str(tmp_path / "alone"))
    assert both.returncode == 0, both.stderr
    assert alone.returncode == 0, alone.stderr
    assert "trained nk_tanh" in both.stderr and "trained nk_adapt" not in both.stderr
    assert "trained nk_adapt" in alone.stderr
    shared = tmp_path / "both" / "models" / "nk_adapt"
    assert sorted(p.name for p in shared.iterdir()) == ["metadata.json"]
    assert json.loads((shared / "metadata.json").read_text())["prior"] == "../nk_tanh"
    assert (tmp_path / "alone" / "models" / "nk_adapt" / "model.pt").is_file()

    res = {name: json.loads(run.stdout.strip().splitlines()[-1])["estimators"]["nk_adapt"]
           for name, run in (("both", both), ("alone", alone))}
    assert res["both"]["training"]["fit_seconds"] == 0.0
    assert res["alone"]["training"]["fit_seconds"] > 0.0
    for key in ("jacobian_frobenius_mean", "val_loss", "epochs_run", "best_epoch"):
        assert res["both"]["training"][key] == res["alone"]["training"][key], key
    for key in ("params", "success", "frobenius", "final_distance"):
        assert res["both"][key] == res["alone"][key], key
    with np.load(tmp_path / "both" / "steps.npz") as a, \
            np.load(tmp_path / "alone" / "steps.npz") as b:
        np.testing.assert_array_equal(a["nk_adapt/distance"], b["nk_adapt/distance"])
