import os
from glob import glob

from setuptools import find_packages, setup

package_name = "uvs_bringup"
share = "share/" + package_name


def tree(source: str, destination: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing every file below `source` under `destination`."""
    entries: dict[str, list[str]] = {}
    for path in sorted(glob(source + "/**/*", recursive=True)):
        if os.path.isfile(path):
            relative = os.path.relpath(os.path.dirname(path), source)
            folder = os.path.normpath(os.path.join(destination, relative))
            entries.setdefault(folder, []).append(path)
    return list(entries.items())


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        (share, ["package.xml"]),
        # launch/, config/ and models/ are the repository's top-level folders (symlinked here).
        (share + "/launch", glob("launch/*.py")),
        (share + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
        (share + "/config/robots", glob("config/robots/*.yaml")),
        # `uvs` on PATH after sourcing the overlay (colcon adds <prefix>/bin to PATH).
        ("bin", ["scripts/uvs"]),
    ]
    + tree("models", share + "/models"),
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="uvs maintainers",
    maintainer_email="maintainers@uvs-robotics.org",
    description="uvs bringup: launch, config, models, node graph and the uvs command.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "uvs = uvs_bringup.cli:main",
            "record = uvs_bringup.recorder:main",
        ],
    },
)
