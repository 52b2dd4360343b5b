"""FAKE of Kinova's Kortex Python API for tests: no arm is reachable here.

Same module paths and documented call shapes as ``kortex_api`` 2.6; the
simulated arm and the call log live in :mod:`kortex_api._fake`.
"""
