"""Estimator plug-ins (entry point group uvs.estimators): a third-party package installed
by pip is trained, benchmarked and swapped into the running node like uvs's own; the
registry is the one list of names; the node serving tj never imports torch.

The third-party package is docs/plugin_example (what docs/plugins.md shows), installed
with ``pip install --target`` into a temporary directory that only the subprocesses see
(PYTHONPATH), so the venv stays clean.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from uvs_core.estimators import Estimator, estimator_class, estimator_names, estimator_specs
from uvs_interfaces.srv import EstimateJacobian

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "plugin_example"
TIMEOUT = 10.0  # s, every wait on the node
Q = np.array([0.3, -0.4, 0.5, 1.0, -0.2, 0.6, 0.1])
UVS_OWN = ("tj", "broyden", "llknn", "nj", "binj", "nk_relu", "nk_tanh", "nk_adapt")


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """Environment of subprocesses that see the example plug-in (pip --target)."""
    root = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, root / "src")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-deps", "--no-build-isolation", "--target", str(root / "site"),
                    str(root / "src")], check=True, capture_output=True, timeout=300)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "site"),
                                                      env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "babble"
    result = subprocess.run(["uvs", "collect", "--task", "single_point", "--samples", "3000",
                             "--seed", "1", "--out", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return path


def _python(code: str, env=None, timeout=120):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)


# -------------------------------------------------------------- the registry
def test_uvs_own_estimators_are_entry_points_whose_specs_match_their_classes():
    from importlib.metadata import entry_points

    entries = {e.name: e for e in entry_points(group="uvs.estimators")}
    assert set(UVS_OWN) <= set(entries)
    assert {entries[n].dist.name for n in UVS_OWN} == {"uvs_core", "uvs_learning"}
    specs = estimator_specs()
    for name in UVS_OWN:
        spec, cls = specs[name], estimator_class(name)
        assert cls.name == name
        assert spec.learned == cls.learned, name
        # the declared capabilities are what the class does (here, in a test, the
        # class may be inspected: uvs itself reads only the spec)
        assert spec.online == (cls.update is not Estimator.update), name
        assert spec.batched_update == callable(getattr(cls, "batch_view", None)), name
        assert spec.model_files == ((cls.WEIGHTS_FILE,) if cls.WEIGHTS_FILE else ()), name
    assert [n for n in estimator_names() if n in UVS_OWN] == list(UVS_OWN)


def test_the_parameter_file_lists_every_learned_estimator():
    config = yaml.safe_load((ROOT / "config" / "jacobian_estimator.yaml").read_text())
    models = config["jacobian_estimator"]["ros__parameters"]["models"]
    learned = {name for name, spec in estimator_specs().items() if spec.learned}
    assert set(models) == learned


def test_the_plugin_is_listed_without_importing_it_or_torch(plugin_env):
    result = _python("""
        import sys
        from uvs_core.estimators import estimator_names, estimator_spec
        from uvs_bringup.graph import estimator_choices
        spec = estimator_spec("linear_ls")
        assert estimator_names()[-1] == "linear_ls" and "linear_ls" in estimator_choices()
        assert (spec.learned, spec.online, spec.model_files) == (True, False, ("linear.npz",))
        assert "uvs_plugin_example.linear" not in sys.modules
        assert "torch" not in sys.modules
        print("ok")
    """, env=plugin_env)
    assert result.stdout.strip() == "ok", result.stderr


def test_cli_help_and_choices_come_from_the_registry(plugin_env):
    train = subprocess.run(["uvs", "train", "--help"], env=plugin_env, capture_output=True,
                           text=True, timeout=60)
    bench = subprocess.run(["uvs", "benchmark", "--help"], env=plugin_env, capture_output=True,
                           text=True, timeout=60)
    launch = subprocess.run(["ros2", "launch", "uvs_bringup", "servo.launch.py", "--show-args"],
                            env=plugin_env, capture_output=True, text=True, timeout=60)
    for result in (train, bench, launch):
        assert result.returncode == 0, result.stderr
        assert "linear_ls" in result.stdout and "nk_adapt" in result.stdout
    refused = subprocess.run(["uvs", "train", "--estimator", "kalman", "--data", "x",
                              "--out", "y"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "nk_adapt" in refused.stderr


# ------------------------------------------------ the plug-in, end to end
@pytest.fixture(scope="module")
def trained(bag, plugin_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "linear_ls"
    result = subprocess.run(["uvs", "train", "--estimator", "linear_ls", "--data", str(bag),
                             "--out", str(out), "--json"],
                            env=plugin_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def test_uvs_train_writes_the_plugins_model(trained):
    out, report = trained
    assert report["estimator"] == "linear_ls" and report["weights"] == "linear.npz"
    assert sorted(p.name for p in out.iterdir()) == ["linear.npz", "metadata.json"]
    # One J for the whole workspace: far from J* (about 0.9 m/rad measured), but finite
    assert 0.2 < report["jacobian_frobenius_mean"] < 2.0
    assert np.load(out / "linear.npz")["J"].shape == (3, 7)


def test_uvs_benchmark_quick_runs_the_plugin(bag, plugin_env, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(["uvs", "benchmark", "--task", "single_point", "--quick",
                             "--estimators", "tj,linear_ls", "--data", str(bag),
                             "--targets", "5", "--seeds", "1", "--out", str(out)],
                            env=plugin_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert set(results["estimators"]) == {"tj", "linear_ls"}
    assert (out / "models" / "linear_ls" / "linear.npz").is_file()
    assert "linear_ls" in (out / "report.md").read_text()


def _executable():
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix("uvs_estimation")) / "lib/uvs_estimation/jacobian_estimator")


def _wait(executor, future, what):
    executor.spin_until_future_complete(future, timeout_sec=TIMEOUT)
    assert future.done(), f"no answer to {what} within {TIMEOUT} s"
    return future.result()


def test_a_live_parameter_swap_to_the_plugin(ros_context, plugin_env, trained):
    """As `ros2 param set` does, one parameter at a time: models.linear_ls (declared
    because the node's registry has the plug-in), then estimator."""
    model, _ = trained
    node_name = f"jacobian_estimator_plugin_{os.getpid()}"
    proc = subprocess.Popen(
        [_executable(), "--ros-args", "-r", f"__node:={node_name}",
         "-r", f"estimate_jacobian:={node_name}/estimate", "-p", "estimator:=tj"],
        env=plugin_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client_node = rclpy.create_node("plugin_test_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(client_node)
    try:
        client = client_node.create_client(EstimateJacobian, f"{node_name}/estimate")
        params = AsyncParameterClient(client_node, node_name)
        assert client.wait_for_service(timeout_sec=60.0), "service never appeared"
        assert params.wait_for_services(timeout_sec=TIMEOUT), "parameter services missing"
        for name, value in (("models.linear_ls", str(model)), ("estimator", "linear_ls")):
            results = _wait(executor, params.set_parameters([Parameter(name, value=value)]),
                            f"set {name}").results
            assert results[0].successful, results[0].reason
        request = EstimateJacobian.Request(joint_positions=Q.tolist())
        answer = _wait(executor, client.call_async(request), "estimate_jacobian")
        assert answer.success and answer.estimator == "linear_ls", answer.message
        jacobian = np.asarray(answer.jacobian).reshape(3, 7)
        np.testing.assert_allclose(jacobian, np.load(model / "linear.npz")["J"], rtol=1e-12)
    finally:
        executor.shutdown()
        client_node.destroy_node()
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, output


# ----------------------------------------------------------- torch, lazily
def test_the_node_serving_tj_never_imports_torch_until_a_network_is_selected():
    result = _python("""
        import os, random, sys
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(100, 199))
        import rclpy
        from rclpy.parameter import Parameter
        from uvs_estimation.estimator_node import JacobianEstimatorNode
        rclpy.init()
        node = JacobianEstimatorNode(parameter_overrides=[Parameter("estimator", value="tj")])
        declared = sorted(p for p in node._parameters if p.startswith("models."))
        print("tj", "torch" in sys.modules, ",".join(declared))
        result = node.set_parameters([Parameter("estimator", value="nk_tanh")])[0]
        print("nk_tanh", result.successful, "torch" in sys.modules, node.estimator_name)
        node.destroy_node()
        rclpy.shutdown()
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    learned = sorted(f"models.{n}" for n, s in estimator_specs().items() if s.learned)
    assert lines[:3] == ["tj", "False", ",".join(learned)]
    assert lines[3:] == ["nk_tanh", "True", "True", "nk_tanh"]


# ------------------------------------------------------------------- docs
def test_docs_show_the_tested_package():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    for path in sorted(EXAMPLE.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml") and path.name != "__init__.py":
            assert path.read_text().strip() in doc, f"docs/plugins.md lacks {path.name}"
