"""Rules of the project that no single module owns: the gateway loads no torch, the
generated protos match the .proto, and the installed names stay under ``stylegate.``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Everything `stylegate serve` and the client commands import.
GATEWAY_MODULES = (
    "stylegate.cli.main",
    "stylegate.service.server",
    "stylegate.service.cli",
    "stylegate.service.client",
    "stylegate.service.backends.embedded",
    "stylegate.service.backends.triton",
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=False
    )


def test_importing_the_gateway_loads_no_torch():
    imports = "; ".join(f"import {m}" for m in GATEWAY_MODULES)
    done = _run(f"import sys; {imports}; print(sorted(m for m in sys.modules if 'torch' in m))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"the gateway imported {done.stdout.strip()}"


def test_the_torch_check_would_see_torch():
    """The check above is not vacuous: importing the exporter does load torch."""
    done = _run("import sys, stylegate.export.api; print('torch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_generated_protos_are_fresh():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def _folder(package: str, package_dir: dict[str, str]) -> Path:
    """The repository folder of an installed package name, by pyproject's package-dir."""
    parent, _, leaf = package.rpartition(".")
    if package in package_dir:
        return ROOT / package_dir[package]
    return _folder(parent, package_dir) / leaf


def test_installed_packages_live_under_the_project_name():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, package_dir = config["packages"], config["package-dir"]
    assert all(p.startswith("stylegate.") for p in [*packages, *package_dir]), packages
    installed = {_folder(p, package_dir) for p in packages}
    # every package folder under a mapped folder is installed, and every listed one exists
    for top in package_dir.values():
        for init in (ROOT / top).rglob("__init__.py"):
            assert init.parent in installed, f"{init.parent.relative_to(ROOT)} is not installed"
    for folder in installed:
        assert (folder / "__init__.py").exists(), folder
