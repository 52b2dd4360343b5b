"""The paper's benchmark (section IV) end to end: data, training, rollouts, report, plots.

``run_benchmark`` is what ``uvs benchmark`` runs:

1. data: OU babbling (``uvs_core.babble.babble``, the protocol's size, seed 0)
   or a recorded bag;
2. training: every estimator but ``tj`` through ``uvs_learning.training.
   train_model`` (Broyden's fit estimates its initial Jacobian), models
   written to ``OUT/models/<name>``;
3. evaluation: per estimator and seed, all targets of the seed as one batch
   through ``uvs_core.evaluation.rollout`` (the controller node's control law);
4. ``OUT/results.json``, ``OUT/steps.npz`` (per-step records), ``OUT/report.md``
   and ``OUT/fig_*.png``.

This module is the run; the report (results.json, report.md, the machine) is
``uvs_bringup.benchmark_report`` and the figures ``uvs_bringup.benchmark_figures``.
Their public names are re-exported here, so ``uvs_bringup.benchmark`` offers all of it.

Training jobs and (estimator, seed) evaluation jobs run through
``uvs_bringup.executors``: inline, in ``workers`` local processes (spawned, one
BLAS/torch thread each; the default), or as Ray tasks (``executor="ray"``, a local
instance or the cluster at ``address``). Plotting, torch and Ray are imported only
where used.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from uvs_bringup.benchmark_figures import make_figures
from uvs_bringup.benchmark_report import (
    jsonable,
    machine_info,
    render_report,
    table_order,
    write_json,
)
from uvs_core.estimators import estimator_names
from uvs_core.evaluation import PAPER_TABLES, QUANTILES, protocol

#: --quick: small data, few epochs, 20 targets x 2 seeds (the pipeline test)
QUICK = {"samples": 20_000, "epochs": 4, "targets": 20, "seeds": 2}
SCHEMA = "uvs-benchmark/1"


@dataclass
class BenchmarkConfig:
    """What to run. None fields take the protocol's value (uvs_core.evaluation.protocol:
    ``protocol`` names the variant, "paper" = the reference code's conventions)."""

    task: str
    out: Path
    #: default: every registered estimator (uvs_core.estimators.registry)
    estimators: tuple[str, ...] = field(default_factory=estimator_names)
    targets: int | None = None
    seeds: int | None = None
    samples: int | None = None
    epochs: int | None = None
    data: Path | None = None
    workers: int = 1
    quick: bool = False
    steps: int | None = None
    joint_limits: str | None = None
    robot: str = "gen3"
    protocol: str = "paper"
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: estimator -> model directory evaluated instead of training one (e.g. a shipped model)
    models: dict[str, str] = field(default_factory=dict)
    command: str = ""
    #: where the jobs run: "local" (inline / process pool of ``workers``) or "ray"
    executor: str = "local"
    #: a Ray cluster to join (executor "ray"); None: a local instance of ``workers`` CPUs
    address: str | None = None
    #: data and training seed: babbling uses the protocol's data seed + ``seed``, training
    #: ``seed``; 0 is the protocol (target seeds are ``seeds``, unchanged)
    seed: int = 0

    def resolved(self) -> dict[str, Any]:
        """targets, seeds, samples, epochs, steps, joint_limits: explicit > --quick >
        protocol."""
        proto = protocol(self.task, self.protocol)
        base = {"targets": proto.targets, "seeds": proto.seeds, "samples": proto.samples,
                "epochs": proto.epochs, "steps": proto.steps,
                "joint_limits": proto.joint_limits}
        if self.quick:
            base.update(QUICK)
        for key in base:
            value = getattr(self, key)
            if value is not None:
                base[key] = value
        return base


def shares_prior(task, trained, params: dict[str, dict[str, Any]]) -> bool:
    """Whether nk_adapt's prior, trained in this run, would be the nk_tanh model the run
    trains: both are in ``trained`` and every nk_tanh parameter (defaults for ``task``
    overridden by ``params``) equals nk_adapt's; they differ only in nk_adapt's online
    ones (method, alpha, ...). Both get the run's epochs, seed and data."""
    if not {"nk_tanh", "nk_adapt"} <= set(trained):
        return False
    from uvs_core.estimators import estimator_class

    tanh = {**estimator_class("nk_tanh").default_params(task), **params.get("nk_tanh", {})}
    adapt = {**estimator_class("nk_adapt").default_params(task), **params.get("nk_adapt", {})}
    return all(key in adapt and adapt[key] == value for key, value in tanh.items())


# ----------------------------------------------------------- worker jobs
_CACHE: dict[tuple, Any] = {}


def _task(task_name: str, robot: str):
    key = ("task", task_name, robot)
    if key not in _CACHE:
        from uvs_core.robot import load_robot
        from uvs_core.tasks import make_task

        _CACHE[key] = make_task(task_name, load_robot(robot))
    return _CACHE[key]


def _training_kwargs(epochs: int | None, seed: int, params: dict) -> dict:
    """train_model's epochs, seed and estimator parameters: ``--epochs`` (not None) over
    ``--param EST.epochs``, ``--param EST.seed`` over the run's seed."""
    kwargs = dict(params)
    per_estimator = kwargs.pop("epochs", None)
    kwargs["epochs"] = epochs if epochs is not None else per_estimator
    kwargs.setdefault("seed", seed)
    return kwargs


def _train_job(task_name: str, robot: str, name: str, dataset, out: str, epochs,
               params: dict, queue=None, seed: int = 0) -> dict:
    """Train one estimator (in a worker); returns train_model's metadata."""
    from uvs_learning.training import train_model

    task = _task(task_name, robot)

    def progress(epoch, total, train_loss, val_loss):
        if queue is not None:
            queue.put((name, int(epoch), int(total)))

    result = train_model(name, task, dataset, out=out, progress=progress,
                         **_training_kwargs(epochs, seed, params))
    result.pop("history", None)
    return result


def _estimator(task_name: str, robot: str, name: str, model: str | None, params: dict):
    key = ("est", task_name, robot, name, model)
    if key not in _CACHE:
        from uvs_core.estimators import load_estimator, make_estimator

        task = _task(task_name, robot)
        _CACHE[key] = (load_estimator(model, task=task, name=name) if model
                       else make_estimator(name, task, **params))
    return _CACHE[key]


def _eval_job(task_name: str, robot: str, name: str, model: str | None, params: dict,
              seed: int, targets: int, steps: int, joint_limits: str, variant: str) -> dict:
    """Roll out one seed's targets for one estimator (in a worker)."""
    from uvs_core.evaluation import rollout

    t0 = time.perf_counter()
    task = _task(task_name, robot)
    est = _estimator(task_name, robot, name, model, params)
    options = protocol(task_name, variant).rollout_options(task.robot.n)
    options.update(steps=steps, joint_limits=joint_limits)
    goals = task.sample_targets(np.random.default_rng(seed), targets)
    r = rollout(task, est, goals, **options)
    return {"name": name, "seed": seed, "distance": r.distance, "frobenius": r.frobenius,
            "condition": r.condition, "positive_definite": r.positive_definite,
            "pd_undefined": r.pd_undefined, "halted": r.halted,
            "alt_distance": r.alt_distance, "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------- the run
def run_benchmark(cfg: BenchmarkConfig, show_progress: bool = True,
                  log: Callable[[str], None] | None = None) -> dict:
    """Run the benchmark and write OUT/results.json, steps.npz, report.md, fig_*.png.

    Returns the results dict (what results.json holds). ValueError for a bad
    configuration (unknown estimator or parameter, a bag of another task).
    """
    from uvs_bringup.executors import ExecutorSpec, open_executor
    from uvs_bringup.verbs._common import progress_bar
    from uvs_core.estimators import estimator_class, estimator_specs

    say = log or (lambda message: None)
    t_all = time.perf_counter()
    proto = protocol(cfg.task, cfg.protocol)
    res = cfg.resolved()
    spec = ExecutorSpec(cfg.executor, cfg.workers, cfg.address)
    task = _task(cfg.task, cfg.robot)
    for name in cfg.estimators:
        accepted = estimator_class(name).default_params(task)
        unknown = sorted(set(cfg.params.get(name, {})) - set(accepted))
        if unknown:
            raise ValueError(f"--param {name}: unknown parameter(s) {unknown}; "
                             f"valid: {sorted(accepted)}")
    for name in cfg.params:
        if name not in cfg.estimators:
            raise ValueError(f"--param {name}.*: {name} is not among --estimators")
    given: dict[str, dict] = {}
    for name, path in cfg.models.items():
        from uvs_core.estimators import ModelError, load_estimator

        if name not in cfg.estimators:
            raise ValueError(f"--model {name}=...: {name} is not among --estimators")
        if name in cfg.params:
            raise ValueError(f"--model {name}=... and --param {name}.* exclude each other")
        try:
            # Checked now (estimator, task, robot, shapes), not in a worker later.
            meta = load_estimator(path, task=task, name=name).metadata()
        except ModelError as exc:
            raise ValueError(f"--model {name}={path}: {exc}") from None
        given[name] = {**meta, "path": str(Path(path).resolve()), "fit_seconds": None,
                       "total_seconds": None}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()

    # 1. data
    t0 = time.perf_counter()
    if cfg.data is not None:
        from uvs_core.dataset import file_hash, read_bag

        with progress_bar("reading bag", 1, "samples", enabled=show_progress) as update:
            dataset = read_bag(cfg.data, progress=update)
        if dataset.task != cfg.task:
            raise ValueError(f"{cfg.data} holds {dataset.task} data, not {cfg.task}")
        data_info = {"source": str(cfg.data), "data_hash": file_hash(cfg.data)}
    else:
        from uvs_core.babble import babble

        with progress_bar("babbling", res["samples"], "samples",
                          enabled=show_progress) as update:
            options = proto.babble_options(task.robot.n)
            options["seed"] = int(options["seed"]) + cfg.seed
            dataset = babble(task, res["samples"], progress=update, **options)
        data_info = {"source": "babble", **{k: (v.tolist() if isinstance(v, np.ndarray)
                                               else v) for k, v in options.items()}}
    data_info.update({"samples": len(dataset),
                      "trajectories": int(np.unique(dataset.traj).size),
                      "seconds": time.perf_counter() - t0})
    say(f"data: {data_info['samples']:,} samples in {data_info['seconds']:.1f} s")

    # One Ray session (a local instance starts in seconds) serves training and evaluation.
    with ExitStack() as stack:
        shared = stack.enter_context(open_executor(spec)) if spec.kind == "ray" else None

        def executor(jobs: int):
            return nullcontext(shared) if shared is not None else open_executor(spec, jobs)

        # 2. training
        t0 = time.perf_counter()
        # Every estimator with a model (its spec's model_files: learned ones, Broyden's
        # initial J) is fitted here. Longest first, so the last job to start is a short
        # one (NK trains slowest; a name not ranked here, e.g. a plug-in's, goes first).
        cost = {"nk_ens": -1, "nk_adapt": 0, "nk_relu": 0, "nk_tanh": 1, "binj": 2, "nj": 3,
                "llknn": 4, "broyden": 5}
        specs = estimator_specs()
        trained = sorted((n for n in cfg.estimators if specs[n].model_files and n not in given),
                         key=lambda n: cost.get(n, -1))
        # nk_adapt's prior is nk_tanh by definition: trained here with the same recipe, it
        # is the same network (same seed, same weights), so it is trained once.
        share_prior = shares_prior(task, trained, cfg.params)
        if share_prior:
            trained.remove("nk_adapt")
        models: dict[str, str | None] = {n: None for n in cfg.estimators}
        training: dict[str, dict | None] = {n: None for n in cfg.estimators}
        for name, meta in given.items():
            models[name], training[name] = meta["path"], meta

        def epochs_of(name: str) -> int:
            p = estimator_class(name).default_params(task)
            if "epochs" not in p:
                return 1
            return int(res["epochs"] or cfg.params.get(name, {}).get("epochs") or p["epochs"])

        with executor(len(trained)) as ex, \
                (ex.queue() if ex.kind == "local" else nullcontext(
                    _LocalQueue() if ex.kind == "inline" else None)) as queue, \
                progress_bar("training", sum(epochs_of(n) for n in trained) or 1, "epoch",
                             enabled=show_progress) as update:
            done_epochs: dict[str, int] = {}

            def poll():
                while queue is not None and not queue.empty():
                    name, epoch, _ = queue.get_nowait()
                    done_epochs[name] = epoch
                update(sum(done_epochs.values()))

            if isinstance(queue, _LocalQueue):
                queue.on_put = poll

            def finished(result):
                name = result["estimator"]
                training[name] = result
                models[name] = result["path"]
                poll()
                done_epochs[name] = epochs_of(name)
                update(sum(done_epochs.values()))
                say(f"trained {name} in {result['total_seconds']:.1f} s")

            jobs = [(_train_job, (cfg.task, cfg.robot, n, dataset, str(out / "models" / n),
                                  res["epochs"], cfg.params.get(n, {}), queue, cfg.seed))
                    for n in trained]
            ex.run_jobs(jobs, finished, poll)
        if share_prior:
            from uvs_learning.training import adapt_from_prior

            result = adapt_from_prior(models["nk_tanh"], task, dataset,
                                      out / "models" / "nk_adapt",
                                      **_training_kwargs(res["epochs"], cfg.seed,
                                                         cfg.params.get("nk_adapt", {})))
            training["nk_adapt"], models["nk_adapt"] = result, result["path"]
            say("nk_adapt: its prior is the nk_tanh model trained above, not trained again")
        training_seconds = time.perf_counter() - t0

        # 3. evaluation
        t0 = time.perf_counter()
        records: dict[str, list[dict]] = {n: [] for n in cfg.estimators}
        jobs = [(_eval_job, (cfg.task, cfg.robot, n, models[n], cfg.params.get(n, {}) if
                             models[n] is None else {}, seed, res["targets"], res["steps"],
                             res["joint_limits"], cfg.protocol))
                for n in cfg.estimators for seed in range(res["seeds"])]
        with executor(len(jobs)) as ex, \
                progress_bar("evaluating", len(jobs) * res["targets"], "traj",
                             enabled=show_progress) as update:
            count = {"done": 0}

            def collected(result):
                records[result["name"]].append(result)
                count["done"] += res["targets"]
                update(count["done"])

            ex.run_jobs(jobs, collected)
        evaluation_seconds = time.perf_counter() - t0

    results = _assemble(cfg, res, proto, machine, data_info, training, records,
                        training_seconds, evaluation_seconds)
    arrays = _arrays(records)
    np.savez_compressed(out / "steps.npz", **arrays)
    results["files"] = {"results": "results.json", "steps": "steps.npz",
                        "report": "report.md"}
    t_plot = time.perf_counter()
    results["files"]["figures"] = make_figures(results, arrays, out)
    results["timing"]["report_seconds"] = time.perf_counter() - t_plot
    results["timing"]["total_seconds"] = time.perf_counter() - t_all
    results["machine"]["load_average_end"] = list(os.getloadavg()) \
        if hasattr(os, "getloadavg") else None
    (out / "report.md").write_text(render_report(results), encoding="utf-8")
    write_json(out / "results.json", results)
    return results


class _LocalQueue:
    """The queue interface of a Manager queue, in process (workers <= 1)."""

    def __init__(self) -> None:
        self.items: list = []
        self.on_put: Callable[[], None] | None = None

    def put(self, item) -> None:
        self.items.append(item)
        if self.on_put is not None:
            self.on_put()

    def empty(self) -> bool:
        return not self.items

    def get_nowait(self):
        return self.items.pop(0)


def _arrays(records: dict[str, list[dict]]) -> dict[str, np.ndarray]:
    """Per-step records of every estimator, trajectories ordered by seed."""
    arrays: dict[str, np.ndarray] = {}
    for name, recs in records.items():
        recs = sorted(recs, key=lambda r: r["seed"])
        if not recs:
            continue
        arrays[f"{name}/seed"] = np.concatenate(
            [np.full(r["distance"].shape[0], r["seed"]) for r in recs])
        for key, dtype in (("distance", np.float64), ("frobenius", np.float32),
                           ("condition", np.float32), ("positive_definite", bool),
                           ("pd_undefined", bool), ("halted", bool),
                           ("alt_distance", np.float64)):
            if recs[0][key] is not None:
                arrays[f"{name}/{key}"] = np.concatenate([r[key] for r in recs]).astype(dtype)
    return arrays


def _assemble(cfg, res, proto, machine, data_info, training, records,
              training_seconds, evaluation_seconds) -> dict:
    from uvs_core.control import ControlConfig
    from uvs_core.evaluation import summarize

    arrays = _arrays(records)
    estimators = {}
    for name in cfg.estimators:
        a = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}/")}
        summary = summarize(proto, a["distance"], a["frobenius"].astype(float),
                            a["condition"].astype(float), a.get("positive_definite"),
                            a.get("halted"), a.get("alt_distance"), a["seed"],
                            a.get("pd_undefined"))
        tr = training[name]
        summary["training"] = None if tr is None else {
            key: tr.get(key) for key in ("fit_seconds", "total_seconds", "val_loss",
                                         "jacobian_frobenius_mean",
                                         "jacobian_frobenius_median", "epochs_run",
                                         "best_epoch", "samples", "path")}
        summary["params"] = (tr or {}).get("params", cfg.params.get(name, {}))
        summary["evaluation_seconds"] = float(sum(r["seconds"] for r in records[name]))
        paper = PAPER_TABLES.get(cfg.task, {}).get(name)
        summary["paper"] = None if paper is None else {"bins": list(paper[:-1]),
                                                       "total": paper[-1]}
        estimators[name] = summary
    thr = proto.threshold_values
    return {
        "schema": SCHEMA,
        "task": cfg.task,
        "units": proto.units,
        "command": cfg.command,
        "arguments": {k: (str(v) if isinstance(v, Path) else v)
                      for k, v in asdict(cfg).items() if k != "command"},
        "protocol": {
            **res,
            "dt": proto.dt,
            "data_seed": proto.data_seed,
            "target_seeds": list(range(res["seeds"])),
            "variant": cfg.protocol,
            # what the rollouts used: the protocol's pose, or None (the task's home) for
            # a robot with another number of joints
            "start": (None if (start := proto.start_for(_task(cfg.task, cfg.robot).robot.n))
                      is None else start.tolist()),
            "velocity_cap": proto.velocity_cap,
            "velocity_mode": proto.velocity_mode,
            "control": asdict(replace(
                ControlConfig.paper(dt=proto.dt),
                max_joint_velocity=(math.inf if proto.velocity_mode == "clip"
                                    or proto.velocity_cap is None else proto.velocity_cap))),
            "control_law": "uvs_core.control.control_step",
            "thresholds": {"start": float(thr[0]), "stop": float(thr[-1]),
                           "step": proto.thresholds[2], "count": int(thr.size),
                           "units": proto.units},
            "bin_edges": list(proto.bin_edges),
            "distance": proto.distance,
            "alt_distance": proto.alt_distance,
            "condition_quantiles": list(QUANTILES),
        },
        "data": data_info,
        "machine": machine,
        "timing": {"data_seconds": data_info["seconds"],
                   "training_seconds": training_seconds,
                   "evaluation_seconds": evaluation_seconds},
        "estimators": estimators,
    }


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``est.key=value`` items -> {est: {key: value}}; values parsed as JSON, else text."""
    params: dict[str, dict[str, Any]] = {}
    for item in items or []:
        head, sep, value = item.partition("=")
        est, dot, key = head.partition(".")
        if not sep or not dot or not est or not key:
            raise ValueError(f"--param {item!r}: expected ESTIMATOR.KEY=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        params.setdefault(est, {})[key] = parsed
    return params


__all__ = ["BenchmarkConfig", "QUICK", "table_order", "shares_prior", "run_benchmark",
           "render_report", "make_figures", "machine_info", "parse_params", "jsonable",
           "write_json"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `uvs benchmark`")
