"""Benchmark a grid of estimator parameters x seeds x robots: each grid point is one
benchmark job (train, servo, its usual files under OUT/points/<id>/), run in local
processes (--workers, the default) or on Ray (--executor ray [--address ADDR]); the
points are merged into OUT/sweep.json, OUT/sweep.md and OUT/fig_sweep.png (success
against the swept parameter). Grammar and examples: docs/sweeps.md.

  uvs sweep --task single_point --estimators nk_tanh --grid lr=1e-3,3e-3 --seeds 0,1
            --robots gen3,ur5e --quick --executor ray --out sweep_lr"""

from __future__ import annotations

import argparse
from pathlib import Path

from uvs_bringup.verbs._common import TASKS, command_line, emit, fail, log, positive_int
from uvs_bringup.verbs.benchmark import _estimator_list, add_executor_arguments, check_executor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path,
                        help="a YAML sweep spec (keys as the options below, grid: "
                             "{KEY: [values]}); options given here override it")
    parser.add_argument("--task", choices=TASKS, help="task (default single_point)")
    parser.add_argument("--estimators", "--estimator", dest="estimators",
                        help="comma-separated estimators (e.g. nk_tanh or nj,nk_tanh)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="swept estimator parameter: KEY (every estimator taking it) or "
                             "EST.KEY, values comma-separated JSON, e.g. lr=1e-3,3e-3 "
                             "(repeatable: the grid is the product)")
    parser.add_argument("--seeds", help="data and training seeds, e.g. 0,1 or 0-3 "
                                        "(default 0)")
    parser.add_argument("--robots", help="comma-separated robots (default gen3)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", default=None,
                        help="each point a --quick benchmark (little data, few epochs, "
                             "20 targets x 2 target seeds)")
    parser.add_argument("--targets", type=positive_int, help="targets per target seed")
    parser.add_argument("--target-seeds", type=positive_int,
                        help="target seeds 0..S-1 of each point (the benchmark's --seeds)")
    parser.add_argument("--samples", type=positive_int, help="babbling samples per point")
    parser.add_argument("--epochs", type=positive_int, help="training epochs")
    parser.add_argument("--steps", type=positive_int, help="control steps per trajectory")
    parser.add_argument("--protocol", choices=("paper", "design"),
                        help="benchmark protocol variant (default paper)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="parallel points: local processes, or the CPUs of a local Ray "
                             "instance (default 1)")
    add_executor_arguments(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results in an existing output directory")
    parser.add_argument("--json", action="store_true",
                        help="print sweep.json's content as one JSON object last")


def run(args: argparse.Namespace) -> int:
    from uvs_bringup.benchmark import jsonable
    from uvs_bringup.executors import ExecutorError
    from uvs_bringup.sweep import SweepSpec, load_spec_file, parse_grid, parse_seeds, run_sweep
    from uvs_core.dataset import DatasetError

    if (args.out / "sweep.json").exists() and not args.overwrite:
        return fail(f"{args.out / 'sweep.json'} exists; pass --overwrite to replace it")
    problem = check_executor(args)
    if problem:
        return fail(problem)
    try:
        fields = load_spec_file(args.spec) if args.spec is not None else {}
        if args.grid:
            fields["grid"] = parse_grid(args.grid)
        if args.seeds is not None:
            fields["seeds"] = parse_seeds(args.seeds)
        if args.estimators is not None:
            fields["estimators"] = _estimator_list(args.estimators)
        elif fields.get("estimators"):
            fields["estimators"] = _estimator_list(",".join(fields["estimators"]))
        else:
            raise ValueError("--estimators (or estimators: in --spec) is required")
        if args.robots is not None:
            fields["robots"] = tuple(r.strip() for r in args.robots.split(",") if r.strip())
        for opt in ("task", "quick", "targets", "target_seeds", "samples", "epochs", "steps",
                    "protocol"):
            if getattr(args, opt) is not None:
                fields[opt] = getattr(args, opt)
        fields.setdefault("task", "single_point")
        if fields["task"] not in TASKS:
            raise ValueError(f"task {fields['task']!r}: choose from {', '.join(TASKS)}")
        spec = SweepSpec(out=args.out, executor=args.executor, workers=args.workers,
                         address=args.address, command=command_line("sweep", "uvs sweep"),
                         **fields)
    except (ValueError, argparse.ArgumentTypeError, OSError) as exc:
        return fail(str(exc))

    try:
        results = run_sweep(spec, show_progress=True, log=log)
    except (ValueError, DatasetError, OSError, ExecutorError) as exc:
        return fail(str(exc))
    lines = [f"{results['task']} sweep: success % per point"]
    for r in results["points"]:
        lines.append(f"  {r['id']:40s} {r['success']:6.2f}")
    lines.append(f"total {results['timing']['total_seconds']:.1f} s; wrote "
                 f"{args.out / 'sweep.json'}, {args.out / 'sweep.md'}, "
                 f"{args.out / 'fig_sweep.png'}")
    emit(jsonable(results), args.json, lines)
    return 0
