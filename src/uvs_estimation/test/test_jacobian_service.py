"""The estimator service's logic without ROS: request validation, estimator building, swaps."""

import json
import threading
import time

import numpy as np
import pytest

from uvs_core.babble import babble
from uvs_core.estimators import make_estimator
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_estimation.jacobian_service import (
    EstimatorSetupError,
    JacobianService,
    ModelConfig,
    RequestError,
    build_estimator,
    parse_request,
)


@pytest.fixture(scope="module")
def gen3():
    return load_robot("gen3")


@pytest.fixture(scope="module")
def single_point(gen3):
    return make_task("single_point", gen3)


@pytest.fixture(scope="module")
def visual_servo(gen3):
    return make_task("visual_servo", gen3)


@pytest.fixture(scope="module")
def llknn_model(tmp_path_factory, single_point):
    """An LL-KNN model directory for single_point (no torch needed)."""
    data = babble(single_point, 600, horizon=50, seed=3)
    est = make_estimator("llknn", single_point, neighbors=32)
    est.fit(single_point.select(data.q), data.x, data.traj)
    return est.save(tmp_path_factory.mktemp("models") / "llknn")


# ------------------------------------------------------------------ requests

def test_parse_request_accepts_all_joints_or_the_active_ones(visual_servo):
    q = np.linspace(-0.5, 0.5, 7)
    qa, x = parse_request(visual_servo, q, [])
    np.testing.assert_array_equal(qa, q[visual_servo.active])
    assert x is None
    qa2, x2 = parse_request(visual_servo, q[visual_servo.active], [320.0, 240.0])
    np.testing.assert_array_equal(qa2, qa)
    np.testing.assert_array_equal(x2, [320.0, 240.0])


@pytest.mark.parametrize(
    ("q", "x", "words"),
    [
        ([0.0] * 5, [], ["joint_positions", "expected 7", "or 2", "got 5"]),
        ([], [], ["joint_positions", "got 0"]),
        ([0.0, float("nan")], [], ["joint_positions", "finite", "[1]"]),
        ([0.0] * 7, [1.0, 2.0, 3.0], ["task_position", "0 (absent) or 2", "got 3"]),
        ([0.0, 0.0], [1.0, float("inf")], ["task_position", "finite", "[1]"]),
    ],
)
def test_parse_request_says_what_was_expected(visual_servo, q, x, words):
    with pytest.raises(RequestError) as info:
        parse_request(visual_servo, q, x)
    for word in words:
        assert word in str(info.value)


def test_parse_request_takes_rclpys_arrays_like_lists(visual_servo):
    """rclpy hands float64[] fields over as array('d'): same answers, same errors."""
    import array

    q = np.linspace(-0.5, 0.5, 7)
    for joints in (array.array("d", q), q.tolist(), q):
        qa, x = parse_request(visual_servo, joints, array.array("d", [320.0, 240.0]))
        assert qa.dtype == np.float64 and x.dtype == np.float64
        np.testing.assert_array_equal(qa, q[visual_servo.active])
        np.testing.assert_array_equal(x, [320.0, 240.0])
        assert parse_request(visual_servo, joints, array.array("d"))[1] is None
    # New arrays: the request's buffers are not shared.
    joints = array.array("d", q[visual_servo.active])
    qa, _ = parse_request(visual_servo, joints, [])
    joints[0] = 9.0
    assert qa[0] == q[visual_servo.active][0]
    with pytest.raises(RequestError, match=r"non-finite at index \[0, 2\]"):
        parse_request(visual_servo, array.array("d", [np.inf, 0.0, np.nan] + [0.0] * 4), [])
    with pytest.raises(RequestError, match=r"task_position.*non-finite at index \[1\]"):
        parse_request(visual_servo, q, array.array("d", [1.0, np.nan]))
    with pytest.raises(RequestError, match="got 14"):
        parse_request(visual_servo, np.zeros((2, 7)), [])
    with pytest.raises(RequestError, match="task_position.*got 4"):
        parse_request(visual_servo, q, np.zeros((2, 2)))


# ---------------------------------------------------------------- estimators

def test_model_path_defaults_to_model_dir_task_name(tmp_path):
    config = ModelConfig(model_dir=tmp_path, models={"nj": "", "binj": "/elsewhere/binj"})
    assert config.model_path("nj", "single_point") == tmp_path / "single_point" / "nj"
    assert str(config.model_path("binj", "single_point")) == "/elsewhere/binj"
    moved = config.with_changes(model_dir=tmp_path / "x", models={"nj": "/a/nj"})
    assert str(moved.model_path("nj", "multi_point")) == "/a/nj"
    assert moved.model_path("binj", "t") == config.model_path("binj", "t")
    assert config.models["nj"] == ""  # the original is unchanged


def test_build_estimator_direct_and_from_a_model(single_point, llknn_model, tmp_path):
    est, path = build_estimator("tj", single_point, ModelConfig(model_dir=tmp_path))
    assert est.name == "tj" and path is None
    config = ModelConfig(model_dir=tmp_path, models={"llknn": str(llknn_model)})
    est, path = build_estimator("llknn", single_point, config)
    assert est.name == "llknn" and path == llknn_model
    assert est.estimate(np.zeros(7)).shape == (3, 7)


def test_build_estimator_rejects_with_a_reason(single_point, visual_servo, llknn_model,
                                               tmp_path):
    config = ModelConfig(model_dir=tmp_path, models={"llknn": str(llknn_model)})
    with pytest.raises(EstimatorSetupError, match="unknown estimator 'nope'"):
        build_estimator("nope", single_point, config)
    with pytest.raises(EstimatorSetupError, match="needs a trained model.*models.nj"):
        build_estimator("nj", single_point, config)
    # A model made for another task: field mismatch named.
    with pytest.raises(EstimatorSetupError, match="mismatch"):
        build_estimator("llknn", visual_servo, config)
    # A corrupt weights file and a corrupt metadata file.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text((llknn_model / "metadata.json").read_text())
    (broken / "data.npz").write_bytes(b"not a zip file")
    with pytest.raises(EstimatorSetupError, match="data.npz"):
        build_estimator("llknn", single_point, ModelConfig(tmp_path, {"llknn": str(broken)}))
    (broken / "metadata.json").write_text("{ not json")
    with pytest.raises(EstimatorSetupError, match="corrupt JSON"):
        build_estimator("llknn", single_point, ModelConfig(tmp_path, {"llknn": str(broken)}))
    # A model of another estimator under this one's name.
    meta = json.loads((llknn_model / "metadata.json").read_text())
    meta["estimator"] = "broyden"
    (broken / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(EstimatorSetupError, match="estimator"):
        build_estimator("llknn", single_point, ModelConfig(tmp_path, {"llknn": str(broken)}))


# ------------------------------------------------------------------- service

def test_service_answers_the_true_jacobian(single_point):
    service = JacobianService(single_point, "tj", make_estimator("tj", single_point))
    q = np.array([0.3, -0.4, 0.5, 1.0, -0.2, 0.6, 0.1])
    answer = service.estimate(q, [])
    assert answer.success and answer.message == "ok" and answer.estimator == "tj"
    assert (answer.rows, answer.cols) == (3, 7)
    expected = single_point.jacobian(q)
    np.testing.assert_allclose(answer.jacobian, expected, rtol=0, atol=1e-12)
    assert answer.condition_number == pytest.approx(np.linalg.cond(expected), rel=1e-12)


def test_service_answers_bad_requests_without_raising(single_point):
    service = JacobianService(single_point, "tj", make_estimator("tj", single_point))
    answer = service.estimate([0.0] * 3, [])
    assert not answer.success and "expected 7" in answer.message and answer.estimator == "tj"
    assert answer.jacobian is None


def test_service_reports_an_estimator_failure(single_point):
    unfitted = make_estimator("llknn", single_point)
    service = JacobianService(single_point, "llknn", unfitted)
    answer = service.estimate([0.0] * 7)
    assert not answer.success
    assert "estimator 'llknn' failed" in answer.message and "fit" in answer.message


def test_service_rejects_a_non_finite_jacobian(single_point):
    est = make_estimator("broyden", single_point, initial_jacobian=np.full((3, 7), 1e308))
    service = JacobianService(single_point, "broyden", est)
    assert service.estimate([0.0] * 7).success
    est.jacobian[0, 0] = np.inf
    answer = service.estimate([0.0] * 7)
    assert not answer.success and "non-finite" in answer.message


def test_service_updates_an_online_estimator_and_resets_it(single_point):
    est = make_estimator("broyden", single_point)
    service = JacobianService(single_point, "broyden", est)
    j0 = est.j0.copy()
    q0, q1 = np.zeros(7), np.full(7, 0.01)
    service.estimate(q0, single_point.x(q0))
    answer = service.estimate(q1, single_point.x(q1))
    # Broyden (alpha 1) satisfies the newest secant exactly.
    np.testing.assert_allclose(answer.jacobian @ (q1 - q0),
                               single_point.x(q1) - single_point.x(q0), atol=1e-12)
    # No task_position: no update.
    np.testing.assert_array_equal(service.estimate(q0, []).jacobian, answer.jacobian)
    assert service.reset() == "broyden"
    np.testing.assert_array_equal(service.estimate(q0).jacobian, j0)


def _wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met within the deadline"
        time.sleep(0.001)


def test_swap_is_atomic_for_concurrent_callers(single_point):
    tj = make_estimator("tj", single_point)
    broyden = make_estimator("broyden", single_point)
    service = JacobianService(single_point, "tj", tj)
    q = np.full(7, 0.2)
    expected = {"tj": single_point.jacobian(q), "broyden": broyden.j0}
    seen, wrong, stop = [], [], threading.Event()

    def call():
        while not stop.is_set():
            answer = service.estimate(q)
            seen.append(answer.estimator)
            if not answer.success or not np.array_equal(answer.jacobian,
                                                         expected[answer.estimator]):
                wrong.append(answer)

    thread = threading.Thread(target=call)
    thread.start()
    try:
        _wait_until(lambda: len(seen) >= 200)
        assert service.swap("broyden", broyden) == "tj"
        swapped_at = len(seen)
        _wait_until(lambda: len(seen) >= swapped_at + 200)
    finally:
        stop.set()
        thread.join(timeout=10.0)
    assert not wrong
    assert set(seen[:200]) == {"tj"}
    # At most the call in flight during the swap answers with the old one.
    assert set(seen[swapped_at + 1:]) == {"broyden"}


_RNG = np.random.default_rng(7)


@pytest.mark.parametrize("jac", [
    np.arange(21.0).reshape(3, 7) ** 1.5,
    np.eye(2) * [3.0, 0.5],
    np.zeros((3, 7)),
    np.outer([1.0, 2.0, 3.0], np.ones(7)),
    # Every task's shape (single_point, multi_point, visual_servo), any memory order.
    _RNG.normal(size=(3, 7)),
    _RNG.normal(size=(12, 7)),
    _RNG.normal(size=(2, 2)),
    np.asfortranarray(_RNG.normal(size=(12, 7))),
])
def test_condition_number_is_numpys(jac):
    from uvs_estimation.jacobian_service import condition_number

    expected = np.linalg.cond(jac)
    got = condition_number(jac)
    assert isinstance(got, float)
    if np.isfinite(expected) and expected < 1e12:
        assert got == pytest.approx(expected, rel=1e-12)
    else:  # singular: inf, or a huge rounding-noise ratio, as numpy says
        assert got > 1e12
    if not np.any(jac):
        assert got == float("inf")


@pytest.mark.parametrize("cond", [1.0, 1e3, 1e8])
def test_native_condition_number_equals_lapacks(cond):
    """uvs_core's Jacobi SVD (used when built) and LAPACK's dgesdd (the fallback) agree."""
    from scipy.linalg.lapack import dgesdd

    from uvs_core.estimators import _native

    assert _native.available(), "uvs_core was built without its native library"
    rng = np.random.default_rng(11)
    for shape in ((3, 7), (12, 7), (2, 2), (7, 3)):
        k = min(shape)
        u, _ = np.linalg.qr(rng.normal(size=(shape[0], k)))
        v, _ = np.linalg.qr(rng.normal(size=(shape[1], k)))
        jac = (u * np.geomspace(cond, 1.0, k)) @ v.T
        s = dgesdd(jac, compute_uv=0)[1]
        got = _native.condition_number(np.ascontiguousarray(jac))
        # dgesdd's smallest singular value carries an error ~1e-16 * cond
        assert got == pytest.approx(s[0] / s[-1], rel=1e-12 + 1e-15 * cond)
        assert got == pytest.approx(cond, rel=1e-6)


def test_condition_number_without_the_native_library_uses_lapack(monkeypatch):
    from uvs_estimation import jacobian_service

    monkeypatch.setattr(jacobian_service, "native_condition_number", lambda jac: None)
    jac = np.arange(21.0).reshape(3, 7) ** 1.5
    assert jacobian_service.condition_number(jac) == pytest.approx(np.linalg.cond(jac),
                                                                    rel=1e-12)
    assert jacobian_service.condition_number(np.zeros((3, 7))) == float("inf")
