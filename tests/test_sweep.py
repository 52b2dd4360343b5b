"""`uvs sweep` and `--executor ray`: the grid grammar, Ray as an optional extra, the same
numbers from Ray as from the local pool, and a small sweep on a local Ray instance."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from uvs_bringup.sweep import SweepSpec, load_spec_file, parse_grid, parse_seeds, points

HAVE_RAY = importlib.util.find_spec("ray") is not None
if not HAVE_RAY and os.environ.get("UVS_REQUIRE_RAY") == "1":
    # CI installs the extra (`make test` -> make setup-ray): a skip would hide a break.
    raise RuntimeError("UVS_REQUIRE_RAY=1 but Ray is missing: pip install -r "
                       "requirements-ray.txt")
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray (optional extra) is not installed: "
                               "pip install -r requirements-ray.txt")
ROOT = Path(__file__).resolve().parents[1]


def _uvs(*args, timeout=300):
    return subprocess.run(["uvs", *args], capture_output=True, text=True, timeout=timeout)


def _numbers(results: dict) -> dict:
    """results.json's estimators without wall times and absolute paths."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if "seconds" not in k and k not in ("path", "created")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(results["estimators"])


# ------------------------------------------------------------------ grammar
def test_grid_and_seed_grammar():
    assert parse_grid(["lr=1e-3,3e-3", "nk_tanh.hidden=50,100", "activation=tanh,relu"]) == {
        "lr": [0.001, 0.003], "nk_tanh.hidden": [50, 100], "activation": ["tanh", "relu"]}
    assert parse_seeds("0,1") == (0, 1) and parse_seeds("2-4") == (2, 3, 4)
    for bad in (["lr"], ["lr="], ["lr=1,1"], ["lr=1", "lr=2"]):
        with pytest.raises(ValueError):
            parse_grid(bad)
    for bad in ("", "a", "1,1", "-1"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_points_are_the_product_and_keys_are_scoped(tmp_path):
    spec = SweepSpec(task="single_point", out=tmp_path, estimators=("nj", "nk_tanh", "tj"),
                     grid={"lr": [1e-3, 3e-3], "nk_tanh.secant_weight": [0, 30]},
                     seeds=(0, 1), robots=("gen3", "ur5e"))
    pts = points(spec)
    # per robot: nj 2 lr x 2 seeds, nk_tanh 2 lr x 2 weights x 2 seeds, tj 2 seeds
    assert len(pts) == 2 * (4 + 8 + 2)
    assert [p.index for p in pts] == list(range(len(pts)))
    assert len({p.id for p in pts}) == len(pts)
    nj = [p for p in pts if p.estimator == "nj"]
    assert {dict(p.params).keys() == {"lr"} for p in nj} == {True}
    assert pts[0].id == "gen3_nj_lr=0.001_seed0"
    tj = [p for p in pts if p.estimator == "tj"]
    assert [(p.robot, p.params, p.seed) for p in tj] == [
        ("gen3", (), 0), ("gen3", (), 1), ("ur5e", (), 0), ("ur5e", (), 1)]
    with pytest.raises(ValueError, match="no estimator"):
        points(SweepSpec(task="single_point", out=tmp_path, estimators=("tj", "broyden"),
                         grid={"lr": [1e-3]}))
    with pytest.raises(ValueError, match="has no parameter"):
        points(SweepSpec(task="single_point", out=tmp_path, estimators=("nj",),
                         grid={"nj.nope": [1]}))
    with pytest.raises(ValueError, match="not among"):
        points(SweepSpec(task="single_point", out=tmp_path, estimators=("nj",),
                         grid={"nk_tanh.lr": [1]}))


def test_yaml_spec(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("task: single_point\nestimators: [nk_tanh]\nrobots: gen3,ur5e\n"
                    "seeds: 0-2\nquick: true\ngrid:\n  lr: [0.001, 0.003]\n")
    assert load_spec_file(path) == {"task": "single_point", "estimators": ("nk_tanh",),
                                    "robots": ("gen3", "ur5e"), "seeds": (0, 1, 2),
                                    "quick": True, "grid": {"lr": [0.001, 0.003]}}
    path.write_text("estimators: [nk_tanh]\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_spec_file(path)


# ------------------------------------------------------------- Ray, optional
def test_core_never_imports_ray_and_bringup_only_on_demand():
    for path in (ROOT / "src" / "uvs_core").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import ray" not in text and "from ray" not in text, path
    probe = ("import sys, uvs_core.evaluation, uvs_bringup.benchmark, uvs_bringup.sweep, "
             "uvs_bringup.executors, uvs_bringup.cli; uvs_bringup.cli.build_parser(); "
             "print('ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_missing_ray_is_a_one_line_error(tmp_path):
    # Ray made unimportable the way Python does for a blocked module (sys.modules entry None).
    for verb in (["benchmark", "--quick", "--estimators", "tj"],
                 ["sweep", "--quick", "--estimators", "tj"]):
        code = ("import sys; sys.modules['ray'] = None; from uvs_bringup.cli import main; "
                f"sys.exit(main({verb + ['--executor', 'ray', '--out', str(tmp_path / 'o')]!r}))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "uvs: error: --executor ray needs Ray, which is not installed: "
            "pip install -r requirements-ray.txt"]
        assert not (tmp_path / "o").exists()
    no_ray = _uvs("sweep", "--estimators", "tj", "--address", "auto", "--out",
                  str(tmp_path / "a"))
    assert no_ray.returncode == 2 and "--address needs --executor ray" in no_ray.stderr


@needs_ray
def test_benchmark_on_ray_gives_the_local_pool_numbers(tmp_path):
    common = ["--quick", "--estimators", "tj,broyden", "--workers", "2", "--json"]
    local = _uvs("benchmark", *common, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    ray = _uvs("benchmark", *common, "--executor", "ray", "--out", str(tmp_path / "ray"))
    assert ray.returncode == 0, ray.stderr
    a = json.loads(local.stdout.strip().splitlines()[-1])
    b = json.loads(ray.stdout.strip().splitlines()[-1])
    assert b["arguments"]["executor"] == "ray" and a["arguments"]["executor"] == "local"
    assert _numbers(a) == _numbers(b)
    assert (a["protocol"], a["data"]["samples"]) == (b["protocol"], b["data"]["samples"])
    assert a["estimators"]["tj"]["success"]["total"] > 80
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local").iterdir())
    assert "on Ray (a local instance)" in (tmp_path / "ray" / "report.md").read_text()


@needs_ray
def test_small_sweep_on_a_local_ray_instance(tmp_path):
    out = tmp_path / "sweep"
    result = _uvs("sweep", "--task", "single_point", "--estimators", "broyden",
                  "--grid", "alpha=0.5,1.0", "--seeds", "0", "--robots", "gen3,ur5e",
                  "--quick", "--targets", "10", "--target-seeds", "1", "--executor", "ray",
                  "--workers", "2", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    res = json.loads(result.stdout.strip().splitlines()[-1])
    assert res == json.loads((out / "sweep.json").read_text())
    assert res["schema"] == "uvs-sweep/1" and res["spec"]["executor"] == "ray"
    assert [p["id"] for p in res["points"]] == [
        "gen3_broyden_alpha=0.5_seed0", "gen3_broyden_alpha=1.0_seed0",
        "ur5e_broyden_alpha=0.5_seed0", "ur5e_broyden_alpha=1.0_seed0"]
    for p in res["points"]:
        point = json.loads((out / p["dir"] / "results.json").read_text())
        assert point["estimators"]["broyden"]["params"]["alpha"] == p["params"]["alpha"]
        assert point["estimators"]["broyden"]["success"]["total"] == p["success"]
        assert point["protocol"]["targets"] == 10 and p["trajectories"] == 10
        assert 0 < p["success"] <= 100
    assert (out / "fig_sweep.png").stat().st_size > 0
    table = (out / "sweep.md").read_text()
    assert "| gen3 | broyden | alpha=0.5 |" in table and "| ur5e | broyden | alpha=1.0 |" in table
    assert "sweep:" in result.stderr and "4/4" in result.stderr.replace(".00", "")  # bar


def test_sweep_in_local_processes_seeds_change_data_not_targets(tmp_path):
    out = tmp_path / "local"
    result = _uvs("sweep", "--estimators", "tj,broyden", "--grid", "alpha=0.5", "--seeds",
                  "0,1", "--quick", "--targets", "5", "--target-seeds", "1", "--workers", "2",
                  "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    res = json.loads(result.stdout.strip().splitlines()[-1])
    assert res["spec"]["executor"] == "local"
    by_id = {p["id"]: p for p in res["points"]}
    assert list(by_id) == ["gen3_tj_seed0", "gen3_tj_seed1", "gen3_broyden_alpha=0.5_seed0",
                           "gen3_broyden_alpha=0.5_seed1"]
    # tj is not trained: same targets, same success whatever the data seed
    assert by_id["gen3_tj_seed0"]["success"] == by_id["gen3_tj_seed1"]["success"]
    data = [json.loads((out / by_id[f"gen3_broyden_alpha=0.5_seed{s}"]["dir"] /
                        "results.json").read_text())["data"] for s in (0, 1)]
    assert (data[0]["seed"], data[1]["seed"]) == (0, 1)
    assert by_id["gen3_broyden_alpha=0.5_seed0"]["jacobian_frobenius_mean"] != \
        by_id["gen3_broyden_alpha=0.5_seed1"]["jacobian_frobenius_mean"]
    again = _uvs("sweep", "--estimators", "tj", "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
