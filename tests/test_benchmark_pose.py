"""`uvs benchmark --task pose --quick`: every estimator on the 6 x 7 pose task, success
over position AND angle thresholds."""

import json
import subprocess

import pytest

ESTIMATORS = ("tj", "broyden", "llknn", "nj", "binj", "nk_relu", "nk_tanh")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "pose"
    result = subprocess.run(
        ["uvs", "benchmark", "--task", "pose", "--estimators", ",".join(ESTIMATORS),
         "--quick", "--workers", "2", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def test_pose_quick_benchmark_scores_every_estimator(quick):
    out, res = quick
    assert res["task"] == "pose" and res["units"] == "m"
    p = res["protocol"]
    assert (p["distance"], p["alt_distance"]) == ("pose", "position")
    assert (p["targets"], p["seeds"], p["thresholds"]["count"]) == (20, 2, 100)
    assert set(res["estimators"]) == set(ESTIMATORS)
    for name, s in res["estimators"].items():
        assert s["trajectories"] == 40
        assert 0.0 <= s["success"]["total"] <= 100.0, name
        # position AND angle within t is stricter than the position within t
        assert s["success"]["total"] <= s["success_alt"]["total"] + 1e-9, name
        assert s["frobenius"]["mean"] is not None
    tj = res["estimators"]["tj"]
    # The true J: 6 x 7, nothing to learn; the log-map error servos most targets onto
    # both thresholds (88 % measured; joints masked before limits stop the rest).
    assert tj["success"]["total"] > 75.0
    assert tj["frobenius"]["mean"] == 0.0
    assert tj["success"]["total"] > max(s["success"]["total"]
                                        for n, s in res["estimators"].items() if n != "tj")
    report = (out / "report.md").read_text()
    assert "angle < 10 t rad" in report and "position error |p* - p| alone" in report
