from glob import glob

from setuptools import Extension, find_packages, setup

package_name = "uvs_core"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/config/robots",
         glob("config/robots/*.yaml") + glob("config/robots/*.urdf")),
    ],
    # LL-KNN's neighbour query and fit in C (plain C99, no Python headers; loaded
    # with ctypes). Optional: without a C compiler the package still installs
    # and LL-KNN uses its KD-tree backend, slower, same results.
    ext_modules=[Extension(
        "uvs_core.estimators._llknn", ["uvs_core/estimators/_llknn.c"],
        extra_compile_args=["-O3", "-std=c99"], libraries=["m"], optional=True,
    )],
    install_requires=["setuptools"],
    # Estimator plug-ins (uvs_core.estimators.registry): name = a spec, imported lazily.
    entry_points={"uvs.estimators": [
        "tj = uvs_core.estimators.specs:TJ",
        "broyden = uvs_core.estimators.specs:BROYDEN",
        "llknn = uvs_core.estimators.specs:LLKNN",
    ]},
    zip_safe=False,
    maintainer="uvs maintainers",
    maintainer_email="maintainers@uvs-robotics.org",
    description="uvs core algorithms: kinematics, simulation, babbling, datasets, estimators.",
    license="Apache-2.0",
)
