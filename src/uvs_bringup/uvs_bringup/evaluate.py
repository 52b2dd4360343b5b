"""`uvs evaluate`: the paper's success measure, taken through a live servo graph.

The graph is driven only through its topics, services and parameter services (the
``Operator`` of ``uvs_bringup.runner``), so the same code measures the in-process graph
of ``uvs servo``, a graph started by ``ros2 launch uvs_bringup servo.launch.py`` and a
real arm. Targets, thresholds, bins and distances are those of ``uvs benchmark``
(``uvs_core.evaluation.protocol``, ``binned_success``, ``threshold_success``) so the
two figures are comparable.

``plan_targets`` and ``summarize`` are pure (no rclpy); ``evaluate`` drives a graph.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uvs_core.evaluation import binned_success, protocol, task_distance, threshold_success

SCHEMA = "uvs-evaluate/1"
OUTCOMES = ("converged", "stalled", "halted", "timeout")
#: the issue's contract: estimator-timeout halts below 1 % of cycles at 20 Hz
TIMEOUT_KIND = "estimator timeout"


@dataclass(frozen=True)
class PlannedTarget:
    """One target of the protocol: seed, index within the seed's sample, x* (m,), and
    why it is skipped ("" when it is servoed)."""

    seed: int
    index: int
    target: np.ndarray
    skip: str = ""


def plan_targets(task, seeds: int, count: int, envelope=None) -> list[PlannedTarget]:
    """The benchmark's targets: ``task.sample_targets(default_rng(seed), count)`` for seeds
    0..seeds-1; those outside `envelope` (uvs_core.safety.Envelope, None: none) marked
    skipped with the reason, as the controller would refuse them."""
    out = []
    for seed in range(seeds):
        for index, x in enumerate(task.sample_targets(np.random.default_rng(seed), count)):
            problem = None if envelope is None else envelope.target_problem(x, task.units)
            out.append(PlannedTarget(seed, index, np.asarray(x, float), problem or ""))
    return out


def target_record(planned: PlannedTarget, result, distance: str,
                  alt_distance: str | None = None) -> dict:
    """The JSON record of one servoed target (result: runner.TargetResult).

    initial/final_distance: the protocol's distance (uvs_core.evaluation.task_distance)
    between x* and x of the first and last status, task units.
    """
    target = np.asarray(result.target, float)
    record = {
        "seed": planned.seed, "index": planned.index, "target": result.target,
        "initial_distance": float(task_distance(result.initial_position, target, distance)),
        "final_distance": float(task_distance(result.final_position, target, distance)),
        "outcome": result.outcome, "reason": result.reason, "steps": result.steps,
        "seconds": round(result.seconds, 3), "cycles": result.cycles,
        "halted_cycles": dict(result.halted_cycles),
        "stalled_cycles": result.stalled_cycles, "held_cycles": result.held_cycles,
    }
    if alt_distance:
        record["initial_alt_distance"] = float(
            task_distance(result.initial_position, target, alt_distance))
        record["final_alt_distance"] = float(
            task_distance(result.final_position, target, alt_distance))
    return record


def summarize(task_name: str, records: list[dict], variant: str = "paper") -> dict:
    """Success and cycle figures of servoed targets (records of target_record).

    success: binned_success over the protocol's thresholds and initial-distance bins
    (as ``uvs benchmark``), with per_seed; success_alt for the protocol's second
    distance; outcomes: counts; cycles: total statuses, HALTED ones per kind of reason,
    STALLED and held ones, and the share halted by an estimator timeout.
    """
    proto = protocol(task_name, variant)
    thr = proto.threshold_values
    initial = np.array([r["initial_distance"] for r in records], float)
    final = np.array([r["final_distance"] for r in records], float)
    success = binned_success(initial, final, proto.bin_edges, thr)
    seeds = sorted({r["seed"] for r in records})
    success["per_seed"] = {str(s): threshold_success(
        final[[r["seed"] == s for r in records]], thr) for s in seeds}
    out = {"success": success}
    if proto.alt_distance and records and "final_alt_distance" in records[0]:
        out["success_alt"] = {"distance": proto.alt_distance, **binned_success(
            np.array([r["initial_alt_distance"] for r in records]),
            np.array([r["final_alt_distance"] for r in records]), proto.bin_edges, thr)}
    out["final_distance"] = ({"mean": float(np.mean(final)), "median": float(np.median(final)),
                              "max": float(np.max(final))} if records else None)
    out["outcomes"] = {o: sum(r["outcome"] == o for r in records) for o in OUTCOMES}
    total = sum(r["cycles"] for r in records)
    halted: dict[str, int] = {}
    for r in records:
        for kind, n in r["halted_cycles"].items():
            halted[kind] = halted.get(kind, 0) + n
    out["cycles"] = {
        "total": total,
        "halted": dict(sorted(halted.items())),
        "halted_total": sum(halted.values()),
        "stalled": sum(r.get("stalled_cycles", 0) for r in records),
        "held": sum(r["held_cycles"] for r in records),
        "estimator_timeout_share": halted.get(TIMEOUT_KIND, 0) / total if total else None,
    }
    return out


# ------------------------------------------------------------------------ CPU load
class BusyLoad:
    """`count` busy-loop processes (``python -c 'while True: pass'``) for the duration of a
    with-block; killed on exit, also on Ctrl-C or an error."""

    def __init__(self, count: int):
        self.count = count
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> BusyLoad:
        try:
            for _ in range(self.count):
                # Own session: a terminal's Ctrl-C reaches uvs, which then kills these.
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL,
                    start_new_session=True))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)


# ------------------------------------------------------------------------ the run
def graph_settings(op) -> dict:
    """What the running graph is: the controller's task, robot, envelope mode and
    convergence tolerance, and the estimator's name (parameter services)."""
    ctrl = op.get_parameters("controller", ["task", "robot", "envelope",
                                            "convergence_tolerance"])
    est = op.get_parameters("jacobian_estimator", ["estimator"])
    return {**ctrl, **est}


def envelope_of(robot, mode: str):
    """The Envelope the controller checks targets against (its `envelope` parameter)."""
    from uvs_core.safety import Envelope

    return {"robot": robot.envelope, "box": robot.envelope.without_table(),
            "off": Envelope()}[mode]


def evaluate(op, task, planned: list[PlannedTarget], duration: float, halt_grace: float,
             stall_grace: float = math.inf,
             on_target: Callable[[int, dict | None], None] | None = None,
             records: list | None = None, skipped: list | None = None) -> tuple[list, list]:
    """Servo each planned target through the graph of Operator `op`.

    Each target: home (waiting until the controller reports the home x), reset the
    estimator, set the target, wait for converged, a halt lasting `halt_grace` s or a
    stall lasting `stall_grace` s, at most `duration` s. The default never ends a target
    on a stall: the benchmark has no stall rule, and the controller goes on commanding
    while it reports STALLED (the lock joint-limit policy slows progress near a limit;
    measured: tj on seed 0's 100 targets, 82 converged when the first STALLED ended a
    target, 6 of 8 of those stalled ones converged within 200 steps when it did not).
    Returns (records, skipped): target_record
    dicts, and {"seed", "index", "target", "reason"} of targets skipped or refused; given
    `records` and `skipped` (a resumed run's) are appended to, so `on_target` sees the
    whole run so far.
    """
    from uvs_bringup.runner import TargetRefused

    proto = protocol(task.name)
    home = np.asarray(task.x(task.home_active), float)
    # The tolerance only tells the homed arm from where the last target left it.
    tolerance = 2.0 if task.units == "px" else 2e-3
    records = [] if records is None else records
    skipped = [] if skipped is None else skipped
    for i, item in enumerate(planned, start=1):
        record = None
        if item.skip:
            skipped.append({"seed": item.seed, "index": item.index,
                            "target": item.target.tolist(), "reason": item.skip})
        else:
            try:
                result = op.servo_to(item.target, timeout=duration, home_x=home,
                                     home_tolerance=tolerance, halt_grace=halt_grace,
                                     stall_grace=stall_grace)
            except TargetRefused as exc:
                skipped.append({"seed": item.seed, "index": item.index,
                                "target": item.target.tolist(), "reason": str(exc)})
            else:
                record = target_record(item, result, proto.distance, proto.alt_distance)
                records.append(record)
        if on_target is not None:
            on_target(i, record)
    return records, skipped


# ------------------------------------------------------------------------ resuming
#: written after every target, so an interrupted run (Ctrl-C, a lost graph, a fault on a
#: real arm) keeps what it measured; `--resume` goes on from it
PARTIAL = "evaluation.partial.json"
#: what a resumed run must share with the one it extends, or the targets' figures would
#: not be one measurement
RESUME_KEYS = ("graph", "task", "estimator", "units", "graph_settings", "protocol",
               "duration", "halt_grace", "stall_grace", "tolerance")


def load_prior(out: Path) -> tuple[Path, dict] | None:
    """The run to resume in `out`: its partial file if the last run was cut short, else its
    evaluation.json; None when there is neither. ValueError for a file that is not one."""
    import json

    for name in (PARTIAL, "evaluation.json"):
        path = out / name
        if path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}: cannot resume from it ({exc})") from None
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
                raise ValueError(f"{path}: not an `uvs evaluate` result ({SCHEMA})")
            return path, doc
    return None


def split_resumed(prior: dict, current: dict, planned: list[PlannedTarget],
                  source: str = "the run") -> tuple[list[dict], list[dict],
                                                    list[PlannedTarget]]:
    """What a resumed run keeps and what it still servoes.

    `prior`: the earlier result document; `current`: this run's values of RESUME_KEYS
    (JSON-ready). Raises ValueError naming the first difference: another setting, a
    target the plan does not hold (fewer --targets or --seeds) or one whose x* differs
    (another robot or task sampler). -> (kept records, kept skips, targets still to
    servo), each in the plan's order.
    """
    for key in RESUME_KEYS:
        if prior.get(key) != current.get(key):
            raise ValueError(f"{source} was measured with {key} {prior.get(key)!r}, this run "
                             f"has {current.get(key)!r}; resume with the same settings or "
                             "start another --out")
    position = {(p.seed, p.index): i for i, p in enumerate(planned)}
    done: dict[int, tuple[str, dict]] = {}
    for kind, items in (("record", prior.get("targets", [])),
                        ("skip", prior.get("envelope", {}).get("skipped_targets", []))):
        for item in items:
            key = (item["seed"], item["index"])
            if key not in position:
                raise ValueError(f"{source} holds seed {key[0]} target {key[1]}, which this "
                                 "run does not plan; give at least its --seeds and --targets")
            if not np.allclose(item["target"], planned[position[key]].target,
                               rtol=1e-9, atol=1e-9):
                raise ValueError(f"{source}'s seed {key[0]} target {key[1]} is not this "
                                 "run's; resume with the same robot and task")
            done[position[key]] = (kind, item)
    kept = [done[i] for i in sorted(done)]
    return ([item for kind, item in kept if kind == "record"],
            [item for kind, item in kept if kind == "skip"],
            [p for i, p in enumerate(planned) if i not in done])


def result_document(settings: dict, task_name: str, records: list[dict], skipped: list[dict],
                    meta: dict) -> dict:
    """evaluation.json: what ran (meta, the graph's settings, the protocol), the summary
    and every target."""
    proto = protocol(task_name)
    return {
        "schema": SCHEMA,
        **meta,
        "task": task_name,
        "estimator": settings["estimator"],
        "units": proto.units,
        "graph_settings": settings,
        "protocol": {"variant": proto.variant, "thresholds": list(proto.thresholds),
                     "bin_edges": list(proto.bin_edges), "distance": proto.distance,
                     "alt_distance": proto.alt_distance},
        "envelope": {"mode": settings["envelope"], "skipped": len(skipped),
                     "skipped_targets": skipped},
        "servoed": len(records),
        **summarize(task_name, records),
        "targets": records,
    }


def table_lines(doc: dict) -> list[str]:
    """The summary for people: success per bin, outcomes, halted cycles."""
    s, units = doc["success"], doc["units"]
    thr = doc["protocol"]["thresholds"]
    lines = [f"uvs evaluate: {doc['task']} with {doc['estimator']} ({doc['graph']} graph"
             + (f", {doc['load']['processes']} busy loops" if doc["load"]["processes"] else "")
             + f"): {doc['servoed']} targets servoed, {doc['envelope']['skipped']} outside "
             f"the {doc['envelope']['mode']} envelope skipped",
             f"success % averaged over thresholds {thr[0]:g}..{thr[1]:g} {units}, "
             "by initial distance:",
             f"  {'bin (' + units + ')':12s} {'n':>5s} {'success':>8s}"]
    for b in s["bins"]:
        value = "-" if b["success"] is None else f"{b['success']:.2f}"
        lines.append(f"  {b['label']:12s} {b['n']:5d} {value:>8s}")
    total = "-" if s["total"] is None else f"{s['total']:.2f}"
    lines.append(f"  {'total':12s} {s['n']:5d} {total:>8s}")
    o = doc["outcomes"]
    lines.append("outcomes: " + ", ".join(f"{k} {o[k]}" for k in OUTCOMES))
    c = doc["cycles"]
    halts = ", ".join(f"{k} {v}" for k, v in c["halted"].items()) or "none"
    share = c["estimator_timeout_share"]
    lines.append(f"cycles: {c['total']}; halted: {halts}; stalled {c['stalled']}; "
                 f"held Jacobian {c['held']}; "
                 f"estimator-timeout share "
                 + ("-" if share is None else f"{100 * share:.2f} %"))
    if doc["final_distance"]:
        f = doc["final_distance"]
        lines.append(f"final distance: median {f['median']:.4g} {units}, "
                     f"max {f['max']:.4g} {units}")
    if doc.get("out"):
        lines.append(f"wrote {doc['out']}/evaluation.json, {doc['out']}/evaluation.png")
    return lines


def plot(doc: dict, path: Path) -> None:
    """PNG: success (% of targets with final distance < t) against the threshold t, and
    the final distance of each target by outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    proto = protocol(doc["task"])
    thr = proto.threshold_values
    units = doc["units"]
    final = np.array([r["final_distance"] for r in doc["targets"]], float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    share = [100.0 * np.mean(final < t) if final.size else np.nan for t in thr]
    total = doc["success"]["total"]
    left.plot(thr, share, color="tab:blue",
              label=f"{doc['estimator']}: mean {total:.1f} %" if total is not None
              else doc["estimator"])
    left.set_xlabel(f"threshold ({units})")
    left.set_ylabel("targets with final distance < threshold (%)")
    left.set_ylim(0, 102)
    left.grid(True, alpha=0.3)
    left.legend(loc="lower right")
    colors = {"converged": "tab:green", "stalled": "tab:orange", "halted": "tab:red",
              "timeout": "tab:gray"}
    for outcome, color in colors.items():
        idx = [i for i, r in enumerate(doc["targets"]) if r["outcome"] == outcome]
        if idx:
            right.scatter(idx, np.maximum(final[idx], 1e-6), s=14, color=color,
                          label=f"{outcome} ({len(idx)})")
    right.axhspan(thr[0], thr[-1], color="tab:blue", alpha=0.08, label="threshold range")
    right.set_yscale("log")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("target")
    right.set_ylabel(f"final distance ({units})")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize="small")
    fig.suptitle(f"uvs evaluate: {doc['task']}, {doc['estimator']}, {doc['graph']} graph")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
