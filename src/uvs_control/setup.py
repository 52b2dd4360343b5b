from setuptools import find_packages, setup

package_name = "uvs_control"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="uvs maintainers",
    maintainer_email="maintainers@uvs-robotics.org",
    description="uvs controller node: inverse-Jacobian servoing (paper Algorithm 1).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "controller = uvs_control.controller_node:main",
        ],
    },
)
