"""Cost of the default job (`make run`'s config): wall time and peak memory of one `sectow run`.

    python benchmarks/default_run.py [--config FILE.yaml] [--set key=value ...]

Prints `name value` lines and writes them to benchmarks/results/default_run.json."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def measure_default_run(overrides: list[str] = (), config: Path | None = None) -> dict:
    """Run `sectow run` (the defaults, or `config`, plus `overrides`) in a child process: its wall time, its
    own peak RSS (from wait4, so no other child of this process counts) and the run's first and last ASR."""
    with tempfile.TemporaryDirectory() as runs, tempfile.TemporaryFile() as stderr:
        command = [sys.executable, "-m", "sectow.cli", "run", "--set", f"output_dir={runs}"]
        command += (["--config", str(config)] if config else []) + [a for o in overrides for a in ("--set", o)]
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: keep Popen from waiting again
        if child.returncode != 0:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}:\n{tail}")
        summary = json.loads((Path(runs) / "latest" / "summary.json").read_text())
    return {"default_run_seconds": round(seconds, 1),
            "default_run_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
            "final_asr": summary["iterations"][-1]["asr"]["value"], "cold_start_asr": summary["cold_start"]["asr"]["value"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    figures = measure_default_run(args.set, args.config)
    for name, value in figures.items():
        print(name, value)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "default_run.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
