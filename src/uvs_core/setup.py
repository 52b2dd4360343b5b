from glob import glob

from setuptools import find_packages, setup

package_name = "uvs_core"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/config/robots", glob("config/robots/*.yaml")),
        ("share/" + package_name + "/config/tasks", glob("config/tasks/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="uvs maintainers",
    maintainer_email="maintainers@uvs-robotics.org",
    description="uvs core algorithms: kinematics, simulation, babbling, datasets, estimators.",
    license="Apache-2.0",
)
