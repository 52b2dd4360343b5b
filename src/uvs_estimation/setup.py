from setuptools import find_packages, setup

package_name = "uvs_estimation"

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
    description="uvs Jacobian estimator service node (EstimateJacobian, runtime estimator swap).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "jacobian_estimator = uvs_estimation.estimator_node:main",
        ],
    },
)
