from setuptools import find_packages, setup

package_name = "uvs_ros"

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
    description="ROS 2 helpers shared by the uvs nodes: main() with a clean shutdown, "
                "named QoS profiles, parameter specs.",
    license="Apache-2.0",
)
