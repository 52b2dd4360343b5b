"""The jacobian_estimator node over real rclpy and Fast DDS.

Each test brings the node up in its own context on a MultiThreadedExecutor
(so parameter changes really race with requests), calls it through a client
node, and changes parameters through the node's parameter services, the way
``ros2 param set`` does.
"""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from std_srvs.srv import Trigger

from uvs_core.babble import babble
from uvs_core.estimators import load_estimator, make_estimator
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_estimation.estimator_node import JacobianEstimatorNode
from uvs_estimation.jacobian_service import EstimatorSetupError
from uvs_interfaces.srv import EstimateJacobian
from uvs_learning.training import train_model

TIMEOUT = 10.0  # s, every wait below
Q = np.array([0.3, -0.4, 0.5, 1.0, -0.2, 0.6, 0.1])


class Graph:
    """The estimator node spinning on its own executor thread, and a client node."""

    def __init__(self, context, **parameters):
        self.context = context
        overrides = [Parameter(name, value=value) for name, value in parameters.items()]
        self.node = JacobianEstimatorNode(context=context, parameter_overrides=overrides)
        self.server = MultiThreadedExecutor(num_threads=3, context=context)
        self.server.add_node(self.node)
        self.thread = threading.Thread(target=self.server.spin, daemon=True)
        self.thread.start()
        self.client_node = rclpy.create_node("estimator_test_client", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.client_node)
        self.client = self.client_node.create_client(EstimateJacobian, "estimate_jacobian")
        self.reset_client = self.client_node.create_client(Trigger, "jacobian_estimator/reset")
        self.params = AsyncParameterClient(self.client_node, "jacobian_estimator")
        assert self.client.wait_for_service(timeout_sec=TIMEOUT), "estimate_jacobian missing"
        assert self.params.wait_for_services(timeout_sec=TIMEOUT), "parameter services missing"

    def _wait(self, future, what):
        self.executor.spin_until_future_complete(future, timeout_sec=TIMEOUT)
        assert future.done(), f"no answer to {what} within {TIMEOUT} s"
        return future.result()

    def call(self, q, x=()):
        request = EstimateJacobian.Request(joint_positions=list(q), task_position=list(x))
        return self._wait(self.client.call_async(request), "estimate_jacobian")

    def reset(self):
        assert self.reset_client.wait_for_service(timeout_sec=TIMEOUT)
        return self._wait(self.reset_client.call_async(Trigger.Request()), "reset")

    def set(self, **values):
        """Set parameters atomically (one on-set callback); returns the SetParametersResult."""
        params = [Parameter(name.replace("__", "."), value=value)
                  for name, value in values.items()]
        return self._wait(self.params.set_parameters_atomically(params), "set_parameters").result

    def get(self, name):
        return self.node.get_parameter(name).value

    def close(self):
        self.server.shutdown()
        self.thread.join(timeout=TIMEOUT)
        self.executor.shutdown()
        self.client_node.destroy_node()
        self.node.destroy_node()


@pytest.fixture
def graph(ros_context):
    graphs = []

    def start(**parameters):
        graphs.append(Graph(ros_context, **parameters))
        return graphs[-1]

    yield start
    for g in graphs:
        g.close()


@pytest.fixture(scope="module")
def gen3():
    return load_robot("gen3")


@pytest.fixture(scope="module")
def nk_tanh_model(tmp_path_factory, gen3):
    """A tiny Tanh-NK for single_point: 2 epochs on 1,000 babbled samples."""
    task = make_task("single_point", gen3)
    data = babble(task, 1000, horizon=50, seed=7)
    path = tmp_path_factory.mktemp("models") / "nk_tanh"
    train_model("nk_tanh", task, data, path, epochs=2, hidden=16, batch_size=64)
    return path


def _jacobian(response):
    return np.asarray(response.jacobian).reshape(response.rows, response.cols)


# -------------------------------------------------------------------- answers

@pytest.mark.parametrize("task_name", ["single_point", "visual_servo"])
def test_true_jacobian_for_all_or_active_joint_positions(graph, gen3, task_name):
    g = graph(task=task_name)
    task = make_task(task_name, gen3)
    qa = task.select(Q)
    expected = task.jacobian(qa)
    for q in (Q, qa):  # n robot joints (/joint_states order), or the k active ones
        response = g.call(q)
        assert response.success, response.message
        assert response.estimator == "tj"
        assert (response.rows, response.cols) == (task.m, task.k)
        np.testing.assert_allclose(_jacobian(response), expected, rtol=0, atol=1e-12)
        assert response.condition_number == pytest.approx(np.linalg.cond(expected), rel=1e-9)


def test_bad_requests_get_a_reason_and_the_node_keeps_serving(graph):
    g = graph()
    nan = float("nan")
    cases = [
        (Q[:5], (), "joint_positions: expected 7"),
        ([0.0] * 8, (), "got 8"),
        ([], (), "got 0"),
        (np.r_[Q[:6], nan], (), "joint_positions: expected finite"),
        (Q, (0.1, nan, 0.3), "task_position: expected finite"),
        (Q, (0.1, 0.2), "task_position: expected 0 (absent) or 3"),
    ]
    for q, x, words in cases:
        response = g.call(q, x)
        assert not response.success, (q, x)
        assert words in response.message
        assert response.estimator == "tj"
        assert len(response.jacobian) == 0
    response = g.call(Q, (0.1, 0.2, 0.3))
    assert response.success, response.message
    assert len(response.jacobian) == 21


# --------------------------------------------------------------- parameters

def test_parameter_swaps_are_validated(graph, tmp_path):
    g = graph(model_dir=str(tmp_path))
    assert g.get("model_dir") == str(tmp_path)

    result = g.set(estimator="kalman")
    assert not result.successful
    assert "unknown estimator 'kalman'" in result.reason and "nk_tanh" in result.reason
    assert g.get("estimator") == "tj" and g.call(Q).estimator == "tj"

    result = g.set(estimator="nj")  # no model under model_dir
    assert not result.successful
    assert str(tmp_path / "single_point" / "nj") in result.reason
    result = g.set(models__nk_relu=str(tmp_path / "missing"))
    assert not result.successful and "missing" in result.reason
    assert g.get("models.nk_relu") == ""
    result = g.set(task="multi_point")
    assert not result.successful and "read-only" in result.reason
    assert g.get("estimator") == "tj" and g.call(Q).estimator == "tj"

    result = g.set(estimator="broyden")
    assert result.successful, result.reason
    assert g.get("estimator") == "broyden"
    j0 = _jacobian(g.call(Q))
    assert g.call(Q).estimator == "broyden"
    # Online: a request with task_position updates Broyden; ~/reset restores J0.
    task = g.node.task
    for q in (Q, Q + 0.01):
        moved = g.call(q, task.x(q))
    assert moved.success and not np.allclose(_jacobian(moved), j0)
    reset = g.reset()
    assert reset.success and "broyden" in reset.message
    np.testing.assert_array_equal(_jacobian(g.call(Q)), j0)


def test_broyden_alpha_by_task_and_set_while_broyden_serves(graph):
    """broyden.alpha 0 (the default) is 1 where x is kinematics and 0.2 for the tracked
    marker of visual_servo; a new value rebuilds the serving Broyden from its first J
    and weighs the next secant update by it, over the service."""
    g = graph(estimator="broyden")
    assert g.node._service.estimator.params["alpha"] == 1.0
    assert g.node._service.estimator.params["min_motion"] == 1e-6
    j0 = _jacobian(g.call(Q))

    result = g.set(broyden__alpha=0.5)
    assert result.successful, result.reason
    assert g.node._service.estimator.params["alpha"] == 0.5
    task = g.node.task
    q1 = Q + np.array([0.02, -0.01, 0.0, 0.03, 0.0, 0.01, 0.0])
    g.call(Q, task.x(Q))
    j1 = _jacobian(g.call(q1, task.x(q1)))
    dq, dx = q1 - Q, task.x(q1) - task.x(Q)
    np.testing.assert_allclose(j1, j0 + 0.5 * np.outer(dx - j0 @ dq, dq) / dq.dot(dq),
                               rtol=1e-9, atol=1e-12)

    for bad in (3.0, -0.1):
        result = g.set(broyden__alpha=bad)
        assert not result.successful and g.get("broyden.alpha") == 0.5
    result = g.set(broyden__min_motion=0.5)      # a step shorter than 0.5 rad: no update
    assert result.successful, result.reason
    g.call(Q, task.x(Q))
    np.testing.assert_array_equal(_jacobian(g.call(q1, task.x(q1))), j0)

    visual = graph(estimator="broyden", task="visual_servo")
    assert visual.node._service.estimator.params["alpha"] == 0.2


def test_swap_while_a_client_calls_continuously(graph, ros_context):
    g = graph()
    answers = []  # (sent, estimator, success), in call order
    stop = threading.Event()
    failures = []

    def caller():
        node = rclpy.create_node("estimator_test_caller", context=ros_context)
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        client = node.create_client(EstimateJacobian, "estimate_jacobian")
        try:
            if not client.wait_for_service(timeout_sec=TIMEOUT):
                failures.append("service missing")
                return
            request = EstimateJacobian.Request(joint_positions=Q.tolist())
            while not stop.is_set():
                sent = time.monotonic()
                future = client.call_async(request)
                executor.spin_until_future_complete(future, timeout_sec=TIMEOUT)
                if not future.done():
                    failures.append(f"no answer within {TIMEOUT} s")
                    return
                answers.append((sent, future.result().estimator, future.result().success))
        finally:
            executor.shutdown()
            node.destroy_node()

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        deadline = time.monotonic() + 2 * TIMEOUT
        while len(answers) < 200 and not failures and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(answers) >= 200, f"only {len(answers)} answers before the swap"
        result = g.set(estimator="broyden")
        swapped = time.monotonic()
        assert result.successful, result.reason
        count = len(answers)
        while len(answers) < count + 200 and not failures and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        stop.set()
        thread.join(timeout=TIMEOUT)
    assert not failures
    assert len(answers) >= count + 200
    assert all(ok for _, _, ok in answers)
    names = [name for _, name, _ in answers]
    assert set(names) == {"tj", "broyden"}
    first = names.index("broyden")
    assert set(names[:first]) == {"tj"} and set(names[first:]) == {"broyden"}
    assert all(name == "broyden" for sent, name, _ in answers if sent > swapped)


def test_a_learned_model_selected_by_parameter(graph, nk_tanh_model, tmp_path, gen3):
    g = graph(model_dir=str(tmp_path))
    result = g.set(models__nk_tanh=str(nk_tanh_model), estimator="nk_tanh")
    assert result.successful, result.reason
    response = g.call(Q)
    assert response.success and response.estimator == "nk_tanh"
    task = make_task("single_point", gen3)
    expected = load_estimator(nk_tanh_model, task, name="nk_tanh").estimate(Q)
    np.testing.assert_allclose(_jacobian(response), expected, rtol=0, atol=1e-12)
    assert not np.allclose(expected, task.jacobian(Q))  # not secretly the true J

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in nk_tanh_model.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes())
    (corrupt / "model.pt").write_bytes(b"\x00garbage" * 64)
    result = g.set(models__nk_tanh=str(corrupt))
    assert not result.successful
    assert "model.pt" in result.reason and "corrupt" in result.reason
    assert g.get("models.nk_tanh") == str(nk_tanh_model)
    response = g.call(Q)
    assert response.estimator == "nk_tanh"
    np.testing.assert_allclose(_jacobian(response), expected, rtol=0, atol=1e-12)

    # A model for another task (visual_servo, k=2) is rejected as mismatched.
    other = make_task("visual_servo", gen3)
    data = babble(other, 200, horizon=50, seed=1)
    llknn = make_estimator("llknn", other, neighbors=8)
    llknn.fit(other.select(data.q), data.x, data.traj)
    llknn.save(tmp_path / "vs_llknn")
    result = g.set(models__llknn=str(tmp_path / "vs_llknn"), estimator="llknn")
    assert not result.successful and "mismatch" in result.reason
    assert g.get("estimator") == "nk_tanh" and g.get("models.llknn") == ""


def test_one_at_a_time_a_refused_model_then_its_estimator_serves_the_model_asked_for(
        graph, nk_tanh_model, tmp_path, gen3):
    """Issue 12: `models.nk_tanh` refused, then `estimator nk_tanh` served the default."""
    import shutil
    g = graph()                                   # the shipped models as default
    later = tmp_path / "later"                    # e.g. a training run not finished yet
    result = g.set(models__nk_tanh=str(later))
    assert not result.successful and str(later) in result.reason
    shutil.copytree(nk_tanh_model, later)
    result = g.set(estimator="nk_tanh")
    assert result.successful, result.reason
    task = make_task("single_point", gen3)
    expected = load_estimator(later, task, name="nk_tanh").estimate(Q)
    default = load_estimator(g.node._models.model_dir / "single_point" / "nk_tanh", task,
                             name="nk_tanh").estimate(Q)
    assert not np.allclose(expected, default)
    np.testing.assert_allclose(_jacobian(g.call(Q)), expected, rtol=0, atol=1e-12)
    deadline = time.monotonic() + TIMEOUT
    while g.get("models.nk_tanh") != str(later) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert g.get("models.nk_tanh") == str(later)

    # Asked for a model that still fails: refused with the reason, nothing else served.
    assert g.set(estimator="tj").successful
    assert not g.set(models__nk_tanh=str(tmp_path / "never")).successful
    result = g.set(estimator="nk_tanh")
    assert not result.successful
    assert "asked for before and refused" in result.reason and "never" in result.reason
    assert g.get("estimator") == "tj" and g.call(Q).estimator == "tj"
    # Both in one call (ros2 param load, set_parameters_atomically): applied together.
    result = g.set(models__nk_tanh=str(later), estimator="nk_tanh")
    assert result.successful, result.reason
    np.testing.assert_allclose(_jacobian(g.call(Q)), expected, rtol=0, atol=1e-12)


def test_start_with_a_learned_estimator_or_fail_with_the_reason(ros_context, nk_tanh_model,
                                                                tmp_path):
    node = JacobianEstimatorNode(context=ros_context, parameter_overrides=[
        Parameter("estimator", value="nk_tanh"),
        Parameter("models.nk_tanh", value=str(nk_tanh_model)),
    ])
    try:
        assert node.estimator_name == "nk_tanh"
    finally:
        node.destroy_node()
    with pytest.raises(EstimatorSetupError, match="needs a trained model"):
        JacobianEstimatorNode(context=ros_context, parameter_overrides=[
            Parameter("estimator", value="binj"), Parameter("model_dir", value=str(tmp_path)),
        ])


def test_the_shipped_parameter_file_configures_the_node(ros_context):
    from rclpy.parameter import parameter_dict_from_yaml_file

    path = Path(__file__).resolve().parents[1] / "config" / "jacobian_estimator.yaml"
    messages = parameter_dict_from_yaml_file(str(path), target_nodes=["/jacobian_estimator"])
    overrides = [Parameter.from_parameter_msg(msg) for msg in messages.values()]
    node = JacobianEstimatorNode(context=ros_context, parameter_overrides=overrides)
    try:
        declared = set(node._parameters)
        assert set(messages) <= declared, set(messages) - declared
        assert {f"models.{n}" for n in ("llknn", "nj", "binj", "nk_tanh", "nk_relu")} <= declared
        assert node.estimator_name == node.get_parameter("estimator").value == "tj"
        assert node.task.name == "single_point"
    finally:
        node.destroy_node()


# ---------------------------------------------------------------- executable

def _executable():
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix("uvs_estimation")) / "lib/uvs_estimation/jacobian_estimator"
    assert path.is_file(), f"{path} not installed (setup.cfg install_scripts)"
    return str(path)


def test_installed_executable_serves_another_process(ros_context):
    node_name = f"jacobian_estimator_{os.getpid()}"
    proc = subprocess.Popen(
        [_executable(), "--ros-args", "-r", f"__node:={node_name}",
         "-r", f"estimate_jacobian:={node_name}/estimate", "-p", "estimator:=broyden"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client_node = rclpy.create_node("estimator_test_remote_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(client_node)
    try:
        client = client_node.create_client(EstimateJacobian, f"{node_name}/estimate")
        # On a fresh machine the node first makes Broyden's first J (babbling, seconds).
        assert client.wait_for_service(timeout_sec=60.0), "service never appeared"
        future = client.call_async(EstimateJacobian.Request(joint_positions=Q.tolist()))
        executor.spin_until_future_complete(future, timeout_sec=TIMEOUT)
        assert future.done(), "no answer"
        assert future.result().success and future.result().estimator == "broyden"
        # Its first J: the local linear fit of the babbling near the start pose.
        task = make_task("single_point", load_robot("gen3"))
        j_start = task.jacobian(task.home_active)
        error = np.linalg.norm(_jacobian(future.result()) - j_start) / np.linalg.norm(j_start)
        assert error < 0.1, error
    finally:
        executor.shutdown()
        client_node.destroy_node()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C and ros2 launch send
        try:
            output, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate(timeout=TIMEOUT)
            pytest.fail(f"jacobian_estimator ignored SIGINT for {TIMEOUT} s:\n{output}")
    assert proc.returncode == 0, output


@pytest.mark.parametrize(("value", "words"), [
    ("kalman", "unknown estimator 'kalman'"),
    ("5", "expecting type 'STRING'"),
])
def test_installed_executable_refuses_a_bad_estimator(value, words):
    result = subprocess.run([_executable(), "--ros-args", "-p", f"estimator:={value}"],
                            capture_output=True, text=True, timeout=3 * TIMEOUT)
    assert result.returncode == 1
    assert words in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
