#!/usr/bin/env python3
"""Start pose and joint-limit policy of the live controller, measured in the batched sim.

The controller node's defaults (config/controller.yaml: start pose, joint_limit_policy,
nullspace_gain) were chosen with this: the true Jacobian (tj) servoes ``--targets``
random reachable targets (Task.sample_targets, seed ``--seed``) with the controller's
own control law (uvs_core.control.control_step: MoveIt Servo condition thresholds by
task, 0.05 rad joint-limit margin, 1.22 rad/s cap, gain 1) for ``--steps`` steps of
0.05 s, from two start poses (the straight q = 0 and the paper's start, gen3.yaml's
task home), under each joint-limit policy and null-space gain. tj isolates the
controller: whatever misses here, every estimator misses too.

Prints the share converged (within the controller's tolerance, 5 mm per point) and the
reason of the rest at the end: joint-limit halts, singularity halts, and "moving" (no
halt; still on its way when the steps ran out, or stalled).

    python benchmarks/limit_policy.py                       # single_point, 200 targets
    python benchmarks/limit_policy.py --task multi_point --json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from uvs_core.control import (
    HALT_JOINT_LIMIT,
    HALT_NONE,
    HALT_SINGULAR,
    ControlConfig,
    ServoMonitor,
    control_step,
    task_rank,
)
from uvs_core.robot import load_robot
from uvs_core.sim import Simulation
from uvs_core.tasks import make_task

STARTS = {"straight": (0.0,) * 7, "paper": (0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0)}


def servo(task, targets: np.ndarray, start, config: ControlConfig, steps: int,
          stall: bool) -> dict:
    """tj servo of every target from `start`; outcome counts (percent of targets). With
    `stall`, a trajectory stops for good when the controller's stall rule fires (error
    down by less than 5 % in 20 cycles), as the node does."""
    b = len(targets)
    lower, upper = task.robot.lower[task.active], task.robot.upper[task.active]
    sim = Simulation(task, dt=config.dt, batch=b, velocity_limits=1.22)
    x = sim.reset(np.asarray(start, dtype=float))
    tolerance = 0.005 * (task.m // 3)
    monitor = ServoMonitor(tolerance=tolerance, batch=b)
    prev = np.full(b, np.nan)
    reason = np.zeros(b, dtype=int)
    stopped = np.zeros(b, dtype=bool)
    for _ in range(steps):
        qdot, info = control_step(task.jacobian(sim.qa), x, targets, sim.qa, config, lower,
                                  upper, prev_condition=prev, rank=task_rank(task),
                                  condition_transform=task.condition_transform)
        prev = info.condition
        converged, stalled = monitor.update(info.error_norm)
        if stall:
            stopped |= stalled & ~converged
        qdot[converged | stopped] = 0.0
        reason = np.where(converged | stopped, HALT_NONE, info.reason)
        x = sim.step(qdot).x
    final = np.linalg.norm(targets - x, axis=1)
    done = final < tolerance
    return {"converged": 100.0 * np.mean(done),
            "joint_limit_halt": 100.0 * np.mean(~done & (reason == HALT_JOINT_LIMIT)),
            "singular_halt": 100.0 * np.mean(~done & (reason == HALT_SINGULAR)),
            "moving": 100.0 * np.mean(~done & ~stopped & (reason == HALT_NONE)),
            "stalled": 100.0 * np.mean(~done & stopped)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("single_point", "multi_point"),
                        default="single_point")
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200, help="0.05 s steps (200 = 10 s)")
    parser.add_argument("--gains", default="0,3", help="null-space gains, comma-separated")
    parser.add_argument("--lookaheads", default="0,0.6",
                        help="joint-limit look-aheads of the lock policy, s (0 = one step)")
    parser.add_argument("--no-stall", dest="stall", action="store_false",
                        help="do not stop trajectories at the controller's stall rule")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.targets < 1 or args.steps < 1:
        print("error: --targets and --steps must be >= 1", file=sys.stderr)
        return 2
    try:
        gains = [float(g) for g in args.gains.split(",")]
        lookaheads = [float(v) for v in args.lookaheads.split(",")]
    except ValueError:
        print("error: --gains and --lookaheads must be comma-separated numbers",
              file=sys.stderr)
        return 2

    task = make_task(args.task, load_robot("gen3"))
    targets = task.sample_targets(np.random.default_rng(args.seed), args.targets)
    rows = []
    for start_name, start in STARTS.items():
        for policy, lookahead in [("halt", 0.0)] + [("lock", v) for v in lookaheads]:
            for gain in gains:
                config = ControlConfig.for_task(task, joint_limit_policy=policy,
                                                nullspace_gain=gain, limit_lookahead=lookahead)
                rows.append({"start": start_name, "policy": policy, "lookahead": lookahead,
                             "nullspace_gain": gain,
                             **servo(task, targets, start, config, args.steps, args.stall)})
    if args.json:
        print(json.dumps({"task": args.task, "targets": args.targets, "seed": args.seed,
                          "steps": args.steps, "rows": rows}, indent=2))
        return 0
    print(f"{args.task}: tj, {args.targets} targets (seed {args.seed}), {args.steps} steps "
          f"of 0.05 s; % of targets")
    print(f"{'start':<9} {'policy':<6} {'ahead s':>7} {'ns gain':>7} {'converged':>9} "
          f"{'limit':>6} {'singular':>8} {'moving':>6} {'stalled':>7}")
    for r in rows:
        print(f"{r['start']:<9} {r['policy']:<6} {r['lookahead']:>7g} {r['nullspace_gain']:>7g} "
              f"{r['converged']:>9.1f} {r['joint_limit_halt']:>6.1f} "
              f"{r['singular_halt']:>8.1f} {r['moving']:>6.1f} {r['stalled']:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
