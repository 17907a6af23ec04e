"""The package builds into a wheel that carries its data, CLI and licence."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (path,) = out.glob("deepchem_actinn-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_carries_bundled_data(wheel):
    names = set(wheel.namelist())
    from deepchem_actinn.sample_data import FILES
    for name in FILES:
        assert f"deepchem_actinn/bundled/{name}" in names
    assert "deepchem_actinn/py.typed" in names


def test_wheel_declares_cli_and_dependencies(wheel):
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "deepchem-actinn = deepchem_actinn.cli:main" in wheel.read(entry_points).decode()
    metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith("METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any("deepchem" in line for line in requires)
    # AnnData stays optional: it needs pandas < 3 on Python 3.11.
    assert all("extra ==" in line for line in requires if "anndata" in line)
    assert "License: MIT" in metadata or "License-Expression: MIT" in metadata \
        or "MIT License" in metadata
