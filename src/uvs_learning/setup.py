from setuptools import find_packages, setup

package_name = "uvs_learning"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    # Estimator plug-ins (uvs_core.estimators.registry): name = a spec; torch is
    # imported only when one of them is built.
    entry_points={"uvs.estimators": [
        "nj = uvs_learning.specs:NJ",
        "binj = uvs_learning.specs:BINJ",
        "nk_relu = uvs_learning.specs:NK_RELU",
        "nk_tanh = uvs_learning.specs:NK_TANH",
        "nk_adapt = uvs_learning.specs:NK_ADAPT",
        "nk_ens = uvs_learning.specs:NK_ENS",
    ]},
    zip_safe=True,
    maintainer="uvs maintainers",
    maintainer_email="maintainers@uvs-robotics.org",
    description="uvs neural Jacobian estimators and training (PyTorch).",
    license="Apache-2.0",
)
