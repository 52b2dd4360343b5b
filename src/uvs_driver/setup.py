from setuptools import find_packages, setup

package_name = "uvs_driver"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="uvs maintainers",
    maintainer_email="maintainers@uvs-robotics.org",
    description="uvs driver bridge (simulated or Kinova Gen3 arm) and OU babbler nodes.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "driver = uvs_driver.driver_node:main",
            "babbler = uvs_driver.babbler_node:main",
        ],
    },
)
