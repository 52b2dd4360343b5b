"""Griffe extension for the API reference (mkdocs.yml loads it): uvs's docstring style, and checks.

uvs docstrings list parameters and fields as ``name: (shape) unit, meaning`` lines
(HOUSE_STYLE.md), not under Google's ``Args:`` heading. Markdown would run those
lines into one paragraph; ``format_fields`` turns each such line, with its indented
continuation lines, into a list item with the name in bold. Indented blocks after a
blank line (the ``::`` literal blocks) are left alone and render as code. Sphinx roles
(``:func:`babble` ``) become code spans.

The checks warn, and ``mkdocs build --strict`` (tools/docs.sh) fails on any warning:
- a public function, class or method of a documented module without a docstring
  (``__init__`` and other dunders are covered by the class docstring; a method that
  overrides a documented method of a base class inherits its docstring);
- a public module of uvs_core or uvs_learning that no page under docs/api renders.
"""

from __future__ import annotations

import re
from pathlib import Path

import griffe

logger = griffe.get_logger("griffe_uvs")

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = ROOT / "docs" / "api"
#: Packages every public module of which must have a reference page.
FULLY_DOCUMENTED = ("uvs_core", "uvs_learning")

# `name: text` or `a, b: text` at the start of a line; the names are identifiers,
# possibly dotted or with a call's parentheses (`Simulation.step()`), not a sentence.
_NAME = r"[A-Za-z_][\w.]*(?:\(\))?"
_FIELD = re.compile(rf"^(?P<names>{_NAME}(?:, {_NAME})*): (?P<rest>\S.*)$")
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`")
# Google section headings are parsed as sections, not list items.
_SECTIONS = {"Args", "Arguments", "Parameters", "Returns", "Yields", "Raises", "Attributes",
             "Examples", "Example", "Note", "Notes", "Warning", "Warnings", "See Also"}


def format_fields(text: str) -> str:
    """The docstring ``text`` with its ``name: text`` lines as Markdown list items.

    A field line starts an item ``- **name**: text``; the indented lines right after
    it continue that item. An unindented line after an item starts a new paragraph.
    Lines inside fenced code and indented blocks after a blank line are unchanged.
    """
    text = _ROLE.sub(r"`\1`", text)
    out: list[str] = []
    in_item = False
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            in_item = False
            out.append(line)
            continue
        if fenced:
            out.append(line)
            continue
        if not stripped:
            in_item = False
            out.append(line)
            continue
        indented = line[:1].isspace()
        match = None if indented else _FIELD.match(line)
        if match and match["names"] not in _SECTIONS:
            if out and out[-1].strip() and not in_item:
                out.append("")  # a list needs a blank line after a paragraph
            out.append(f"- **{match['names']}**: {match['rest']}")
            in_item = True
        elif in_item and indented:
            out.append("  " + stripped)
        else:
            if in_item:
                out.append("")  # end the list
            in_item = False
            out.append(line)
    return "\n".join(out)


def _inherits_docstring(func: griffe.Object) -> bool:
    """True when ``func`` is a method that overrides a documented method of a base class."""
    cls = func.parent
    if not isinstance(cls, griffe.Class):
        return False
    try:
        mro = cls.mro()
    except ValueError:
        mro = []
    for base in mro:
        member = base.members.get(func.name)
        if member is not None and member.docstring:
            return True
    # A base outside the sources analysed (torch.nn.Module, rclpy's Node) documents its own
    # methods; the bases that bring no methods of note do not.
    return any(not isinstance(b, griffe.Class) and str(b).rsplit(".", 1)[-1] not in _BARE_BASES
               for b in _resolved_bases(cls))


_BARE_BASES = {"ABC", "object", "Generic", "Protocol", "NamedTuple", "Exception", "RuntimeError",
               "ValueError", "KeyError", "TypedDict", "Enum", "IntEnum"}


def _resolved_bases(cls: griffe.Class) -> list:
    bases = []
    for expr in cls.bases:
        try:
            path = str(getattr(expr, "canonical_path", expr))
            bases.append(cls.modules_collection.get_member(path))
        except (KeyError, AttributeError):
            bases.append(str(expr))
    return bases


def _where(obj: griffe.Object) -> str:
    try:
        path = obj.relative_filepath
    except ValueError:  # outside the working directory
        path = obj.filepath
    return f"{path}:{obj.lineno}"


def _public(obj: griffe.Object) -> bool:
    return not obj.is_alias and obj.is_public and not obj.name.startswith("_")


class UvsDocstrings(griffe.Extension):
    """Formats ``name: text`` field lines and warns about undocumented public API.

    pages: folder of the reference pages (default docs/api of this repository).
    fully_documented: packages every public module of which needs a page.
    """

    def __init__(self, pages: str | Path = API_PAGES,
                 fully_documented: tuple[str, ...] = FULLY_DOCUMENTED) -> None:
        super().__init__()
        self.pages = Path(pages)
        self.fully_documented = tuple(fully_documented)

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        """Reformat the docstring of every loaded object (before it is parsed)."""
        if obj.docstring is not None:
            obj.docstring.value = format_fields(obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        """Check the loaded package ``pkg``: docstrings, and one page per public module."""
        pages = "\n".join(p.read_text() for p in self.pages.rglob("*.md"))
        rendered = set(re.findall(r"^::: ([\w.]+)", pages, flags=re.M))
        for module in _modules(pkg):
            documented = module.path in rendered or module.path == pkg.path
            if pkg.name in self.fully_documented and not documented:
                logger.warning("%s: public module without a page under docs/api", module.path)
            if documented or pkg.name in self.fully_documented:
                _check_docstrings(module)


def _modules(module: griffe.Module):
    yield module
    for member in module.members.values():
        if (isinstance(member, griffe.Module) and not member.is_alias
                and not member.name.startswith("_")):
            yield from _modules(member)


def _check_docstrings(module: griffe.Module) -> None:
    if not module.docstring:
        logger.warning("%s: module without a docstring", module.path)
    for obj in module.members.values():
        if not _public(obj) or not isinstance(obj, (griffe.Function, griffe.Class)):
            continue
        if not obj.docstring:
            logger.warning("%s: public %s %s has no docstring", _where(obj), obj.kind.value,
                           obj.path)
        if isinstance(obj, griffe.Class):
            for meth in obj.members.values():
                if (isinstance(meth, griffe.Function) and _public(meth) and not meth.docstring
                        and not _inherits_docstring(meth)):
                    logger.warning("%s: public method %s has no docstring", _where(meth),
                                   meth.path)
