"""Everything `sectow run` reads, checked before a run folder exists: a mistake in the data, a model
folder or the output folder stops the run in seconds, as one line naming the file, row or key, rather
than hours into training with a half-made run folder left behind."""

from __future__ import annotations

import os

from sectow.attacks.forms import FORMS
from sectow.config import RunConfig
from sectow.data.schema import load_image, read_samples
from sectow.errors import UserError
from sectow.judges import check_judge
from sectow.models.folder import check_model_folder, sees_images
from sectow.paths import check_output_dir

# The four files of the user's own data and the label every row of each must carry.
DATA_LABELS = {"harmful_seeds": "harmful", "held_out_harmful": "harmful", "benign": "benign",
               "held_out_benign": "benign"}


def check_run_inputs(config: RunConfig) -> None:
    """Raise a UserError for the first problem in the launch, data, model folders or output folder of `config`."""
    check_launch()
    check_judge(config.judge)
    for role in ("defender", "attacker"):
        settings = getattr(config, role)
        if settings.path is not None:
            check_model_folder(settings.path, settings.allow_pickle, flag=f"{role}.allow_pickle")
    check_data(config)
    check_output_dir(config.output_dir)


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


def check_data(config: RunConfig) -> None:
    """Every row of the user's data files, and every image they name, opened as the run will open it."""
    paths = {key: getattr(config.data, key) for key in DATA_LABELS}
    if all(path is None for path in paths.values()):
        check_builtin_world(config)
        return
    missing = [key for key, path in paths.items() if path is None]
    if missing:
        raise UserError(f"config: data.{missing[0]} is required when bringing your own data")
    opened: set[str] = set()
    text_only = not sees_images(config.defender.path)
    for key, path in paths.items():
        samples = read_samples(path)
        if not samples:
            raise UserError(f"{path}: no samples (data.{key})")
        for sample in samples:
            if sample.label != DATA_LABELS[key]:
                raise UserError(f"{path}: sample {sample.id!r} is labelled {sample.label!r}, but data.{key} "
                                f"holds {DATA_LABELS[key]} samples")
            if text_only and sample.form in FORMS and FORMS[sample.form].typographic:
                raise UserError(f"{path}: sample {sample.id!r} is in the typographic form {sample.form!r}, which "
                                f"puts its request into the image, but defender.path ({config.defender.path}) is "
                                "a text-only model that never sees images; leave such rows out, or use a "
                                "vision-language defender")
            if sample.image is not None and sample.image not in opened:
                load_image(sample.image)
                opened.add(sample.image)
