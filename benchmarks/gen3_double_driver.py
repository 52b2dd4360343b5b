#!/usr/bin/env python3
"""The driver node on the gen3 backend against the Kortex double, in one process, with the
double's fault injection on stdin (for ``benchmarks/faults.py``).

Runs ``uvs_driver.driver_node.main`` exactly as the installed ``driver`` executable does
(same ``--ros-args``), after putting ``src/uvs_driver/test/kortex_double`` first on
``sys.path`` so ``import kortex_api`` finds the double (see its README: no arm is
reachable where uvs is tested). The double's arm lives in this process; it integrates its
motion over wall time (time.monotonic, the same clock in every process of the machine),
so a SIGSTOP of this process freezes the driver and its Kortex threads while the arm's
record stays true: on SIGCONT the arm applies what happened meanwhile (the connection
inactivity timeout stops it at the time it would have).

Requests: one JSON object a line on stdin, ``{"id": k, "op": ..., ...}``; one JSON answer
a line on stdout, ``{"id": k, "result": ...}`` or ``{"id": k, "error": "..."}``. The
driver's log goes to stderr. Operations (``gen3_double.Gen3Double``):
``ping``; ``hang`` (name); ``drop`` (name, count); ``break`` (kind); ``fault`` (sub);
``clear`` (the injections); ``stop_reached`` (since: monotonic s -> s or null);
``events`` (since -> [[t, what], ...]); ``moving`` (-> bool); ``positions`` (-> deg).

    python benchmarks/gen3_double_driver.py --ros-args -p backend:=gen3 -p robot_ip:=10.0.0.7
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

DOUBLE_DIR = Path(__file__).resolve().parents[1] / "src" / "uvs_driver" / "test" / "kortex_double"


def _answer(arm, request: dict):
    op = request["op"]
    if op == "ping":
        return True
    if op == "hang":
        arm.hang(request["name"], request.get("reply_after"))
    elif op == "drop":
        arm.drop(request["name"], int(request["count"]))
    elif op == "break":
        arm.break_connection(request.get("kind", "TCP"))
    elif op == "fault":
        arm.inject_fault(request.get("sub", "SAFETY_THRESHOLD_REACHED"))
    elif op == "clear":
        arm.clear_injections()
    elif op == "stop_reached":
        return arm.stop_reached(float(request["since"]))
    elif op == "events":
        since = float(request["since"])
        with arm.lock:
            return [[t, what, _plain(detail)] for t, what, detail in arm.events if t >= since]
    elif op == "moving":
        return arm.moving()
    elif op == "positions":
        return arm.positions().tolist()
    else:
        raise ValueError(f"unknown op {op!r}")
    return None


def _plain(detail):
    if hasattr(detail, "tolist"):
        return detail.tolist()
    return detail if detail is None or isinstance(detail, (str, int, float)) else str(detail)


def serve(stdin, stdout, gen3_double) -> None:
    """Answer requests from ``stdin`` until it closes."""
    for line in stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            reply = {"id": request.get("id"), "result": _answer(gen3_double.current(), request)}
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def main() -> int:
    sys.path.insert(0, str(DOUBLE_DIR))
    import gen3_double

    from uvs_driver.driver_node import main as driver_main

    gen3_double.reset()
    threading.Thread(target=serve, args=(sys.stdin, sys.stdout, gen3_double), daemon=True,
                     name="fault-injection").start()
    return driver_main(sys.argv)


if __name__ == "__main__":
    raise SystemExit(main())
