"""The workspace itself: the `uvs` command, versions, package manifests."""

import subprocess
import sys
from pathlib import Path

import pytest

import uvs_core

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_XMLS = sorted(ROOT.glob("src/*/package.xml"))


def _run(*args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


def test_uvs_version_matches_every_package():
    result = _run("uvs", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"uvs {uvs_core.__version__}"
    from catkin_pkg.package import parse_package

    versions = {p.parent.name: parse_package(p).version for p in PACKAGE_XMLS}
    assert set(versions.values()) == {uvs_core.__version__}, versions


def test_uvs_help_answers():
    result = _run("uvs", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: uvs" in result.stdout
    assert "--version" in result.stdout


def test_every_package_xml_is_valid():
    result = _run(sys.executable, str(ROOT / "tools/check_package_xml.py"), *map(str, PACKAGE_XMLS))
    assert result.returncode == 0, result.stdout
    assert f"{len(PACKAGE_XMLS)} valid, 0 invalid" in result.stdout


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ('<maintainer email="a@b.c">x</maintainer>', "email"),
        ("<package format=\"2\">", "format 2"),
    ],
)
def test_package_xml_checker_rejects_broken_manifests(tmp_path, broken, reason):
    source = (ROOT / "src/uvs_core/package.xml").read_text()
    if "maintainer" in broken:
        source = source.replace(
            '<maintainer email="maintainers@uvs-robotics.org">uvs maintainers</maintainer>', broken
        )
    else:
        source = source.replace('<package format="3">', broken)
    pkg_dir = tmp_path / "uvs_core"
    pkg_dir.mkdir()
    (pkg_dir / "package.xml").write_text(source)
    checker = str(ROOT / "tools/check_package_xml.py")
    result = _run(sys.executable, checker, str(pkg_dir / "package.xml"))
    assert result.returncode == 1, result.stdout
    assert "0 valid, 1 invalid" in result.stdout


def test_driver_side_packages_do_not_depend_on_torch():
    """The driver bridge runs on the robot's computer: only learning packages may need torch."""
    from catkin_pkg.package import parse_package

    torch_users = {
        p.parent.name
        for p in PACKAGE_XMLS
        if any(d.name == "python3-torch" for d in parse_package(p).exec_depends)
    }
    assert torch_users <= {"uvs_learning", "uvs_estimation"}, torch_users
    assert "uvs_core" not in torch_users
