"""benchmarks/parity.py: the controller's law with the paper's rules is the offline rollout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_decompose_ends_at_the_offline_rollout_on_the_same_targets():
    """--decompose replaces the controller's rules by the paper's one at a time; the last
    rung (per-joint clip, no condition check, no margin, no stop, the 0.5 s joint mask)
    runs the offline protocol's rules in the controller's code, so it must score exactly
    what `uvs benchmark`'s rollout scores, bin by bin; the first rung is the controller."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "parity.py"), "--task",
                          "single_point", "--estimator", "tj", "--targets", "30",
                          "--decompose", "--json"],
                         capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(out.stdout)
    offline, last = report["offline"], report["+ joint mask, 0.5 s"]
    assert report["targets"] == 30
    assert last["total"] == offline["total"] and last["converged"] == offline["converged"]
    assert [b["success"] for b in last["bins"]] == [b["success"] for b in offline["bins"]]
    # the controller's own rules score differently from the paper's on these targets,
    # so the ladder has a gap to walk, and every rung is reported
    assert report["controller"]["total"] != offline["total"]
    assert {"+ per-joint speed clip", "+ no condition check", "+ no limit margin",
            "+ no stop at tolerance"} <= set(report)
