"""Where uvs's installed files are: the nodes' parameter files, the shipped models, the
robot descriptions and the interface definitions. The one way every package finds them.

Each kind of file has one home in the colcon install (a package's share directory, found
through the ament index) and one in a source checkout (a folder of the repository):

- ``config``: ``<share of uvs_bringup>/config``, or ``config/`` of the checkout;
- ``models``: ``<share of uvs_bringup>/models``, or ``models/``;
- ``robots``: ``<share of uvs_core>/config/robots``, or ``config/robots/``;
- ``interfaces``: ``<share of uvs_interfaces>/msg``, or ``src/uvs_interfaces/msg/``.

The install comes first; the checkout is the first ancestor of this module holding
``src/uvs_core`` (from the colcon install inside a checkout that is the checkout itself).
No ROS is needed: without ``ament_index_python``, or with the package not on the
ament prefix path, only the checkout is searched.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["KINDS", "installed_dir", "installed_dirs", "source_root"]

#: kind -> (package whose share holds it, folder in that share, folder in a checkout)
KINDS: dict[str, tuple[str, str, str]] = {
    "config": ("uvs_bringup", "config", "config"),
    "models": ("uvs_bringup", "models", "models"),
    "robots": ("uvs_core", "config/robots", "config/robots"),
    "interfaces": ("uvs_interfaces", "msg", "src/uvs_interfaces/msg"),
}


def _share(package: str) -> Path | None:
    """The share directory of ``package`` from the ament index, or None without one."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(package))
    except (LookupError, OSError, ValueError):  # PackageNotFoundError is a KeyError
        return None


def source_root() -> Path | None:
    """The checkout this module lives in (the first ancestor holding ``src/uvs_core``), or
    None when it is installed outside one."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "src" / "uvs_core").is_dir():
            return parent
    return None


def installed_dirs(kind: str) -> list[Path]:
    """The folders where files of ``kind`` (one of ``KINDS``) may be, in search order:
    the install's, then the checkout's; only those that exist. ValueError for an
    unknown kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of installed file {kind!r}; valid: {sorted(KINDS)}")
    package, in_share, in_source = KINDS[kind]
    share, root = _share(package), source_root()
    candidates = [share / in_share if share else None, root / in_source if root else None]
    found: list[Path] = []
    for path in candidates:
        if path is not None and path.is_dir() and path not in found:
            found.append(path)
    return found


def installed_dir(kind: str) -> Path:
    """The folder of ``kind`` (``installed_dirs(kind)[0]``); when none exists, where it
    would be (the share's folder if the package is installed, else the checkout's, else
    ``./<folder>``), so that a missing file is reported at a path that means something."""
    found = installed_dirs(kind)
    if found:
        return found[0]
    package, in_share, in_source = KINDS[kind]
    share, root = _share(package), source_root()
    if share is not None:
        return share / in_share
    return (root if root is not None else Path.cwd()) / in_source
