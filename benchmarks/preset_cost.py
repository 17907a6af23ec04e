"""What the recommended mode costs: the CLI's train and predict, per preset, on the tutorial data.

Each preset trains on the bundled 4,000-cell tutorial reference and annotates its 1,000 test
cells through ``deepchem-actinn`` itself, each command in a fresh process (wall time and peak
RSS from ``wait4``), as a user would run them. Presets alternate round by round, so a machine
that drifts slows them alike; medians are printed with the ratio to the faithful ``actinn``
preset measured in the same run::

    .venv/bin/python benchmarks/preset_cost.py                 # actinn vs transfer, 3 rounds
    .venv/bin/python benchmarks/preset_cost.py --rounds 5 --presets actinn transfer robust
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = os.path.join(os.path.dirname(HERE), "deepchem_actinn", "bundled")


def command() -> List[str]:
    """The installed console script beside this interpreter, else the module."""
    script = os.path.join(os.path.dirname(sys.executable), "deepchem-actinn")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "deepchem_actinn.cli"]


def timed(args: Sequence[str]) -> Tuple[float, float]:
    """Run a command; its wall time (s) and peak RSS (bytes)."""
    start = time.perf_counter()
    process = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        assert process.stderr is not None
        raise SystemExit(f"failed: {' '.join(args)}\n{process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss * 1024.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["actinn", "transfer"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cli = command()
    work = tempfile.mkdtemp(prefix="preset-cost-")
    train_set = os.path.join(BUNDLED, "train_sample.h5")
    labels = os.path.join(BUNDLED, "train_label_sample.txt")
    test_set = os.path.join(BUNDLED, "test_sample.h5")
    runs: Dict[str, Dict[str, List[float]]] = {p: {"train_s": [], "train_rss": [],
                                                   "predict_s": [], "predict_rss": []}
                                               for p in args.presets}
    print(f"preset cost: {os.cpu_count()} CPUs, {args.rounds} rounds, tutorial reference "
          "(4,000 cells, 12 types) -> 1,000 test cells, each command in a fresh process")
    try:
        for round_ in range(args.rounds):
            for preset in args.presets:
                model_dir = os.path.join(work, f"{preset}-{round_}")
                seconds, rss = timed(cli + ["train", "--train-set", train_set, "--train-labels",
                                            labels, "--model-dir", model_dir, "--preset", preset,
                                            "--quiet"])
                runs[preset]["train_s"].append(seconds)
                runs[preset]["train_rss"].append(rss)
                seconds, rss = timed(cli + ["predict", "--model-dir", model_dir, "--test-set",
                                            test_set, "--output",
                                            os.path.join(work, f"{preset}-{round_}.tsv")])
                runs[preset]["predict_s"].append(seconds)
                runs[preset]["predict_rss"].append(rss)
                print(f"  round {round_ + 1} {preset:<10} train {runs[preset]['train_s'][-1]:6.1f}s"
                      f"  predict {seconds:5.1f}s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = args.presets[0]
    print(f"\nmedians (ratio to {base}):")
    print(f"{'preset':<10}{'train':>16}{'train RSS':>20}{'predict':>16}{'predict RSS':>20}")
    for preset in args.presets:
        cells = []
        for field, unit, scale in (("train_s", "s", 1.0), ("train_rss", " MB", 1e-6),
                                   ("predict_s", "s", 1.0), ("predict_rss", " MB", 1e-6)):
            value = statistics.median(runs[preset][field])
            ratio = value / statistics.median(runs[base][field])
            cells.append(f"{value * scale:.1f}{unit} ({ratio:.2f}x)".rjust(16 if unit == "s"
                                                                           else 20))
        print(f"{preset:<10}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
