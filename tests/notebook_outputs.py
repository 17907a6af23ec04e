"""Execute the tutorial notebook and keep small, clean outputs for the web.

The notebook is committed with its outputs, so that it reads on the web (GitHub, nbviewer) with
them. ``python tests/notebook_outputs.py`` executes it top to bottom with this interpreter (in a
temporary folder, offline) and writes it back through :func:`clean`; the slow test in
``test_notebook.py`` executes it the same way, and :func:`policy_problems` is what both the
committed and a freshly executed notebook must satisfy.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "tutorials" / "actinn_cell_type_identification.ipynb"
KERNEL = "deepchem-actinn-notebook"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"

#: Limits on the committed outputs: the whole file, one output, a figure's pixels.
MAX_NOTEBOOK_BYTES = 200_000
MAX_OUTPUT_BYTES = 100_000
MAX_IMAGE_PIXELS = (900, 700)
#: Absolute local paths (POSIX and Windows) that must never reach a committed output.
LOCAL_PATH = re.compile(r"(?<![\w.~-])(/(work|tmp|home|root|usr|opt|var|private|Users|content)/"
                        r"|[A-Za-z]:\\\\?(Users|Windows)\b|site-packages|dist-packages)")


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def execute(notebook: Path = NOTEBOOK, workdir: Path | None = None, timeout: int = 900):
    """Run ``notebook`` top to bottom in ``workdir`` with this interpreter; return it, cleaned.

    A kernel of this very interpreter is declared in a temporary Jupyter path, whatever kernels
    the machine has. Raises ``nbclient.exceptions.CellExecutionError`` if a cell fails.
    """
    nb = nbformat.read(notebook, as_version=4)
    with tempfile.TemporaryDirectory(prefix="actinn-notebook-") as scratch:
        spec = Path(scratch) / "jupyter" / "kernels" / KERNEL
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": KERNEL, "language": "python",
            "env": {"TQDM_DISABLE": "1"}}))  # no progress bars in the kept outputs
        work = Path(workdir) if workdir is not None else Path(scratch) / "work"
        work.mkdir(parents=True, exist_ok=True)
        previous = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = str(Path(scratch) / "jupyter")
        try:
            client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=KERNEL,
                                             record_timing=False,
                                             resources={"metadata": {"path": str(work)}})
            client.execute()
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH")
            else:
                os.environ["JUPYTER_PATH"] = previous
    return clean(nb)


def clean(nb):
    """What is kept of an executed notebook: its outputs, without run-specific metadata.

    Timing and other cell metadata that a run adds are dropped, consecutive prints to one
    stream are joined into one output (how a run splits them depends on timing), the kernel is
    named ``python3`` (the one Colab and Jupyter have), and ``language_info`` keeps only the
    language's name so that the Python version of the run is not recorded.
    """
    for cell in nb.cells:
        for key in ("execution", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        joined: list = []
        for output in cell.outputs:
            last = joined[-1] if joined else None
            if (output.output_type == "stream" and last is not None
                    and last.output_type == "stream" and last.name == output.name):
                last.text += output.text
            else:
                joined.append(output)
        cell.outputs = joined
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("widgets", None)
    return nb


def png_size(data: str) -> tuple[int, int]:
    """Width and height of a base64 PNG (from its IHDR chunk)."""
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", raw[16:24])


def output_text(output) -> str:
    """Every text an output shows (streams, tracebacks, text/* data), for path checks."""
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join(output.traceback)
    return "\n".join(str(value) for key, value in output.get("data", {}).items()
                     if key.startswith("text/"))


def policy_problems(nb) -> list[str]:
    """How ``nb``'s outputs break the publication policy (an empty list when they do not)."""
    problems = []
    size = len(nbformat.writes(nb).encode())
    if size > MAX_NOTEBOOK_BYTES:
        problems.append(f"notebook is {size:,} bytes (at most {MAX_NOTEBOOK_BYTES:,})")
    cells = code_cells(nb)
    counts = [cell.execution_count for cell in cells]
    if counts != list(range(1, len(cells) + 1)):
        problems.append(f"code cells not run once each, top to bottom: {counts}")
    for index, cell in enumerate(cells, 1):
        where = f"code cell {index} ({cell.source.splitlines()[0][:40]!r})"
        if "execution" in cell.metadata:
            problems.append(f"{where}: execution timing metadata")
        for output in cell.outputs:
            kind = output.output_type
            if kind == "error":
                problems.append(f"{where}: error output {output.ename}")
            if kind == "stream" and output.name == "stderr":
                problems.append(f"{where}: stderr output {output.text[:80]!r}")
            if len(json.dumps(output)) > MAX_OUTPUT_BYTES:
                problems.append(f"{where}: a {kind} output over {MAX_OUTPUT_BYTES:,} bytes")
            text = output_text(output)
            if LOCAL_PATH.search(text):
                problems.append(f"{where}: local path {LOCAL_PATH.search(text).group(0)!r}")
            if "Warning" in text:
                problems.append(f"{where}: a warning in the output")
            if "image/png" in output.get("data", {}):
                width, height = png_size(output.data["image/png"])
                if width > MAX_IMAGE_PIXELS[0] or height > MAX_IMAGE_PIXELS[1]:
                    problems.append(f"{where}: a {width}x{height} figure")
    if "widgets" in nb.metadata:
        problems.append("widget state in the notebook metadata")
    return problems


def main() -> int:
    nb = execute()
    problems = policy_problems(nb)
    if problems:
        print("not written:", *problems, sep="\n  ")
        return 1
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)} ({NOTEBOOK.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
