"""DOUBLE of Kinova's Kortex Python API (tests only; see ../README.md).

Same module paths, classes and call signatures as ``kortex_api`` 2.6 for what uvs uses;
the arm behind it is :mod:`gen3_double`. Never installed: tests put the directory above
this package first on ``sys.path``.
"""
