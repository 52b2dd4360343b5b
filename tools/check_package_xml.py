"""Validate package.xml files the way colcon, rosdep and bloom read them.

catkin_pkg parses and validates format 3 strictly (names, versions, e-mails,
build types). Warnings are errors here: a package.xml that only half-parses
breaks rosdep on a user's machine, not ours.
"""

import sys
import warnings
from pathlib import Path

from catkin_pkg.package import InvalidPackage, parse_package


def check(path: Path) -> list[str]:
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pkg = parse_package(path)
            pkg.validate()
        except InvalidPackage as exc:
            return [str(exc)]
    problems += [str(w.message) for w in caught]
    if pkg.package_format != 3:
        problems.append(f"format {pkg.package_format}, expected 3")
    if pkg.name != path.parent.name:
        problems.append(f"name {pkg.name!r} differs from its folder {path.parent.name!r}")
    build_types = [e.content for e in pkg.exports if e.tagname == "build_type"]
    if build_types not in (["ament_python"], ["ament_cmake"]):
        problems.append(f"export build_type {build_types}, expected ament_python or ament_cmake")
    return problems


def main(argv: list[str]) -> int:
    failed = 0
    for name in argv:
        path = Path(name)
        problems = check(path)
        for problem in problems:
            print(f"{path}: {problem}")
        failed += bool(problems)
    print(f"package.xml: {len(argv) - failed} valid, {failed} invalid")
    return 1 if failed or not argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
