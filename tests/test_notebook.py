"""The tutorial notebook: committed with small, clean outputs and a Colab badge; it runs top to
bottom offline (``python tests/notebook_outputs.py`` re-executes it and writes it back)."""

import re

import nbformat
import pytest
from notebook_outputs import NOTEBOOK, ROOT, code_cells, execute, policy_problems

COLAB = re.compile(r"\]\((https://colab\.research\.google\.com/github/"
                   r"(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)/blob/(?P<branch>[\w.-]+)/"
                   r"(?P<path>[^)\s]+))\)")


def printed_text(nb):
    """What the code cells printed or displayed as text, and how many PNG figures they showed."""
    text, images = [], 0
    for cell in code_cells(nb):
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stdout":
                text.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                images += "image/png" in output.data
                text.append(output.data.get("text/plain", ""))
    return "".join(text), images


def output_kinds(nb):
    """Per code cell, the kinds of output it shows (stream splits vary from run to run)."""
    return [sorted({(output.output_type, output.get("name", ""),
                     tuple(sorted(output.get("data", {})))) for output in cell.outputs})
            for cell in code_cells(nb)]


def test_committed_notebook_keeps_small_clean_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert policy_problems(nb) == []
    # The outputs really are there: a run's results and both figures.
    printed, images = printed_text(nb)
    assert "split test cells: accuracy" in printed
    assert "preset saved with the model: transfer" in printed
    assert images == 2
    assert nb.metadata.kernelspec.name == "python3"


def test_badge_opens_this_notebook_in_colab():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]" \
        in first.source
    link = COLAB.search(first.source)
    assert link, first.source
    assert link.group("path") == NOTEBOOK.relative_to(ROOT).as_posix()
    assert link.group("branch") == "main"
    # The same repository that the Colab set-up cell installs from.
    repo_url = re.search(r'^REPO_URL = "https://github\.com/([\w.-]+)/([\w.-]+)"',
                         code_cells(nb)[0].source, re.MULTILINE)
    assert repo_url, "no REPO_URL on GitHub in the first code cell"
    assert (link.group("owner"), link.group("repo")) == repo_url.groups()


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
    monkeypatch.setenv("DEEPCHEM_ACTINN_CACHE", str(tmp_path / "cache"))  # must stay unused
    work = tmp_path / "work"
    nb = execute(NOTEBOOK, workdir=work)  # raises CellExecutionError if any cell fails
    # What a re-execution would commit meets the same policy as the committed notebook, and
    # the committed outputs are those of the committed code (each cell the same kinds).
    assert policy_problems(nb) == []
    assert output_kinds(nb) == output_kinds(nbformat.read(NOTEBOOK, as_version=4))
    printed, images = printed_text(nb)

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
