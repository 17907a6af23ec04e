"""How long `deepchem-actinn predict` and `evaluate` take on the tutorial's 1,000 test cells.

`predict` loads a saved model for annotation alone (``load_reference``: torch, no
DeepChem); the baseline in the same run is the same command in a process that
has imported the DeepChem model first, as `predict` did before. Each command
runs in a fresh process, alternating, and the median wall time of the rounds is
printed with the ratio. Run::

    .venv/bin/python benchmarks/start_time.py            # 5 rounds
    .venv/bin/python benchmarks/start_time.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMAND = ("import sys\n"
           "{prelude}"
           "from deepchem_actinn import cli\n"
           "sys.exit(cli.main({argv!r}))\n")


def timed(prelude: str, argv: List[str]) -> float:
    script = COMMAND.format(prelude=prelude, argv=argv)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from deepchem_actinn.sample_data import tutorial_files

    files = tutorial_files()
    with tempfile.TemporaryDirectory() as work:
        model = os.path.join(work, "model")
        subprocess.run([sys.executable, "-m", "deepchem_actinn.cli", "train", "--train-set",
                        files.train_counts, "--train-labels", files.train_labels,
                        "--model-dir", model, "--epochs", "1", "--quiet"], check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        calls = os.path.join(work, "calls.tsv")
        predict = ["predict", "--model-dir", model, "--test-set", files.test_counts,
                   "--output", calls, "--device", "cpu"]
        evaluate = ["evaluate", "--predictions", calls, "--labels", files.test_labels]
        runs: Dict[str, List[float]] = {"predict": [], "predict, DeepChem imported first": [],
                                        "evaluate": []}
        for _ in range(args.rounds):
            runs["predict"].append(timed("", predict))
            runs["predict, DeepChem imported first"].append(
                timed("import deepchem_actinn.model.actinn_model\n", predict))
            runs["evaluate"].append(timed("", evaluate))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(f"median wall time of {args.rounds} rounds, 1,000 cells (fresh process each):")
    for name, value in medians.items():
        print(f"  {name:<36} {value:6.2f} s")
    print(f"  predict / baseline: "
          f"{medians['predict'] / medians['predict, DeepChem imported first']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
