"""uvs_core.paths: the one way to find installed files, from the colcon install (the ament
index) first and the source checkout second."""

from __future__ import annotations

from pathlib import Path

import pytest

from uvs_core import paths
from uvs_core.paths import KINDS, installed_dir, installed_dirs, source_root

REPO = Path(__file__).resolve().parents[3]


def test_the_checkout_is_found_from_the_module():
    # From the install inside this checkout as much as from src/: both lie below REPO.
    assert source_root() == REPO


@pytest.mark.parametrize("kind, marker", [("config", "driver.yaml"),
                                          ("models", "README.md"),
                                          ("robots", "gen3.yaml"),
                                          ("interfaces", "TaskState.msg")])
def test_every_kind_is_found_with_its_files(kind, marker):
    assert (installed_dir(kind) / marker).is_file()
    assert installed_dirs(kind)[0] == installed_dir(kind)


def test_the_install_is_searched_before_the_checkout(tmp_path, monkeypatch):
    packages = pytest.importorskip("ament_index_python.packages")
    (tmp_path / "uvs_bringup" / "models").mkdir(parents=True)
    monkeypatch.setattr(packages, "get_package_share_directory",
                        lambda name: str(tmp_path / name))
    assert installed_dirs("models") == [tmp_path / "uvs_bringup" / "models", REPO / "models"]
    assert installed_dir("models") == tmp_path / "uvs_bringup" / "models"
    # uvs_core's share has no config/robots here: only the checkout's is searched.
    assert installed_dirs("robots") == [REPO / "config" / "robots"]


def test_without_the_ament_index_only_the_checkout_is_searched(monkeypatch):
    packages = pytest.importorskip("ament_index_python.packages")

    def missing(name):
        raise packages.PackageNotFoundError(name)

    monkeypatch.setattr(packages, "get_package_share_directory", missing)
    assert installed_dirs("config") == [REPO / "config"]
    assert installed_dir("interfaces") == REPO / "src" / "uvs_interfaces" / "msg"


def test_nothing_found_names_where_it_would_be(tmp_path, monkeypatch):
    packages = pytest.importorskip("ament_index_python.packages")
    monkeypatch.setattr(packages, "get_package_share_directory",
                        lambda name: str(tmp_path / name))
    monkeypatch.setattr(paths, "source_root", lambda: None)
    assert installed_dirs("models") == []
    assert installed_dir("models") == tmp_path / "uvs_bringup" / "models"


def test_an_unknown_kind_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown kind .*'bags'.*'config'"):
        installed_dirs("bags")
    assert set(KINDS) == {"config", "models", "robots", "interfaces"}
