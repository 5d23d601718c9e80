"""Everything `sectow run` reads, checked before a run folder exists: a mistake in the data, a model
folder or the output folder stops the run in seconds, as one line naming the file, row or key, rather
than hours into training with a half-made run folder left behind."""

from __future__ import annotations

import os

from sectow.config import PolicySettings, RunConfig
from sectow.data.schema import load_image, read_samples
from sectow.errors import UserError
from sectow.judges import check_judge
from sectow.models.folder import check_chat_template, check_model_folder
from sectow.paths import check_output_dir

# The four files of the user's own data and the label every row of each must carry.
DATA_LABELS = {"harmful_seeds": "harmful", "held_out_harmful": "harmful", "benign": "benign",
               "held_out_benign": "benign"}


def check_run_inputs(config: RunConfig, output_dir: bool = True) -> None:
    """Raise a UserError for the first problem in the launch, data, model folders or (unless `output_dir` is
    False, as on a resume) output folder of `config`."""
    check_launch()
    check_judge(config.judge)
    check_data(config)
    check_players(config)
    if output_dir:
        check_output_dir(config.output_dir)


def check_players(config: RunConfig) -> None:
    for role in ("defender", "attacker"):
        settings = getattr(config, role)
        if settings.path is not None:
            check_player(role, settings)


def check_player(role: str, settings: PolicySettings) -> str:
    """A player's model folder, as `load_policy` will open it, with the chat template every prompt needs;
    returns its one-line description. A text-only causal LM is a player too (its rows carry no images)."""
    described = check_model_folder(settings.path, settings.allow_pickle, flag=f"{role}.allow_pickle")
    check_chat_template(settings.path)
    return described


def check_builtin_world(config: RunConfig) -> None:
    """The built-in world is toy data for the tiny default (fixed templated requests, a placeholder for
    compliance): a model of yours trains on it only when told, so that nobody hardens a 7B model on it by
    accident."""
    mine = [role for role in ("defender", "attacker") if getattr(config, role).path is not None]
    if mine and not config.data.allow_builtin_world:
        raise UserError(f"config: {mine[0]}.path is a model of yours, but no data is set, so it would train on the "
                        "built-in miniature world (toy data for the tiny default); set data.harmful_seeds, "
                        "data.held_out_harmful, data.benign and data.held_out_benign (e.g. to configs/data/smollm2/), "
                        "or data.allow_builtin_world=true")


def check_launch() -> None:
    """Refuse sharded weights (set by `accelerate launch`): the main process saves each trained player
    and runs the over-refusal check alone, which needs whole weights; sharded ones would be saved empty."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        raise UserError("accelerate config: DeepSpeed ZeRO-3 and FSDP shard the weights, which sectow run does not "
                        "gather yet; use configs/accelerate/deepspeed_zero2.yaml or multi_gpu.yaml")


def check_data(config: RunConfig) -> dict[str, int]:
    """Every row of the user's data files, and every image they name, opened as the run will open it; no id
    in two files (a held-out sample that is also trained on would make the held-out figures a lie). Returns
    the number of samples per file."""
    paths = {key: getattr(config.data, key) for key in DATA_LABELS}
    if all(path is None for path in paths.values()):
        check_builtin_world(config)
        return {}
    missing = [key for key, path in paths.items() if path is None]
    if missing:
        raise UserError(f"config: data.{missing[0]} is required when bringing your own data")
    opened: set[str] = set()
    ids: dict[str, str] = {}  # sample id -> the data key of the file it first appeared in
    counts = {}
    for key, path in paths.items():
        samples = read_samples(path)
        if not samples:
            raise UserError(f"{path}: no samples (data.{key})")
        shared = sorted(s.id for s in samples if s.id in ids)
        if shared:
            other = ids[shared[0]]
            raise UserError(f"{path}: {len(shared)} sample id(s) also in data.{other} ({paths[other]}): "
                            f"{', '.join(map(repr, shared[:5]))}{', ...' if len(shared) > 5 else ''}; ids must be "
                            "unique across the four data files (a held-out sample must not be trained on)")
        ids.update((s.id, key) for s in samples)
        for sample in samples:
            if sample.label != DATA_LABELS[key]:
                raise UserError(f"{path}: sample {sample.id!r} is labelled {sample.label!r}, but data.{key} "
                                f"holds {DATA_LABELS[key]} samples")
            if sample.image is not None and sample.image not in opened:
                load_image(sample.image)
                opened.add(sample.image)
        counts[key] = len(samples)
    return counts
