"""`sectow doctor`: check the environment, a config and everything it names before a long run, as one
table of ok / warn / FAIL rows. Cheap: model weights are checked by their headers, never loaded, and the
output folder is not created."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import TextIO

from sectow import paths, preflight
from sectow.config import PolicySettings, RunConfig, load_config
from sectow.errors import UserError
from sectow.models.folder import GIB

OK, WARN, FAIL = "ok", "warn", "FAIL"
Check = tuple[str, str, str]
STACK = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
MIN_FREE_GIB, BIG_MODEL_FREE_GIB = 1, 20
JUDGE_TIMEOUT_S = 5


def check_python() -> Check:
    return "python", OK, f"{sys.version.split()[0]} ({sys.executable})"


def pins() -> dict:
    """The version specifiers the installed sectow distribution declares, by package; {} when sectow
    runs from a source tree without being installed."""
    from packaging.requirements import Requirement

    try:
        requires = metadata.requires("sectow") or []
    except metadata.PackageNotFoundError:
        return {}
    found = {}
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):  # extras are optional
            found[requirement.name.lower()] = requirement.specifier
    return found


def check_packages() -> list[Check]:
    pinned, rows = pins(), []
    for name in STACK:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            rows.append((name, FAIL, "not installed"))
            continue
        spec = pinned.get(name)
        # `contains` ignores a local label, so a CUDA build like 2.13.0+cu128 matches ==2.13.0.
        if spec is not None and not spec.contains(version, prereleases=True):
            rows.append((name, WARN, f"{version}, but sectow pins {spec}"))
        else:
            rows.append((name, OK, version))
    return rows


def check_gpu(config: RunConfig | None) -> Check:
    try:
        import torch
    except ImportError:
        return "gpu", WARN, "torch not installed"
    if not torch.cuda.is_available():
        cuda = torch.version.cuda
        why = "torch is a CPU build" if cuda is None else f"torch built for CUDA {cuda} sees no device"
        return "gpu", WARN, f"none visible ({why}); only the tiny default is practical on CPU"
    devices = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    names = ", ".join(f"{d.name} ({d.total_memory / GIB:.0f} GiB)" for d in devices)
    no_bf16 = [d.name for d in devices if (d.major, d.minor) < (8, 0)]  # bf16 needs Ampere or newer
    if no_bf16 and config is not None and (config.defender.bf16 or config.attacker.bf16):
        return "gpu", WARN, f"{names}; no bf16 on {no_bf16[0]}: set defender.bf16=false attacker.bf16=false"
    return "gpu", OK, f"{names}; bf16 {'no' if no_bf16 else 'yes'}"


def check_vllm(config: RunConfig | None) -> Check:
    wanted = config is not None and (config.attacker_grpo.use_vllm or config.defender_grpo.use_vllm)
    try:
        import vllm
    except Exception as err:  # noqa: BLE001 - a broken vllm install raises more than ImportError
        detail = "not installed" if isinstance(err, ModuleNotFoundError) and err.name == "vllm" else \
            f"not importable ({err.__class__.__name__}: {err})"
        return ("vllm", WARN, detail + "; the config sets use_vllm") if wanted else ("vllm", OK, detail + " (optional)")
    return "vllm", OK, vllm.__version__


def check_config(config_path: Path | None, overrides: list[str]) -> tuple[Check, RunConfig | None]:
    try:
        config = load_config(config_path, overrides)
    except UserError as err:
        return ("config", FAIL, str(err)), None
    except (OSError, UnicodeDecodeError) as err:
        return ("config", FAIL, f"{config_path}: unreadable ({err})"), None
    source = str(config_path) if config_path is not None else "defaults"
    return ("config", OK, source + (f" + {len(overrides)} override(s)" if overrides else "")), config


def check_model(role: str, settings: PolicySettings) -> Check:
    name = f"{role} model"
    if settings.path is None:
        return name, OK, "tiny default, built at run time"
    try:
        return name, OK, f"{settings.path}: {preflight.check_player(role, settings)}"
    except UserError as err:
        return name, FAIL, str(err)


def check_data(config: RunConfig) -> Check:
    """The config's data files, every row and image read as `sectow run` reads them."""
    try:
        counts = preflight.check_data(config)
    except UserError as err:
        return "data", FAIL, str(err)
    if not counts:
        return "data", OK, "the built-in miniature world"
    return "data", OK, ", ".join(f"{key}: {n} samples" for key, n in counts.items())


def check_benchmark(name: str, root: Path) -> Check:
    """Every row read and every image decoded, as `sectow eval` does: rows that cannot be evaluated are a
    warning with their count, a benchmark with none usable a failure. MMMU images go to a temporary folder."""
    import inspect
    import tempfile

    from sectow.data.benchmarks import BENCHMARKS, load_benchmark

    try:
        with tempfile.TemporaryDirectory(prefix="sectow-doctor-") as cache:
            takes_cache = name in BENCHMARKS and "cache_dir" in inspect.signature(BENCHMARKS[name]).parameters
            data = load_benchmark(name, root, **({"cache_dir": Path(cache)} if takes_cache else {}))
    except (UserError, OSError) as err:
        return f"benchmark {name}", FAIL, str(err)
    detail = f"{data.skip_line()} under {root}"
    if data.skipped:
        first = data.skipped[0]
        return f"benchmark {name}", WARN, f"{detail}; first: {first['id']}: {first['reason']}"
    return f"benchmark {name}", OK, detail


def check_judge(url: str) -> Check:
    if not url.startswith(("http://", "https://")):
        return "judge", FAIL, f"{url!r} must start with http:// or https://"
    base = url.rstrip("/")
    endpoint = base + ("/models" if base.endswith("/v1") else "/v1/models")  # as HttpJudge builds its URL
    try:
        with urllib.request.urlopen(endpoint, timeout=JUDGE_TIMEOUT_S) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):  # reachable; the judge sends its key, this probe does not
            return "judge", WARN, f"{endpoint} answered HTTP {err.code}: reachable, needs an API key"
        return "judge", FAIL, f"{endpoint} answered HTTP {err.code} {err.reason}"
    except (urllib.error.URLError, OSError) as err:
        return "judge", FAIL, f"{endpoint} unreachable ({getattr(err, 'reason', err)})"
    except ValueError:
        return "judge", FAIL, f"{endpoint} did not answer JSON"
    models = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)] if isinstance(body, dict) else []
    return "judge", OK, f"{endpoint}: {', '.join(map(str, models)) or 'no models listed'}"


def check_disk(config: RunConfig) -> Check:
    where = paths.nearest_existing(config.output_dir)
    free = shutil.disk_usage(where).free / GIB
    detail = f"{free:.1f} GiB free at {where}"
    if free < MIN_FREE_GIB:
        return "disk space", FAIL, detail
    # Each phase saves full copies of both players: with real checkpoints that is tens of GiB.
    if free < BIG_MODEL_FREE_GIB and (config.defender.path or config.attacker.path):
        return "disk space", WARN, detail + f"; real checkpoints want {BIG_MODEL_FREE_GIB}+"
    return "disk space", OK, detail


def check_output_dir(output_dir: Path) -> Check:
    try:
        where = paths.check_output_dir(output_dir)
    except UserError as err:
        return "output dir", FAIL, str(err)
    return "output dir", OK, str(output_dir) + ("" if where == output_dir.absolute() else f" (created under {where})")


def print_table(rows: list[Check], out: TextIO) -> None:
    width = max(len(name) for name, _, _ in rows)
    print(f"{'check':<{width}}  {'status':<6}  detail", file=out)
    for name, status, detail in rows:
        print(f"{name:<{width}}  {status:<6}  {detail}", file=out)


def run_doctor(config_path: Path | None, overrides: list[str], benchmarks: dict[str, Path] | None = None,
               judge_url: str | None = None, out: TextIO | None = None) -> int:
    """Run every check, print the table to `out` (None: sys.stdout at call time, so a replaced stdout is
    honoured), return 1 if any check failed, else 0."""
    config_row, config = check_config(config_path, overrides)
    rows = [check_python(), *check_packages(), check_gpu(config), check_vllm(config), config_row]
    if config is not None:  # the rest of the config's checks need a valid config; its FAIL row says why
        rows += [check_data(config), check_model("defender", config.defender), check_model("attacker", config.attacker)]
    rows += [check_benchmark(name, Path(root)) for name, root in (benchmarks or {}).items()]
    if judge_url:
        rows.append(check_judge(judge_url))
    if config is not None:
        rows += [check_disk(config), check_output_dir(config.output_dir)]
    print_table(rows, out or sys.stdout)
    return int(any(status == FAIL for _, status, _ in rows))
