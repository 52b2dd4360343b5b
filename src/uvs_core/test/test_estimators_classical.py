"""Estimator registry, interface checks and the classical estimators (tj, broyden, llknn).

No torch here: uvs_core must work without it.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from uvs_core.estimators import (
    EstimatorSpec,
    ModelError,
    NotFittedError,
    estimator_names,
    estimator_spec,
    load_estimator,
    make_estimator,
    register_estimator,
    split_by_trajectory,
)
from uvs_core.estimators.base import neighbour_pairs
from uvs_core.estimators.classical import local_linear_jacobians

CLASSICAL = ("tj", "broyden", "llknn")


class LinearTask:
    """Stand-in task x = A qa + c (exact Jacobian A everywhere)."""

    name = "linear"

    def __init__(self, m=3, k=4, seed=0):
        rng = np.random.default_rng(seed)
        self.m, self.k = m, k
        self.A = rng.normal(size=(m, k))
        self.c = rng.normal(size=m)
        self.active = np.arange(k)
        self.robot = SimpleNamespace(name="stand_in", n=k, home=np.zeros(k))

    def select(self, q):
        return np.asarray(q)[..., self.active]

    def expand(self, qa):
        return np.asarray(qa)

    def x(self, qa):
        return np.asarray(qa) @ self.A.T + self.c

    def jacobian(self, qa):
        qa = np.asarray(qa)
        return np.broadcast_to(self.A, qa.shape[:-1] + self.A.shape).copy()


@pytest.fixture(scope="module")
def gen3():
    from uvs_core.robot import load_robot

    return load_robot("gen3")


@pytest.fixture(scope="module")
def tasks(gen3):
    from uvs_core.tasks import make_task

    return {name: make_task(name, gen3) for name in ("single_point", "multi_point", "visual_servo")}


@pytest.fixture(scope="module")
def data(tasks):
    """Babbling data per task: (qa (N, k), x (N, m), traj (N,))."""
    from uvs_core.babble import babble

    out = {}
    for name, task in tasks.items():
        ds = babble(task, 4000, seed=1)
        out[name] = (task.select(ds.q), ds.x, ds.traj)
    return out


# ------------------------------------------------------------------ registry
def test_registry_names_come_from_the_entry_points_in_the_papers_order():
    from importlib.metadata import entry_points

    installed = {e.name for e in entry_points(group="uvs.estimators")}
    assert set(estimator_names()) == installed
    # uvs's own first, in the paper's order (Table I), then what is beyond the paper
    assert estimator_names()[:8] == ("tj", "broyden", "llknn", "nj", "binj", "nk_relu",
                                     "nk_tanh", "nk_adapt")


def test_classical_specs_declare_their_capabilities():
    assert estimator_spec("tj") == EstimatorSpec(
        "uvs_core.estimators.classical:TrueJacobian", order=0)
    broyden = estimator_spec("broyden")
    assert (broyden.learned, broyden.online, broyden.batched_update) == (False, True, True)
    assert broyden.model_files == ("data.npz",)
    llknn = estimator_spec("llknn")
    assert (llknn.learned, llknn.online, llknn.model_files) == (True, False, ("data.npz",))


def test_register_estimator_in_process_and_bad_specs():
    register_estimator("tj_again", {"target": "uvs_core.estimators.classical:TrueJacobian",
                                    "order": 5})
    try:
        assert estimator_names().index("tj_again") == 1  # between tj (0) and broyden (10)
        task = LinearTask()
        est = make_estimator("tj_again", task)
        np.testing.assert_array_equal(est.estimate(np.zeros(4)), task.A)
    finally:
        from uvs_core.estimators import registry

        registry._EXTRA.pop("tj_again")
    assert "tj_again" not in estimator_names()
    with pytest.raises(ValueError, match="'module:Class'"):
        EstimatorSpec("no_colon")
    with pytest.raises(TypeError, match=r"unknown estimator spec field\(s\) \['lerned'\]"):
        EstimatorSpec.coerce({"target": "a:B", "lerned": True})


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(ValueError, match="unknown estimator 'foo'.*tj.*nk_relu"):
        make_estimator("foo", LinearTask())


def test_unknown_parameter_rejected():
    with pytest.raises(ValueError, match="unknown parameter.*'nieghbors'.*neighbors"):
        make_estimator("llknn", LinearTask(), nieghbors=3)


def test_uvs_core_estimators_never_import_torch():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from uvs_core.estimators import make_estimator, estimator_names, estimator_spec\n"
        "import uvs_core.estimators.classical\n"
        "assert 'nk_tanh' in estimator_names() and estimator_spec('nj').learned\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------ shapes, checks
@pytest.mark.parametrize("task_name,m,k", [("single_point", 3, 7), ("multi_point", 12, 7),
                                           ("visual_servo", 2, 2)])
@pytest.mark.parametrize("name", CLASSICAL)
def test_shapes_every_task(tasks, data, name, task_name, m, k):
    task = tasks[task_name]
    assert (task.m, task.k) == (m, k)
    est = make_estimator(name, task)
    qa, x, traj = data[task_name]
    est.fit(qa, x, traj)
    assert est.estimate(qa[10]).shape == (m, k)
    batch = est.estimate_batch(qa[:5])
    assert batch.shape == (5, m, k)
    np.testing.assert_allclose(batch[3], est.estimate(qa[3]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", CLASSICAL)
def test_bad_joint_positions_rejected(tasks, data, name):
    task = tasks["single_point"]
    est = make_estimator(name, task)
    est.fit(*data["single_point"])
    with pytest.raises(ValueError, match="expected 7 active joint positions"):
        est.estimate(np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        est.estimate(np.array([0, 0, np.nan, 0, 0, 0, 0.0]))
    with pytest.raises(ValueError, match=r"\(B, 7\)"):
        est.estimate_batch(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="finite"):
        est.estimate_batch(np.full((2, 7), np.inf))
    with pytest.raises(ValueError):
        est.update(np.zeros(7), np.zeros(2))


def test_llknn_not_fitted(tasks):
    est = make_estimator("llknn", tasks["single_point"])
    with pytest.raises(NotFittedError, match="call fit"):
        est.estimate(np.zeros(7))


# ----------------------------------------------------------------- estimators
def test_tj_is_task_jacobian(tasks):
    task = tasks["multi_point"]
    q = np.random.default_rng(0).uniform(-1, 1, size=(4, 7))
    est = make_estimator("tj", task)
    np.testing.assert_array_equal(est.estimate_batch(q), task.jacobian(q))
    np.testing.assert_array_equal(est.estimate(q[1]), task.jacobian(q[1]))


def test_broyden_converges_to_linear_map():
    task = LinearTask(m=3, k=5, seed=2)
    est = make_estimator("broyden", task)  # no data: starts at 0.1 * eye
    rng = np.random.default_rng(3)
    q = np.zeros(5)
    est.update(q, task.x(q))
    err0 = np.linalg.norm(est.estimate(q) - task.A)
    for _ in range(200):
        q = q + rng.normal(scale=0.05, size=5)
        est.update(q, task.x(q))
    err = np.linalg.norm(est.estimate(q) - task.A)
    # Each exact secant step removes the error along dq; random directions
    # in 5-D drive it to round-off in a few dozen steps.
    assert err < 1e-8 * err0 + 1e-10
    # Secant condition holds exactly for the last step (alpha = 1).
    est.reset()
    np.testing.assert_allclose(est.estimate(q), 0.1 * np.eye(3, 5))


def test_broyden_skips_tiny_motion_and_resets():
    task = LinearTask(m=2, k=2)
    est = make_estimator("broyden", task, initial_jacobian=[[1.0, 0.0], [0.0, 1.0]])
    q = np.zeros(2)
    est.update(q, task.x(q))
    est.update(q + 1e-9, task.x(q) + 5.0)  # below min_motion: ignored
    np.testing.assert_array_equal(est.estimate(q), np.eye(2))
    est.update(q + [0.1, 0.0], task.x(q + [0.1, 0.0]))
    np.testing.assert_allclose(est.estimate(q)[:, 0], task.A[:, 0], rtol=1e-9)
    est.reset()
    np.testing.assert_array_equal(est.estimate(q), np.eye(2))


def test_broyden_fit_initialises_from_data_near_home(tasks, data):
    task = tasks["single_point"]
    qa, x, traj = data["single_point"]
    est = make_estimator("broyden", task)
    est.fit(qa, x, traj)
    home = task.home_active
    j_true = task.jacobian(home)
    # All trajectories start at the task's home, so the 256 nearest samples sit within
    # a few hundredths of a rad of it: the affine fit is within ~5 % of J(home).
    rel = np.linalg.norm(est.estimate(home) - j_true) / np.linalg.norm(j_true)
    assert rel < 0.05


def test_llknn_recovers_linear_map_exactly():
    task = LinearTask(m=3, k=4, seed=5)
    rng = np.random.default_rng(6)
    qa = rng.uniform(-1, 1, size=(500, 4))
    est = make_estimator("llknn", task, neighbors=32)
    est.fit(qa, task.x(qa))
    q = rng.uniform(-0.5, 0.5, size=(20, 4))
    np.testing.assert_allclose(est.estimate_batch(q), task.jacobian(q), atol=1e-9)
    np.testing.assert_allclose(est.estimate(q[0]), task.A, atol=1e-9)


def test_local_linear_ignores_offset_and_handles_degenerate():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3))
    q = rng.normal(size=(1, 50, 3))
    x = q @ a.T + 7.0
    np.testing.assert_allclose(local_linear_jacobians(q, x)[0], a, atol=1e-9)
    # Identical samples: no information, but finite output rather than an error.
    same = np.ones((1, 10, 3))
    assert np.isfinite(local_linear_jacobians(same, np.ones((1, 10, 2)))).all()


def test_llknn_at_home_despite_duplicates(tasks, data):
    task = tasks["single_point"]
    qa, x, traj = data["single_point"]
    home = task.home_active
    # Every trajectory starts at the task's home: 40 exact copies here. A neighbourhood
    # of copies would give J = 0; distinct samples give J close to J(home).
    assert (np.abs(qa - home).max(axis=1) == 0).sum() >= 40
    est = make_estimator("llknn", task, neighbors=32)
    est.fit(qa, x, traj)
    j_true = task.jacobian(home)
    assert np.linalg.norm(est.estimate(home) - j_true) / np.linalg.norm(j_true) < 0.05


def test_llknn_near_true_jacobian_on_gen3(tasks, data):
    task = tasks["single_point"]
    qa, x, traj = data["single_point"]
    val = split_by_trajectory(traj, 0.15, 0)
    est = make_estimator("llknn", task)
    est.fit(qa[~val], x[~val], traj[~val])
    # Held-out configurations within 0.05 rad of the training data (around
    # home, where every trajectory starts). 128 neighbours span ~0.1 rad
    # there, so curvature limits the affine fit to a few % (measured ~3 %);
    # 10 % median relative Frobenius error leaves room for other seeds.
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(qa[~val]).query(qa[val])
    near = qa[val][dist < 0.05]
    assert len(near) > 20
    jt = task.jacobian(near)
    rel = np.linalg.norm(est.estimate_batch(near) - jt, axis=(1, 2)) / np.linalg.norm(
        jt, axis=(1, 2))
    assert np.median(rel) < 0.10


BACKENDS = ("native", "kdtree")


def test_llknn_native_backend_is_built_and_the_default(tasks):
    """make setup compiles _llknn.c; "auto" then picks it (a missing build falls back)."""
    from uvs_core.estimators import _native

    assert _native.library_path() is not None, "uvs_core was built without _llknn.c"
    assert _native.available()
    assert make_estimator("llknn", tasks["single_point"]).backend == "native"
    with pytest.raises(ValueError, match="backend must be one of auto, native, kdtree"):
        make_estimator("llknn", tasks["single_point"], backend="flann")
    with pytest.raises(ValueError, match="native_leaf <= native_block"):
        make_estimator("llknn", tasks["single_point"], native_block=8, native_leaf=16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_llknn_single_estimate_equals_batched_and_eps(tasks, data, backend):
    """The single-q fit equals the batched fit; eps bounds the neighbours' distance."""
    task = tasks["single_point"]
    qa, x, traj = data["single_point"]
    est = make_estimator("llknn", task, backend=backend)
    est.fit(qa, x, traj)
    probe = qa[::53] + 0.01
    batched = est.estimate_batch(probe)
    looped = np.stack([est.estimate(q) for q in probe])
    np.testing.assert_allclose(looped, batched, rtol=1e-9, atol=1e-9 * np.abs(batched).max())
    # An approximate query: every neighbour within (1 + eps) times the true
    # k-th distance, as documented (and as scipy's cKDTree defines eps).
    approx = make_estimator("llknn", task, eps=0.5, backend=backend)
    approx.fit(qa, x, traj)
    for q in probe[:20]:
        true_kth = np.sort(np.linalg.norm(est.qa - q, axis=1))[est._kn - 1]
        rows = approx.neighbours(q)
        assert len(rows) == est._kn
        assert np.linalg.norm(approx.qa[rows] - q, axis=1).max() <= 1.5 * true_kth * (1 + 1e-12)
    with pytest.raises(ValueError, match="eps"):
        make_estimator("llknn", task, eps=-1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_llknn_neighbourhoods_are_the_exact_nearest(tasks, data, backend):
    """Every estimate is the local fit on the exact k nearest distinct samples."""
    task = tasks["single_point"]
    qa, x, traj = data["single_point"]
    est = make_estimator("llknn", task, neighbors=50, backend=backend)
    est.fit(qa, x, traj)
    distinct = np.unique(qa, axis=0, return_index=True)[1]
    q_u, x_u = qa[distinct], x[distinct]
    rng = np.random.default_rng(2)
    # Near the data and anywhere within the limits (the latency benchmark's draws).
    probes = np.vstack([qa[::211] + 0.02, task.select(task.robot.sample(rng, 20))])
    for q in probes:
        nearest = np.argsort(np.sum((q_u - q) ** 2, axis=1), kind="stable")[:50]
        want = local_linear_jacobians(q_u[nearest][None], x_u[nearest][None])[0]
        np.testing.assert_allclose(est.estimate(q), want, rtol=1e-9,
                                   atol=1e-9 * np.abs(want).max())
        assert sorted(map(tuple, est.qa[est.neighbours(q)])) == sorted(map(tuple, q_u[nearest]))


@pytest.mark.parametrize("task_name", ["single_point", "multi_point", "visual_servo"])
def test_llknn_native_equals_kdtree_on_every_task(tasks, data, task_name):
    """Both backends give the same J for every task's dimensions (3x7, 12x7, 2x2),
    also with fewer samples than k and small blocks (k spanning many blocks)."""
    task = tasks[task_name]
    qa, x, traj = data[task_name]
    rng = np.random.default_rng(3)
    probes = np.vstack([qa[::97] + 0.01, task.select(task.robot.sample(rng, 10))])
    # (neighbors 12: small, yet over the k + 1 samples a unique affine fit needs)
    for params in ({}, {"native_block": 16, "native_leaf": 4}, {"neighbors": 12}):
        native = make_estimator("llknn", task, backend="native", **params)
        kdtree = make_estimator("llknn", task, backend="kdtree", **params)
        native.fit(qa, x, traj)
        kdtree.fit(qa, x, traj)
        # two different searches are compared, not one twice
        assert native._native is not None and kdtree._native is None
        want = kdtree.estimate_batch(probes)
        np.testing.assert_allclose(native.estimate_batch(probes), want, rtol=1e-8,
                                   atol=1e-8 * np.abs(want).max())
        for q in probes[::7]:
            assert set(native.neighbours(q)) == set(kdtree.neighbours(q))
    few = make_estimator("llknn", task, backend="native")
    few.fit(qa[:40], x[:40])  # 40 samples, k = 128: every sample is a neighbour
    assert len(few.neighbours(probes[0])) == len(few.qa)
    want = local_linear_jacobians(few.qa[None], few.x[None])[0]
    np.testing.assert_allclose(few.estimate(probes[0]), want, rtol=1e-8,
                               atol=1e-8 * np.abs(want).max())


def test_llknn_numpy_fit_on_the_neighbours_equals_the_native_fit(tasks, data):
    """The fallback the native path takes when its Cholesky fails gives the same J."""
    task = tasks["single_point"]
    qa, x, traj = data["single_point"]
    est = make_estimator("llknn", task, backend="native")
    est.fit(qa, x, traj)
    for q in qa[::301] + 0.01:
        want = est.estimate(q)
        np.testing.assert_allclose(est._fit_rows(est.neighbours(q)), want, rtol=1e-8,
                                   atol=1e-8 * np.abs(want).max())


def test_ridged_solve_falls_back_to_lu_when_not_positive_definite():
    from scipy.linalg.lapack import dposv

    from uvs_core.estimators.classical import _ridged_solve

    rng = np.random.default_rng(4)
    a = rng.normal(size=(6, 4))
    g = a.T @ a  # centred Gram of [dq (k=3) | dx (m=1)]: positive definite block
    want = np.linalg.solve(g[:3, :3] + (1e-10 * np.trace(g[:3, :3]) / 3 + 1e-300) * np.eye(3),
                           g[:3, 3:]).T
    np.testing.assert_allclose(_ridged_solve(g.copy(), 3, dposv), want, rtol=1e-12)
    # An indefinite block: Cholesky fails, LU solves it.
    g[:3, :3] = np.diag([1.0, -2.0, 3.0])
    ridge = 1e-10 * 2.0 / 3 + 1e-300
    want = np.linalg.solve(g[:3, :3] + ridge * np.eye(3), g[:3, 3:]).T
    got = _ridged_solve(g.copy(), 3, dposv)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("torch_first", [False, True])
def test_llknn_queries_on_one_thread_and_leave_omp_num_threads_alone(tmp_path, torch_first):
    """pykdtree's OpenMP team has one thread: no worker spins on another core.

    Also when torch (as in a node serving neural estimators too) has put its
    own libgomp in the global symbol scope first; torch keeps its threads.
    """
    if not Path("/proc/self/task").is_dir():
        pytest.skip("counts threads in /proc")
    if torch_first and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    torch_lines = ["import torch", "assert torch.get_num_threads() == 2"] if torch_first else []
    code = "\n".join([
        "import os",
        "import numpy as np",
        *torch_lines,
        "from uvs_core.estimators import make_estimator",
        "from uvs_core.robot import load_robot",
        "from uvs_core.tasks import make_task",
        "task = make_task('single_point', load_robot('gen3'))",
        "qa = np.random.default_rng(0).uniform(-1, 1, (3000, 7))",
        "est = make_estimator('llknn', task, backend='kdtree')",
        "est.fit(qa, task.x(qa))",
        "before = len(os.listdir('/proc/self/task'))",
        "for q in qa[:50]:",
        "    est.estimate(q)",
        "est.estimate_batch(qa[:500])",
        "assert len(os.listdir('/proc/self/task')) == before, 'OpenMP threads started'",
        "assert os.environ['OMP_NUM_THREADS'] == '2', os.environ.get('OMP_NUM_THREADS')",
        *torch_lines[1:],
    ])
    env = dict(os.environ, OMP_NUM_THREADS="2")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)


def test_true_jacobian_equals_the_tasks_bit_for_bit(tasks, data):
    for name, task in tasks.items():
        est = make_estimator("tj", task)
        qa = data[name][0][::97]
        for q in qa:
            np.testing.assert_array_equal(est.estimate(q), task.jacobian(q))
        np.testing.assert_array_equal(est.estimate_batch(qa), task.jacobian(qa))
    # Stand-in tasks (not a uvs_core Task) are asked for J directly.
    stand_in = LinearTask()
    np.testing.assert_array_equal(make_estimator("tj", stand_in).estimate(np.ones(4)),
                                  stand_in.A)


def test_broyden_update_is_the_rank_one_formula(tasks):
    task = tasks["single_point"]
    est = make_estimator("broyden", task, alpha=0.7)
    rng = np.random.default_rng(3)
    qs = task.home_active + 0.05 * rng.standard_normal((6, 7))
    want = est.jacobian.copy()
    for i, q in enumerate(qs):
        est.update(q, task.x(q))
        if i:
            dq = q - qs[i - 1]
            resid = (task.x(q) - task.x(qs[i - 1])) - want @ dq
            want = want + (0.7 / float(dq @ dq)) * np.outer(resid, dq)
        np.testing.assert_array_equal(est.estimate(q), want)


def test_neighbour_pairs_exclude_self():
    q = np.random.default_rng(0).normal(size=(50, 3))
    i, j = neighbour_pairs(q, 4)
    assert i.shape == j.shape == (200,)
    assert not np.any(i == j)
    # The first pair of each sample is its true nearest neighbour.
    d = np.linalg.norm(q[:, None] - q[None], axis=-1) + np.eye(50) * 1e9
    np.testing.assert_array_equal(j.reshape(50, 4)[:, 0], d.argmin(axis=1))


def test_split_by_trajectory_is_seeded_and_whole():
    traj = np.repeat(np.arange(20), 10)
    a = split_by_trajectory(traj, 0.15, 3)
    assert np.array_equal(a, split_by_trajectory(traj, 0.15, 3))
    assert len(np.unique(traj[a])) == 3
    for t in np.unique(traj):
        assert a[traj == t].all() or not a[traj == t].any()


# ------------------------------------------------------------------ save/load
@pytest.mark.parametrize("name", CLASSICAL)
def test_save_load_round_trip(tasks, data, name, tmp_path):
    task = tasks["single_point"]
    qa, x, traj = data["single_point"]
    est = make_estimator(name, task)
    est.fit(qa, x, traj)
    est.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert (meta["estimator"], meta["task"], meta["robot"], meta["m"], meta["k"]) == (
        name, "single_point", "gen3", 3, 7)
    loaded = load_estimator(tmp_path / "model", task)
    assert type(loaded) is type(est)
    np.testing.assert_array_equal(loaded.estimate_batch(qa[:50]), est.estimate_batch(qa[:50]))
    # Without a task, the task is rebuilt from the metadata.
    rebuilt = load_estimator(tmp_path / "model")
    np.testing.assert_array_equal(rebuilt.estimate(qa[7]), est.estimate(qa[7]))
    # Only the finished directory exists: no temporary leftovers.
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_save_overwrites_atomically(tasks, data, tmp_path):
    task = tasks["single_point"]
    qa, x, traj = data["single_point"]
    a = make_estimator("llknn", task)
    a.fit(qa[:1000], x[:1000], traj[:1000])
    a.save(tmp_path / "m")
    b = make_estimator("llknn", task)
    b.fit(qa, x, traj)
    b.save(tmp_path / "m")
    loaded = load_estimator(tmp_path / "m", task)
    assert loaded.qa.shape[0] == np.unique(qa, axis=0).shape[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.fixture
def llknn_model(tasks, data, tmp_path):
    est = make_estimator("llknn", tasks["single_point"])
    est.fit(*data["single_point"])
    return est.save(tmp_path / "llknn")


def test_corrupt_json(llknn_model, tasks):
    (llknn_model / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"metadata\.json.*corrupt JSON"):
        load_estimator(llknn_model, tasks["single_point"])


def test_missing_json(llknn_model, tasks):
    (llknn_model / "metadata.json").unlink()
    with pytest.raises(ModelError, match=r"metadata\.json.*missing"):
        load_estimator(llknn_model, tasks["single_point"])


def test_missing_model_dir(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_estimator(tmp_path / "nope")


def test_missing_weights(llknn_model, tasks):
    (llknn_model / "data.npz").unlink()
    with pytest.raises(ModelError, match=r"data\.npz.*missing"):
        load_estimator(llknn_model, tasks["single_point"])


def test_truncated_weights(llknn_model, tasks):
    path = llknn_model / "data.npz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelError, match=r"data\.npz.*corrupt"):
        load_estimator(llknn_model, tasks["single_point"])


def test_mismatched_task(llknn_model, tasks):
    with pytest.raises(ModelError, match=r"metadata\.json.*'task'.*'multi_point'.*'single_point'"):
        load_estimator(llknn_model, tasks["multi_point"])
    with pytest.raises(ModelError, match=r"metadata\.json.*'m'.*2.*3"):
        # same name, other dimensions: a stand-in with the right names
        fake = SimpleNamespace(name="single_point", robot=SimpleNamespace(name="gen3"),
                               m=2, k=7, active=np.arange(7))
        load_estimator(llknn_model, fake)


def test_mismatched_estimator(llknn_model, tasks):
    with pytest.raises(ModelError, match=r"metadata\.json.*'estimator'.*'nk_tanh'.*'llknn'"):
        load_estimator(llknn_model, tasks["single_point"], name="nk_tanh")
