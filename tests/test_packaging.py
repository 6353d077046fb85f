"""The built wheel is complete: it holds every module and the catalogue, and an installed (not editable)
copy run outside the checkout checks every catalogue entry."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy of the tracked files: an in-tree build would leave build/ and *.egg-info behind,
    # and an egg-info in the checkout registers the package's entry points for every later test
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    for name in tracked.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, str(source), "-w", str(out)], check=True, capture_output=True, cwd=out)
    (built,) = out.glob("gradverify-*.whl")
    return built


def test_wheel_holds_every_module_and_the_catalogue(wheel):
    """Every source module of both packages, every derivation file and the `new` template are in the
    wheel (a subpackage missing from pyproject's package list would silently drop out)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("verify", "implementations"):
        for path in (ROOT / package).rglob("*.py"):
            assert path.relative_to(ROOT).as_posix() in names, path
    derivations = sorted((ROOT / "derivations").glob("*.deriv"))
    assert derivations
    for path in derivations:
        assert f"verify/derivations/{path.name}" in names, path
    assert "verify/template.deriv" in names  # what `new NAME` copies


def test_installed_wheel_checks_the_catalogue_outside_the_checkout(wheel, tmp_path):
    """Installed from the wheel and run from another folder, `verify all` finds and checks every entry."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import verify; print(verify.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    r = subprocess.run(
        [sys.executable, "-m", "verify", "all", "--oracle", "exact", "--oracle", "fd"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    count = len(list((ROOT / "derivations").glob("*.deriv")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{count} derivations: {count} verified" in r.stdout, r.stdout
