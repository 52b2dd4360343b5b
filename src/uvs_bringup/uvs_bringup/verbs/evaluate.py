"""Measure servo success through a live ROS 2 graph, with the benchmark's protocol: for
seeds 0..S-1, the seed's targets (targets outside the controller's safety envelope are
skipped and counted); each target: home, reset the estimator, set the target, wait for
converged, a lasting halt (or stall, --stall-grace) or --duration. Success is averaged
over thresholds and binned by initial distance exactly as `uvs benchmark`. Only topics,
services and parameters are used: --graph inproc starts the graph of `uvs servo` in this
process, --graph external attaches to a running one (`ros2 launch uvs_bringup
servo.launch.py`, a real arm). Prints a table, or one JSON object with --json; --out DIR
writes evaluation.json and evaluation.png, and DIR/evaluation.partial.json after every
target; --resume goes on from either (an interrupted run, or more --targets/--seeds)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from uvs_bringup.verbs._common import (
    TASKS,
    command_line,
    emit,
    fail,
    number,
    positive_int,
    progress_bar,
)

GRAPHS = ("inproc", "external")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uvs_core.estimators import estimator_names

    def one_line_error(message: str):
        # Bad input is one line and exit 2, like every other refusal of this verb
        # (argparse would print the whole usage first); --help shows the usage.
        parser.exit(2, f"uvs: error: {message}\n")

    parser.error = one_line_error
    parser.add_argument("--graph", default="inproc",
                        help="inproc (default): start the graph of `uvs servo` in this "
                             "process; external: attach to a running graph")
    parser.add_argument("--task", help="single_point (inproc default), multi_point, "
                        "visual_servo; external: read from /controller (must match if given)")
    parser.add_argument("--estimator", help=", ".join(estimator_names())
                        + " (inproc default nk_tanh); external: swapped in through "
                        "/jacobian_estimator's parameter for the run, then restored")
    parser.add_argument("--robot", help="inproc: robot model every node loads, a name under "
                        "config/robots (gen3, ur5e) or a robot YAML path (default: the parameter "
                        "files', gen3); "
                        "external: read from /controller (must match if given)")
    parser.add_argument("--model", type=Path, help="inproc: model directory of the learned "
                        "estimator (default: the shipped one)")
    parser.add_argument("--config", type=Path, help="inproc: folder of parameter YAML files "
                        "(default: the installed uvs_bringup config)")
    parser.add_argument("--seeds", type=positive_int, default=1,
                        help="target seeds 0..S-1 (default 1; the paper 10)")
    parser.add_argument("--targets", type=positive_int, default=100,
                        help="targets per seed (default 100; the benchmark 110)")
    parser.add_argument("--duration", type=number(float, 0.0), default=10.0,
                        help="time limit per target, s (default 10 = the benchmark's 200 "
                             "steps at 20 Hz)")
    parser.add_argument("--halt-grace", type=number(float, 0.0, strict=False), default=1.0,
                        help="a halt ends the target only when it lasts this long, s "
                             "(default 1)")
    parser.add_argument("--stall-grace", type=number(float, 0.0, strict=False),
                        default=math.inf,
                        help="a stall ends the target only when it lasts this long, s "
                             "(default: never, as the benchmark, which has no stall rule; "
                             "the controller goes on commanding while STALLED; 0: at the "
                             "first STALLED, as `uvs servo`)")
    parser.add_argument("--tolerance", type=number(float, 0.0),
                        help="set /controller's convergence_tolerance for the run (task "
                             "units; default: leave the graph's, 5 mm per point / 2 px)")
    parser.add_argument("--wait", type=number(float, 0.0), default=10.0,
                        help="external: how long to wait for the graph to appear, s "
                             "(default 10)")
    parser.add_argument("--load", type=number(int, 0, strict=False), default=0,
                        help="run N busy-loop processes beside the graph for the run "
                             "(default 0)")
    parser.add_argument("--out", type=Path, help="write DIR/evaluation.json and "
                        "DIR/evaluation.png")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing DIR/evaluation.json")
    parser.add_argument("--resume", action="store_true",
                        help="go on from DIR's earlier run (an interrupted one's "
                             "evaluation.partial.json, else evaluation.json): servo only the "
                             "targets it lacks, e.g. after Ctrl-C or with more --targets; "
                             "its settings must be this run's")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def _check(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot run, or None."""
    from uvs_bringup.graph import estimator_choices

    if args.graph not in GRAPHS:
        return f"--graph {args.graph!r}: choose inproc or external"
    if args.task is not None and args.task not in TASKS:
        return f"unknown task {args.task!r}; choose from {', '.join(TASKS)}"
    names = estimator_choices()
    if args.estimator is not None and args.estimator not in names:
        return f"unknown estimator {args.estimator!r}; choose from {', '.join(names)}"
    if args.graph == "external":
        for opt in ("model", "config"):
            if getattr(args, opt) is not None:
                return f"--{opt} applies to --graph inproc; an external graph has its own"
    if args.config is not None and not args.config.is_dir():
        return f"--config {args.config}: no such folder"
    if args.robot is not None:
        from uvs_bringup.graph import check_robot

        try:
            check_robot(args.robot)
        except ValueError as exc:
            return str(exc)
    if args.model is not None and not args.model.is_dir():
        return f"--model {args.model}: no such model directory"
    if args.resume and args.out is None:
        return "--resume needs --out DIR, the folder of the run to go on from"
    if args.resume and args.overwrite:
        return "--resume keeps DIR's targets and --overwrite replaces them; choose one"
    if args.out is not None and not (args.overwrite or args.resume):
        for name in ("evaluation.json", "evaluation.partial.json"):
            if (args.out / name).exists():
                return (f"{args.out / name} exists; pass --resume to go on from it or "
                        "--overwrite to replace it")
    return None


def _open_graph(args: argparse.Namespace):
    from uvs_bringup.graph import GraphOptions
    from uvs_bringup.runner import AttachedGraph, ServoGraph

    if args.graph == "external":
        return AttachedGraph(wait=args.wait)
    estimator = args.estimator or "nk_tanh"
    options = GraphOptions(backend="sim", robot=args.robot,
                           task=args.task or "single_point", estimator=estimator, camera="sim")
    extra = {}
    if args.model is not None:
        extra = {"jacobian_estimator": {f"models.{estimator}": str(args.model.resolve())}}
    return ServoGraph(options, config=args.config, extra_parameters=extra)


def run(args: argparse.Namespace) -> int:
    from uvs_bringup.benchmark_report import jsonable, machine_info, write_json
    from uvs_bringup.evaluate import (
        PARTIAL,
        RESUME_KEYS,
        BusyLoad,
        envelope_of,
        evaluate,
        graph_settings,
        load_prior,
        plan_targets,
        plot,
        result_document,
        split_resumed,
        table_lines,
    )
    from uvs_bringup.runner import GraphError
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    problem = _check(args)
    if problem:
        return fail(problem)
    prior = None
    if args.resume:
        try:
            prior = load_prior(args.out)
        except ValueError as exc:
            return fail(str(exc))
        if prior is None:
            print(f"uvs: {args.out} holds no earlier run; starting one", file=sys.stderr)
    partial = args.out / PARTIAL if args.out is not None else None
    wrote = []                  # this run's targets written to `partial`
    machine = machine_info()
    started = time.monotonic()
    restore: list[tuple[str, str, object]] = []     # (node, parameter, value) after the run
    try:
        with BusyLoad(args.load) as load, _open_graph(args) as graph:
            op = graph.operator
            try:
                settings = graph_settings(op)
                if args.task is not None and settings["task"] != args.task:
                    return fail(f"the graph runs task {settings['task']}, not {args.task}")
                if args.robot is not None and args.graph == "external":
                    from uvs_bringup.graph import check_robot

                    wanted = check_robot(args.robot)[1]
                    running = load_robot(settings["robot"]).name
                    if wanted != running:
                        return fail(f"the graph runs robot {running}, not {wanted}")
                changes = []
                if args.graph == "external" and args.estimator is not None \
                        and args.estimator != settings["estimator"]:
                    changes.append(("jacobian_estimator", "estimator", args.estimator))
                if args.tolerance is not None:
                    changes.append(("controller", "convergence_tolerance",
                                    float(args.tolerance)))
                for node, name, value in changes:
                    op.set_parameter(node, name, value)
                    if args.graph == "external":
                        restore.append((node, name, settings[name]))
                settings = graph_settings(op)
                task = make_task(settings["task"], load_robot(settings["robot"]))
                planned = plan_targets(task, args.seeds, args.targets,
                                       envelope_of(task.robot, settings["envelope"]))
                records, skipped, todo = [], [], planned
                if prior is not None:
                    current = jsonable(result_document(
                        settings, settings["task"], [], [],
                        _meta(args, [], {}, 0.0, 0, machine)))
                    records, skipped, todo = split_resumed(
                        prior[1], {k: current.get(k) for k in RESUME_KEYS}, planned,
                        source=str(prior[0]))
                    print(f"uvs: resuming {prior[0]}: {len(records) + len(skipped)} of "
                          f"{len(planned)} targets done, {len(todo)} to servo",
                          file=sys.stderr)
                runs = _runs_of(prior[1]) if prior is not None else []
                kept = len(records)

                def keep(i: int, _record) -> None:
                    # after every target, the run so far: --resume goes on from it
                    if partial is not None:
                        partial.parent.mkdir(parents=True, exist_ok=True)
                        write_json(partial, result_document(
                            settings, settings["task"], records, skipped,
                            _meta(args, runs, {"processes": args.load},
                                  time.monotonic() - started, len(records) - kept,
                                  machine)))
                        wrote.append(i)
                    update(i)

                with progress_bar(f"evaluate {settings['estimator']}", len(todo),
                                  unit="target") as update:
                    try:
                        evaluate(op, task, todo, args.duration, args.halt_grace,
                                 args.stall_grace, on_target=keep,
                                 records=records, skipped=skipped)
                    except KeyboardInterrupt:
                        if wrote:
                            print(f"uvs: interrupted; the targets measured so far are in "
                                  f"{partial}: run the same command with --resume to go on",
                                  file=sys.stderr)
                        raise
            finally:
                for node, name, value in reversed(restore):
                    try:
                        op.set_parameter(node, name, value)
                    except GraphError as exc:
                        print(f"uvs: warning: could not restore {name}: {exc}",
                              file=sys.stderr)
            load_average = list(os.getloadavg())
            load_pids = load.pids
    except (GraphError, ValueError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if wrote:
            message += f" (the targets measured so far are in {partial}: --resume goes on)"
        return fail(message)

    meta = _meta(args, runs, {"processes": args.load, "pids": load_pids,
                              "load_average": load_average}, time.monotonic() - started,
                 len(records) - kept, machine)
    meta["restored"] = [name for _, name, _ in restore]
    doc = jsonable(result_document(settings, settings["task"], records, skipped, meta))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "evaluation.json", doc)
        plot(doc, args.out / "evaluation.png")
        partial.unlink(missing_ok=True)
    emit(doc, args.json, table_lines(doc))
    return 0


def _runs_of(prior: dict) -> list[dict]:
    """The earlier runs a resumed result is made of (a result before --resume existed
    is one run)."""
    if prior.get("runs"):
        return list(prior["runs"])
    return [{key: prior.get(key) for key in ("command", "seconds", "load", "machine")}
            | {"servoed": prior.get("servoed")}]


def _meta(args: argparse.Namespace, runs: list[dict], load: dict, seconds: float,
          servoed: int, machine: dict) -> dict:
    """evaluation.json's account of what ran: this run's command, load and machine; when
    resumed, `runs` (the runs before it and this one, each with its command, seconds,
    load, machine and targets servoed) and seconds over all of them."""
    this = {"command": command_line("evaluate", "uvs evaluate"), "seconds": round(seconds, 1),
            "load": load, "machine": machine, "servoed": servoed}
    meta = {
        "graph": args.graph,
        "command": command_line("evaluate", "uvs evaluate"),
        "seeds": list(range(args.seeds)),
        "targets_per_seed": args.targets,
        "duration": args.duration,
        "halt_grace": args.halt_grace,
        "stall_grace": args.stall_grace,
        "tolerance": args.tolerance,
        "restored": [],
        "load": load,
        "machine": machine,
        "seconds": round(seconds + sum(r.get("seconds") or 0.0 for r in runs), 1),
        "out": str(args.out) if args.out is not None else None,
    }
    if runs:
        meta["runs"] = [*runs, this]
    return meta
