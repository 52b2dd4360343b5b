"""Point the ROS 2 wheels' exported CMake targets at this venv's Python.

The PyPI ROS 2 wheels were built in a manylinux container, and their exported
targets (share/*/cmake/export_*__rosidl_generator_pyExport.cmake) name that
container's Python include directory and numpy include directory. CMake
refuses to configure any package that links those targets ("Imported target
... includes non-existent path"), which breaks `colcon build` of our
interfaces. We rewrite the two paths to this interpreter's real ones.
Idempotent: a second run finds nothing to change.
"""

import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PREFIX = "/opt/python/cp311-cp311"
REPLACEMENTS = {
    f"{BUILD_PREFIX}/include/python3.11": sysconfig.get_paths()["include"],
    f"{BUILD_PREFIX}/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
}


def main() -> int:
    prefix = Path(sys.prefix)
    changed = 0
    for path in sorted((prefix / "share").glob("*/cmake/*.cmake")):
        text = path.read_text()
        new = text
        for old, real in REPLACEMENTS.items():
            new = new.replace(old, real)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_ros_wheel_cmake: rewrote {changed} CMake export file(s) under {prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main())
