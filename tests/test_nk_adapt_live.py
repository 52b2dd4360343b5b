"""nk_adapt in the live graph: the estimator service updates it from the x of each
request, the runner's per-target reset returns it to its prior, and the whole graph
(the one `uvs servo` starts) converges with it."""

from __future__ import annotations

import numpy as np

from uvs_bringup.graph import GraphOptions
from uvs_bringup.runner import ServoGraph
from uvs_core.paths import installed_dir
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_estimation.jacobian_service import (
    JacobianService,
    ModelConfig,
    build_estimator,
)

GEN3 = load_robot("gen3")


def test_service_adapts_only_from_requests_with_x_and_resets_to_the_prior():
    task = make_task("single_point", GEN3)
    estimator, path = build_estimator("nk_adapt", task, ModelConfig(installed_dir("models")))
    assert path.name == "nk_adapt"
    service = JacobianService(task, "nk_adapt", estimator)
    rng = np.random.default_rng(0)
    qa = task.q_fixed[task.active] + np.cumsum(rng.normal(0.0, 0.03, (10, task.k)), axis=0)
    first = service.estimate(qa[-1]).jacobian
    for q in qa:                                   # no task_position: nothing learned
        assert service.estimate(q).success
    np.testing.assert_array_equal(service.estimate(qa[-1]).jacobian, first)
    for q in qa:                                   # with x: the correction moves
        answer = service.estimate(q, task.x(q))
        assert answer.success and answer.estimator == "nk_adapt"
    adapted = service.estimate(qa[-1]).jacobian
    assert np.abs(adapted - first).max() > 1e-3
    # closer to the true Jacobian where it was corrected
    truth = task.jacobian(qa[-1])
    assert np.linalg.norm(adapted - truth) < np.linalg.norm(first - truth)
    assert service.reset() == "nk_adapt"
    np.testing.assert_array_equal(service.estimate(qa[-1]).jacobian, first)


def test_uvs_servo_graph_converges_with_nk_adapt():
    """`uvs servo --estimator nk_adapt --targets 2` in process: both targets converge
    within 1 cm, and the served estimator was corrected during each target."""
    task = make_task("single_point", GEN3)
    targets = task.sample_targets(np.random.default_rng(0), 2)   # uvs servo --seed 0
    with ServoGraph(GraphOptions(task="single_point", estimator="nk_adapt")) as graph:
        served = graph.nodes["jacobian_estimator"]._service
        results, corrections = [], []
        for target in targets:
            results.append(graph.servo_to(target, timeout=30.0))
            corrections.append(float(np.linalg.norm(served.estimator.residual)))
    for result in results:
        assert result.outcome == "converged", result.summary()
        assert result.final_error < 0.01
        assert result.initial_error > 0.05
    assert served.name == "nk_adapt"
    assert all(c > 1e-4 for c in corrections), corrections
