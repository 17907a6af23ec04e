"""The tutorial notebook: committed without outputs, and it runs top to bottom offline."""

import json
import re
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = (Path(__file__).resolve().parents[1] / "tutorials"
            / "actinn_cell_type_identification.ipynb")
KERNEL = "deepchem-actinn-tests"


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_committed_notebook_is_valid_and_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in code_cells(nb):
        assert cell.outputs == [], cell.source[:60]
        assert cell.execution_count is None, cell.source[:60]
    assert "widgets" not in nb.metadata


def test_first_code_cell_installs_only_in_colab():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = code_cells(nb)[0].source
    assert 'if "google.colab" in sys.modules:' in first
    assert '"--pre", "deepchem"' in first and "git+{REPO_URL}" in first
    assert re.search(r'^REPO_URL = "', first, re.MULTILINE)
    # Everything that installs sits inside the Colab branch.
    branch = first.split('if "google.colab" in sys.modules:')[1]
    assert "pip" not in first.split('if "google.colab" in sys.modules:')[0]
    assert "check_call" in branch


def test_notebook_uses_the_package_data_only():
    text = NOTEBOOK.read_text(encoding="utf-8")
    assert "labels_2.txt" not in text
    assert "tutorial_files()" in text and "sample_files()" in text
    assert "/work/" not in text and "http://" not in text


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    # A kernel of this very interpreter, whatever kernels the machine has installed.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("DEEPCHEM_ACTINN_CACHE", str(tmp_path / "cache"))  # must stay unused
    work = tmp_path / "work"
    work.mkdir()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError if any cell fails

    text, images = [], 0
    for cell in code_cells(nb):
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stdout":
                text.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                images += "image/png" in output.data
                text.append(output.data.get("text/plain", ""))
    printed = "".join(text)

    def number(pattern):
        found = re.search(pattern, printed)
        assert found, f"no output matching {pattern!r}"
        return float(found.group(1))

    # The ValidationCallback really ran on 12 classes (every 10 epochs of 25 steps).
    steps = [int(s) for s in re.findall(r"Step (\d+) validation: accuracy_score=", printed)]
    assert steps == [250, 500, 750, 1000, 1250]
    assert number(r"split test cells: accuracy (\d\.\d+)") > 0.9
    assert number(r"split test cells: accuracy \d\.\d+, macro-F1 (\d\.\d+)") > 0.8
    assert number(r"test file: accuracy (\d\.\d+)") > 0.95
    assert number(r"test file: accuracy \d\.\d+, macro-F1 (\d\.\d+)") > 0.85
    assert "same calls after save and load: True" in printed
    assert number(r"sample 2, 246 labelled cells: accuracy (\d\.\d+)") > 0.5
    assert "0 set to zero" in printed  # query genes aligned to the model's
    # The two modes on the same cross-platform pair: the faithful model is the one trained above
    # (0.744 / 0.630); the recommended transfer mode is clearly ahead of it.
    faithful = number(r"faithful ACTINN, sample 2: accuracy (\d\.\d+)")
    assert faithful == number(r"sample 2, 246 labelled cells: accuracy (\d\.\d+)")
    transfer = number(r"transfer mode, sample 2: accuracy (\d\.\d+)")
    assert transfer > 0.8 and transfer >= faithful + 0.05
    assert (number(r"transfer mode, sample 2: accuracy \d\.\d+, macro-F1 (\d\.\d+)")
            > number(r"faithful ACTINN, sample 2: accuracy \d\.\d+, macro-F1 (\d\.\d+)"))
    assert "preset saved with the model: transfer" in printed
    assert images == 2  # the two confusion matrices
    assert (work / "tm_model" / "actinn_model.json").is_file()
    assert (work / "droplet_reference" / "weights.pt").is_file()
    assert (work / "droplet_transfer" / "actinn_model.json").is_file()
    assert not (tmp_path / "cache").exists()
    assert not (NOTEBOOK.parent / "tm_model").exists()  # nothing written beside it
