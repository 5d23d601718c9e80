"""Two processes on CPU (gloo) through torchrun: trainers run on both ranks, the loop's own steps once.
The run folder must be complete and shaped like a one-process run's."""

import json
import os
import socket
import subprocess
import sys

from conftest import EXPECTED_PHASES, micro_args
from test_tug_of_war import POOL_FIELDS


def test_two_process_run_writes_one_complete_run_folder(tmp_path):
    with socket.socket() as probe:  # torchrun's static rendezvous needs a concrete free port
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
               "-m", "sectow.cli", "run", *micro_args(tmp_path / "runs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("run folder:") == 1  # printed by the main process only
    assert "FutureWarning" not in result.stderr  # the CLI filters the v6 renames TRL still calls, on every rank
    runs = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    assert len(runs) == 1
    folder = runs[0]
    assert json.loads((folder / "state.json").read_text())["completed"] == EXPECTED_PHASES
    phases = [json.loads(line)["phase"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert phases == EXPECTED_PHASES  # each phase logged once, not once per rank
    pool = [json.loads(line) for line in (folder / "pool" / "jailbreak_pool.jsonl").read_text().splitlines()]
    assert len({r["hash"] for r in pool}) == len(pool) and all(set(r) >= POOL_FIELDS for r in pool)
    summary = json.loads((folder / "summary.json").read_text())
    assert [it["iteration"] for it in summary["iterations"]] == [1, 2]
    assert not list(folder.rglob("*.tmp"))
