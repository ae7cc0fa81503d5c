"""What a ``pip install`` of staffgraph contains: the default organisation comes with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("graphs", "nodes", "tools", "state", "server")

_PROBE = """
import json, state
from state.roles import default_roles_dir, load_organization
from tools import default_registry
org = load_organization(default_roles_dir(), registry=default_registry())
print(json.dumps({"package": state.__file__, "roles_dir": str(default_roles_dir()),
                  "roles": sorted(role.name for role in org.roles)}))
"""


def _build_wheel(tmp_path: Path) -> Path:
    # Build from a copy so the build never writes build/ or egg-info into the checkout.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
        + ["--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("staffgraph-*.whl")
    return wheel


def test_the_default_organisation_is_installed_with_the_package(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    shipped = sorted(
        name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("state/roles/")
    )
    assert "state/roles/default/operations.yaml" in shipped
    assert "state/migrations/0001_core.sql" in zipfile.ZipFile(wheel).namelist()
    console = ROOT / "server" / "console" / "static"
    files = [path.relative_to(ROOT).as_posix() for path in console.rglob("*") if path.is_file()]
    assert "server/console/static/index.html" in files
    # Every console file ships: the page works from a plain pip install, nothing to build.
    assert set(files) <= set(zipfile.ZipFile(wheel).namelist())

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
        + ["--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Only the installed copy is importable: no checkout on the path, another working dir.
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(site)
    assert Path(found["roles_dir"]) == site / "state" / "roles" / "default"
    assert {"chief_of_staff", "analyst", "people_lead"} <= set(found["roles"])
    assert (site / "server" / "console" / "static" / "js" / "app.js").is_file()
