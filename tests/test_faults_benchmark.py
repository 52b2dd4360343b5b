"""benchmarks/faults.py --quick: the driver process over DDS stops the arm within the bound.

Runs the quick subset (the controller killed and a NaN command on the sim and on the
Kortex double, a broken socket on the double) and asserts the figures of its JSON.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "faults.py"), "--json",
         "--quick"],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[faults]" in result.stderr          # progress on stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_fault_stops_the_arm_within_its_bound(report):
    rows = {(r["backend"], r["fault"]): r for r in report["rows"]}
    assert set(rows) == {("sim", "controller_killed"), ("sim", "nan_command"),
                         ("gen3", "controller_killed"), ("gen3", "nan_command"),
                         ("gen3", "broken_socket")}
    assert report["target_bound_s"] == pytest.approx(2 / 20.0 + 0.1)
    for key, row in rows.items():
        assert row["bound_s"] == pytest.approx(0.2), key
        assert row["stop_s"] is not None and 0.0 <= row["stop_s"] <= row["bound_s"], key
        assert row["state_kept_publishing"] and row["state_hz"] >= 10.0, key
        assert row["moving_at_end"] is False, key
        assert row["pass"], key
    assert report["all_pass"]
