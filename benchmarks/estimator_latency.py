#!/usr/bin/env python3
"""Latency of one Jacobian estimate, in process and through the jacobian_estimator service.

Gen3, single_point task (J: 3x7). For each estimator:

- in process: ``Estimator.estimate(qa)`` for random joint configurations
  within the limits, median and p99 in microseconds;
- through the service: the jacobian_estimator node runs in a second process
  (``python -m uvs_estimation.estimator_node``), the estimator is selected by
  setting its ``estimator`` parameter (SetParameters service, as ``ros2 param
  set`` does), and EstimateJacobian round trips (q and x given, as the
  controller sends them) alternate call by call with round trips to a bare
  std_srvs/Trigger server in a third process, so both see the same machine
  load; the ratio service/bare is reported per estimator.

Targets: p99 under 200 us in process for every estimator; the service round
trip within 1.5x the bare one (medians). This is a measurement: it exits 0
whatever the numbers, and 1 only when something fails to run.

Learned models come from ``models/single_point/<name>`` when present; else they
are trained on the fly for a single epoch on a small babbled dataset, which is
enough here: an estimate's latency depends on the model's size, not its quality.

Run from the repository root after ``make setup`` and ``. ./activate``:
    python benchmarks/estimator_latency.py [--calls 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# DDS discovery reaches every process on the machine: keep to localhost and a
# domain of our own, before rclpy is imported (here and in the children).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(200, 230)))

import numpy as np  # noqa: E402

from uvs_core.paths import installed_dir  # noqa: E402

TASK = "single_point"
ROBOT = "gen3"
ALL_ESTIMATORS = ("tj", "broyden", "llknn", "nj", "binj", "nk_tanh", "nk_relu")
IN_PROCESS_P99_TARGET_US = 200.0
SERVICE_RATIO_TARGET = 1.5
START_TIMEOUT = 60.0  # s for the server processes to come up
CALL_TIMEOUT = 10.0  # s for any single call


class BenchmarkError(RuntimeError):
    """Something needed for the measurement failed to run."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stats(samples_ns) -> dict:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()), "calls": int(us.size)}


# ---------------------------------------------------------------- models

def prepare_models(task, names, model_root: Path, scratch: Path, samples: int,
                   llknn_samples: int) -> dict:
    """Model directory per learned estimator: shipped when present, else trained now.

    Networks get one epoch on ``samples`` babbled samples. LL-KNN's model is
    its data and its latency grows with it (a deeper KD-tree, farther
    neighbours), so it gets ``llknn_samples``, the paper's 100,000 by default.
    Returns name -> {"path", "source": "shipped" | "trained", "samples"}.
    """
    from uvs_core.babble import babble
    from uvs_estimation.jacobian_service import needs_model

    models, datasets = {}, {}
    for name in names:
        if not needs_model(name):
            continue
        shipped = model_root / TASK / name
        if (shipped / "metadata.json").is_file():
            meta = json.loads((shipped / "metadata.json").read_text())
            models[name] = {"path": str(shipped), "source": "shipped",
                            "samples": meta.get("samples")}
            continue
        count = llknn_samples if name == "llknn" else samples
        if count not in datasets:
            datasets[count] = babble(task, count, seed=0)
        from uvs_learning.training import train_model

        t0 = time.perf_counter()
        train_model(name, task, datasets[count], scratch / name, epochs=1)
        _say(f"  trained {name} on {count} babbled samples"
             + ("" if name == "llknn" else ", 1 epoch")
             + f" ({time.perf_counter() - t0:.1f} s)")
        models[name] = {"path": str(scratch / name), "source": "trained", "samples": count}
    return models


# ------------------------------------------------------------- in process

def measure_in_process(task, names, models, calls: int, warmup: int, seed: int) -> dict:
    from uvs_estimation.jacobian_service import ModelConfig, build_estimator

    config = ModelConfig(model_dir=installed_dir("models"),
                         models={n: m["path"] for n, m in models.items()})
    rng = np.random.default_rng(seed)
    qa = task.select(task.robot.sample(rng, 1024))
    results = {}
    for name in names:
        estimator, _ = build_estimator(name, task, config)
        for i in range(warmup):
            estimator.estimate(qa[i % len(qa)])
        times = np.empty(calls, dtype=np.int64)
        clock = time.perf_counter_ns
        for i in range(calls):
            q = qa[i % len(qa)]
            t0 = clock()
            estimator.estimate(q)
            times[i] = clock() - t0
        results[name] = _stats(times)
        _say(f"  in process {name:8s} median {results[name]['median_us']:8.1f} us  "
             f"p99 {results[name]['p99_us']:8.1f} us")
    return results


# -------------------------------------------------------------- service

def serve_trigger(service_name: str) -> int:
    """A bare std_srvs/Trigger server (the reference round trip), until interrupted."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from std_srvs.srv import Trigger

    def answer(request, response):
        response.success = True
        return response

    rclpy.init()
    node = None
    try:
        node = rclpy.create_node("bare_trigger_server")
        node.create_service(Trigger, service_name, answer)
        rclpy.spin(node, executor=SingleThreadedExecutor())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _spawn(args, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")  # closed with the process, in _stop
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    proc.log = log  # type: ignore[attr-defined]
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C and ros2 launch stop a node
        try:
            proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10.0)
    proc.log.close()


def _tail(proc) -> str:
    try:
        return Path(proc.log_path).read_text()[-3000:]
    except OSError:
        return ""


def measure_service(task, names, models, calls: int, warmup: int, seed: int,
                    scratch: Path) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from std_srvs.srv import Trigger

    from uvs_interfaces.srv import EstimateJacobian

    namespace = f"/uvs_latency_{os.getpid()}"
    node_args = [sys.executable, "-m", "uvs_estimation.estimator_node", "--ros-args",
                 "-r", f"__ns:={namespace}", "-p", f"task:={TASK}", "-p", f"robot:={ROBOT}",
                 "--log-level", "warn"]
    for name, model in models.items():
        node_args += ["-p", f"models.{name}:={model['path']}"]
    server = _spawn(node_args, scratch / "jacobian_estimator.log")
    bare = _spawn([sys.executable, str(Path(__file__).resolve()), "--serve-trigger",
                   f"{namespace}/bare_trigger"], scratch / "bare_trigger.log")

    rclpy.init()
    node = rclpy.create_node("estimator_latency_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        estimate = node.create_client(EstimateJacobian, f"{namespace}/estimate_jacobian")
        trigger = node.create_client(Trigger, f"{namespace}/bare_trigger")
        params = AsyncParameterClient(node, f"{namespace}/jacobian_estimator")
        deadline = time.monotonic() + START_TIMEOUT
        for what, ready in (("estimate_jacobian", lambda: estimate.service_is_ready()),
                            ("bare_trigger", lambda: trigger.service_is_ready()),
                            ("parameter services", lambda: params.services_are_ready())):
            while not ready():
                for proc in (server, bare):
                    if proc.poll() is not None:
                        raise BenchmarkError(
                            f"{proc.args[1:3]} exited with {proc.returncode}:\n{_tail(proc)}")
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{what} not up within {START_TIMEOUT} s:\n"
                                         f"{_tail(server)}")
                executor.spin_once(timeout_sec=0.05)

        def wait(future, what):
            executor.spin_until_future_complete(future, timeout_sec=CALL_TIMEOUT)
            if not future.done():
                raise BenchmarkError(f"no answer to {what} within {CALL_TIMEOUT} s")
            return future.result()

        rng = np.random.default_rng(seed)
        q = task.robot.sample(rng, 1024)
        x = task.x_from_q(q)
        requests = [EstimateJacobian.Request(joint_positions=qi.tolist(),
                                             task_position=xi.tolist())
                    for qi, xi in zip(q, x)]
        ping = Trigger.Request()
        clock = time.perf_counter_ns

        results = {}
        for name in names:
            result = wait(params.set_parameters([Parameter("estimator", value=name)]),
                          f"setting estimator={name}").results[0]
            if not result.successful:
                raise BenchmarkError(f"the node refused estimator {name!r}: {result.reason}")
            service_ns = np.empty(calls, dtype=np.int64)
            bare_ns = np.empty(calls, dtype=np.int64)
            for i in range(-warmup, calls):
                request = requests[i % len(requests)]
                t0 = clock()
                response = wait(estimate.call_async(request), "estimate_jacobian")
                t1 = clock()
                wait(trigger.call_async(ping), "bare_trigger")
                t2 = clock()
                if not response.success or response.estimator != name:
                    raise BenchmarkError(f"{name}: bad answer: {response.estimator!r} "
                                         f"{response.message}")
                if i >= 0:
                    service_ns[i], bare_ns[i] = t1 - t0, t2 - t1
            svc, ref = _stats(service_ns), _stats(bare_ns)
            results[name] = {"service": svc, "bare": ref,
                             # paired per call: robust to load drifting over the run
                             "extra_median_us": float(np.median(service_ns - bare_ns)) / 1e3,
                             "ratio_median": svc["median_us"] / ref["median_us"],
                             "ratio_p99": svc["p99_us"] / ref["p99_us"]}
            _say(f"  service    {name:8s} median {svc['median_us']:8.1f} us  "
                 f"p99 {svc['p99_us']:8.1f} us  (bare {ref['median_us']:.1f} / "
                 f"{ref['p99_us']:.1f} us)")
        return results
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        _stop(server)
        _stop(bare)


# ----------------------------------------------------------------- report

def verdict(report: dict) -> dict:
    slow = [n for n, r in report["in_process"].items() if r["p99_us"] >= IN_PROCESS_P99_TARGET_US]
    out = {"in_process_p99_ok": not slow, "in_process_p99_over": slow}
    if report.get("service"):
        over = [n for n, r in report["service"].items()
                if r["ratio_median"] > SERVICE_RATIO_TARGET]
        out.update(service_ratio_ok=not over, service_ratio_over=over)
    return out


def print_table(report: dict) -> None:
    service = report.get("service") or {}
    header = f"{'estimator':10s} {'in-process median':>17s} {'p99 [us]':>9s}"
    if service:
        header += (f" | {'service median':>14s} {'p99 [us]':>9s} | {'bare median':>11s} "
                   f"{'p99 [us]':>9s} | {'service/bare':>12s} {'extra [us]':>10s}")
    print(header)
    print("-" * len(header))
    for name, inp in report["in_process"].items():
        line = f"{name:10s} {inp['median_us']:17.1f} {inp['p99_us']:9.1f}"
        if name in service:
            s = service[name]
            line += (f" | {s['service']['median_us']:14.1f} {s['service']['p99_us']:9.1f} | "
                     f"{s['bare']['median_us']:11.1f} {s['bare']['p99_us']:9.1f} | "
                     f"{s['ratio_median']:11.2f}x {s['extra_median_us']:10.1f}")
        print(line)
    print()
    for name, model in report["models"].items():
        if model["source"] == "shipped":
            note = "shipped"
        elif name == "llknn":
            note = (f"made on the fly from {model['samples']} babbled samples; its latency "
                    "grows with the number of samples")
        else:
            note = (f"trained on the fly, 1 epoch on {model['samples']} babbled samples; "
                    "latency does not depend on model quality")
        print(f"model {name}: {model['path']} ({note})")
    cfg = report["config"]
    print(f"{cfg['calls']} calls per estimator after {cfg['warmup']} warm-up, at joint "
          f"configurations drawn uniformly within the limits; Gen3 {TASK}; "
          f"ROS_DOMAIN_ID={cfg['ros_domain_id']}; "
          "service: node and bare Trigger server each in its own process, "
          "SingleThreadedExecutor, calls alternating; extra: median of the per-call "
          "difference service - bare")
    v = report["verdict"]
    parts = ["in-process p99 < 200 us: " + (
        "PASS (all)" if v["in_process_p99_ok"] else
        "FAIL (" + ", ".join(f"{n} {report['in_process'][n]['p99_us']:.0f} us"
                             for n in v["in_process_p99_over"]) + ")")]
    if "service_ratio_ok" in v:
        parts.append("service within 1.5x bare (median): " + (
            "PASS (all)" if v["service_ratio_ok"] else
            "FAIL (" + ", ".join(f"{n} {service[n]['ratio_median']:.2f}x"
                                 for n in v["service_ratio_over"]) + ")"))
    print("verdict: " + "; ".join(parts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Latency of one Jacobian estimate per estimator (Gen3 single_point): "
                    "in process, and through the jacobian_estimator service (two processes) "
                    "beside a bare std_srvs/Trigger round trip.")
    parser.add_argument("--calls", type=int, default=2000,
                        help="measured calls per estimator and path (default 2000)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="unmeasured calls first (default 100)")
    parser.add_argument("--estimators", nargs="+", default=list(ALL_ESTIMATORS),
                        metavar="NAME", help=f"estimators to measure (default: all: "
                                             f"{' '.join(ALL_ESTIMATORS)})")
    parser.add_argument("--models", type=Path, default=installed_dir("models"),
                        help="model root holding single_point/<name> (default: models/)")
    parser.add_argument("--samples", type=int, default=5000,
                        help="babbled samples for networks trained on the fly (default 5000)")
    parser.add_argument("--llknn-samples", type=int, default=100_000,
                        help="babbled samples of an LL-KNN model made on the fly "
                             "(default 100000, the paper's single-point dataset)")
    parser.add_argument("--no-service", action="store_true",
                        help="in-process measurement only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON instead of a table")
    parser.add_argument("--serve-trigger", metavar="SERVICE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_trigger:
        return serve_trigger(args.serve_trigger)
    if args.calls < 1 or args.warmup < 0:
        parser.error("--calls must be >= 1 and --warmup >= 0")
    unknown = [n for n in args.estimators if n not in ALL_ESTIMATORS]
    if unknown:
        parser.error(f"unknown estimator(s) {unknown}; choose from {' '.join(ALL_ESTIMATORS)}")

    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    task = make_task(TASK, load_robot(ROBOT))
    report = {"config": {"calls": args.calls, "warmup": args.warmup, "task": TASK,
                         "robot": ROBOT, "ros_domain_id": os.environ["ROS_DOMAIN_ID"],
                         "cpus": os.cpu_count()}}
    try:
        with tempfile.TemporaryDirectory(prefix="uvs-latency-") as tmp:
            scratch = Path(tmp)
            _say("models:")
            report["models"] = prepare_models(task, args.estimators, args.models, scratch,
                                              args.samples, args.llknn_samples)
            _say("in process:")
            report["in_process"] = measure_in_process(task, args.estimators, report["models"],
                                                      args.calls, args.warmup, args.seed)
            if not args.no_service:
                _say("through the service:")
                report["service"] = measure_service(task, args.estimators, report["models"],
                                                    args.calls, args.warmup, args.seed,
                                                    scratch)
    except BenchmarkError as exc:
        _say(f"estimator_latency: {exc}")
        return 1
    report["verdict"] = verdict(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
