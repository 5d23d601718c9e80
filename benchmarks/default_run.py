"""Cost of the default job (`make run`'s config): wall time and peak memory of one `sectow run`.

    python benchmarks/default_run.py [--set key=value ...]

Prints `name value` lines and writes them to benchmarks/results/default_run.json."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "sectow.cli", "run", "--set", f"output_dir={runs}"]
        command += [a for o in args.set for a in ("--set", o)]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        summary = json.loads((Path(runs) / "latest" / "summary.json").read_text())
    # ru_maxrss of the largest child process, in KiB on Linux.
    figures = {"default_run_seconds": round(seconds, 1),
               "default_run_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
               "final_asr": summary["iterations"][-1]["asr"], "cold_start_asr": summary["cold_start"]["asr"]}
    for name, value in figures.items():
        print(name, value)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "default_run.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
