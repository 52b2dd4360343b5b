"""The API reference's griffe extension (tools/griffe_uvs.py): field lines become list
items, and undocumented public API or a module without a page is a warning, which
`mkdocs build --strict` (tools/docs.sh, part of `make test`) turns into a failure."""

import importlib.util
import logging
import re
import textwrap
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("griffe_uvs", ROOT / "tools" / "griffe_uvs.py")
griffe_uvs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(griffe_uvs)


def test_field_lines_become_list_items():
    text = textwrap.dedent("""\
        One step of the controller.

        jac: (B, m, k) Jacobian, task units/rad.
        lower, upper: (k,) rad, limits;
            None skips the check.
        Returns (qdot, info): qdot (B, k) rad/s.

        The law::

            e: x* - x
        """)
    assert griffe_uvs.format_fields(text).splitlines() == [
        "One step of the controller.",
        "",
        "- **jac**: (B, m, k) Jacobian, task units/rad.",
        "- **lower, upper**: (k,) rad, limits;",
        "  None skips the check.",
        "",
        "Returns (qdot, info): qdot (B, k) rad/s.",
        "",
        "The law::",
        "",
        "    e: x* - x",
    ]


def test_paragraph_before_fields_is_separated_and_roles_become_code():
    text = "See :func:`babble` and :class:`~uvs_core.babble.OUProcess`.\ngain: 1/s\nArgs:\n    x: y"
    assert griffe_uvs.format_fields(text).splitlines() == [
        "See `babble` and `uvs_core.babble.OUProcess`.",
        "",
        "- **gain**: 1/s",
        "",
        "Args:",
        "    x: y",
    ]


def _load(tmp_path, caplog, source: str, pages: dict[str, str]):
    pkg = tmp_path / "src" / "demo_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Demo package."""\n')
    (pkg / "mod.py").write_text(textwrap.dedent(source))
    (pkg / "other.py").write_text('"""Another module."""\n')
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in pages.items():
        (docs / name).write_text(text)
    ext = griffe_uvs.UvsDocstrings(pages=docs, fully_documented=("demo_pkg",))
    with caplog.at_level(logging.WARNING):
        griffe.load("demo_pkg", search_paths=[tmp_path / "src"],
                    extensions=griffe.load_extensions(ext))
    # "file:line: " before the docstring warnings is for the reader, not compared here
    return sorted(re.sub(r"^\S+:\d+: ", "", r.getMessage()) for r in caplog.records
                  if r.levelno >= logging.WARNING)


SOURCE = '''\
    """A module."""

    class Base:
        """A base."""

        def step(self):
            """One step."""


    class Child(Base):
        """A child."""

        def __init__(self):
            pass

        def step(self):
            pass

        def extra(self):
            pass


    def documented():
        """Documented."""


    def bare():
        pass


    def _private():
        pass
    '''


def test_undocumented_public_api_and_missing_pages_warn(tmp_path, caplog):
    warnings = _load(tmp_path, caplog, SOURCE, {"mod.md": "::: demo_pkg.mod\n"})
    assert warnings == [
        "demo_pkg.other: public module without a page under docs/api",
        "public function demo_pkg.mod.bare has no docstring",
        "public method demo_pkg.mod.Child.extra has no docstring",
    ]


def test_documented_package_with_pages_is_silent(tmp_path, caplog):
    source = SOURCE.replace("def bare():\n        pass", 'def bare():\n        """Bare."""')
    source = source.replace("def extra(self):\n            pass",
                            'def extra(self):\n            """Extra."""')
    pages = {"mod.md": "::: demo_pkg.mod\n", "other.md": "::: demo_pkg.other\n"}
    assert _load(tmp_path, caplog, source, pages) == []
