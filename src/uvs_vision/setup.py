from setuptools import find_packages, setup

package_name = "uvs_vision"

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
    description="uvs vision: simulated camera rendering the end-effector marker, and the "
                "HSV hue tracker (webcam, video file or image topic).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_camera = uvs_vision.sim_camera_node:main",
            "hue_tracker = uvs_vision.hue_tracker_node:main",
        ],
    },
)
