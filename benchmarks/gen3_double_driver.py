#!/usr/bin/env python3
"""The driver node on the gen3 backend against the Kortex double (for ``benchmarks/faults.py``).

Runs ``uvs_driver.driver_node.main`` exactly as the installed ``driver`` executable does
(same ``--ros-args``), after putting ``src/uvs_driver/test/kortex_double`` first on
``sys.path`` so ``import kortex_api`` finds the double (see its README: no arm is
reachable where uvs is tested). The double's arm is not in this process: it is served by
``src/uvs_driver/test/kortex_double/firmware_server.py`` (a process of its own, with the
fault injection on its stdin) at ``KORTEX_DOUBLE_ADDRESS``, as a real Gen3 is a server on
the network. So a SIGSTOP of this process freezes the driver and its Kortex threads while
the arm goes on moving, and the gen3 backend's supervisor (a child process of this one,
with a session of its own) can stop it.

    KORTEX_DOUBLE_ADDRESS=127.0.0.1:PORT python benchmarks/gen3_double_driver.py \\
        --ros-args -p backend:=gen3 -p robot_ip:=10.0.0.7
"""

from __future__ import annotations

import sys
from pathlib import Path

DOUBLE_DIR = Path(__file__).resolve().parents[1] / "src" / "uvs_driver" / "test" / "kortex_double"


def main() -> int:
    sys.path.insert(0, str(DOUBLE_DIR))
    from uvs_driver.driver_node import main as driver_main

    return driver_main(sys.argv)


if __name__ == "__main__":
    raise SystemExit(main())
