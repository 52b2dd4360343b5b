#!/usr/bin/env python3
"""Live against offline on the same targets: an `uvs evaluate` result beside the offline
benchmark's rollout of the same estimator, task and targets.

    uvs evaluate --estimator tj --targets 100 --out bench/live_sp_tj
    python benchmarks/parity.py bench/live_sp_tj/evaluation.json

The offline side is `uvs benchmark`'s (uvs_core.evaluation.rollout with the paper
protocol: 200 steps of 0.05 s from the start pose, gain 1, no condition checks, joints
masked before their limits) run on exactly the targets the live run servoed (its seeds
and indices; skipped targets left out), with the estimator the live graph served: the
shipped model (or --model DIR), the first-use LL-KNN, or tj / broyden. Success is
averaged over the protocol's thresholds and binned by initial distance in both.
Prints both rows and the gap; --json one object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def offline(doc: dict, model: str | None) -> dict:
    """The offline protocol's success on the live run's targets."""
    from uvs_core.estimators import estimator_class, load_estimator, make_estimator
    from uvs_core.evaluation import binned_success, protocol, rollout
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    settings = doc["graph_settings"]
    task = make_task(doc["task"], load_robot(settings.get("robot", "gen3")))
    name = doc["estimator"].removesuffix(" (held)")
    if model:
        est = load_estimator(model, task=task, name=name)
    elif estimator_class(name).learned:
        if name == "llknn":
            from uvs_core.estimators.cache import first_use_model

            est = first_use_model(name, task, lambda p: load_estimator(p, task=task,
                                                                        name=name))
        else:
            from uvs_estimation.jacobian_service import default_model_dir

            est = load_estimator(default_model_dir() / task.name / name, task=task, name=name)
    else:
        est = make_estimator(name, task)
    proto = protocol(task.name, doc["protocol"]["variant"])
    goals = np.array([r["target"] for r in doc["targets"]], dtype=float)
    r = rollout(task, est, goals, **proto.rollout_options(task.robot.n))
    initial, final = r.distance[:, 0], r.distance[:, -1]
    out = binned_success(initial, final, proto.bin_edges, proto.threshold_values)
    out["converged"] = int(np.sum(final < 0.005 * np.sqrt(task.m / 3.0)
                                  if task.units == "m" else final < 2.0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evaluation", type=Path, help="evaluation.json of `uvs evaluate --out`")
    parser.add_argument("--model", help="model directory the live graph served (default: "
                        "the shipped one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        doc = json.loads(args.evaluation.read_text())
        live = doc["success"]
        targets = doc["targets"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"parity: cannot read {args.evaluation}: {exc}", file=sys.stderr)
        return 2
    if not targets:
        print(f"parity: {args.evaluation} holds no servoed targets", file=sys.stderr)
        return 2
    off = offline(doc, args.model)
    live_conv = sum(t["outcome"] == "converged" for t in targets)
    report = {"task": doc["task"], "estimator": doc["estimator"], "targets": len(targets),
              "live": {"total": live["total"], "bins": live["bins"], "converged": live_conv},
              "offline": {"total": off["total"], "bins": off["bins"],
                          "converged": off["converged"]},
              "gap": live["total"] - off["total"]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    labels = [b["label"] for b in off["bins"]]
    print(f"{doc['task']}, {doc['estimator']}, {len(targets)} targets: success % averaged "
          f"over thresholds, by initial distance ({doc['units']})")
    print(f"{'':<8} " + " ".join(f"{lab:>9}" for lab in labels) + f" {'total':>7} {'conv.':>6}")
    for side, res, conv in (("live", live, live_conv), ("offline", off, off["converged"])):
        cells = {b["label"]: b["success"] for b in res["bins"]}
        row = " ".join(f"{'-' if cells.get(lab) is None else format(cells[lab], '.2f'):>9}"
                       for lab in labels)
        print(f"{side:<8} {row} {res['total']:>7.2f} {conv:>6}")
    print(f"gap (live - offline): {report['gap']:+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
