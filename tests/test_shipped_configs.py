"""The shipped accelerate configs and run recipes: each accelerate config reads as `accelerate launch
--config_file` reads it, and each recipe loads as `sectow run --config` loads it, with the launch command
its header gives pointing at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl as qwen2_5_vl
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType

from sectow.config import load_config

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = ROOT / "configs" / "accelerate"
RECIPES = sorted((ROOT / "configs" / "recipes").glob("*.yaml"))

# name -> (distributed type, DeepSpeed ZeRO stage)
EXPECTED = {
    "single_gpu": (DistributedType.NO, None),
    "multi_gpu": (DistributedType.MULTI_GPU, None),
    "deepspeed_zero2": (DistributedType.DEEPSPEED, 2),
    "deepspeed_zero3": (DistributedType.DEEPSPEED, 3),
    "fsdp": (DistributedType.FSDP, None),
}


def test_every_accelerate_config_is_expected():
    assert sorted(p.stem for p in ACCELERATE.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_config_reads_as_accelerate_launch_reads_it(name):
    path = str(ACCELERATE / f"{name}.yaml")
    config = load_config_from_file(path)  # what `accelerate launch --config_file` calls
    distributed_type, zero_stage = EXPECTED[name]
    assert config.distributed_type == distributed_type
    assert config.mixed_precision == "bf16" and not config.use_cpu
    assert config.deepspeed_config.get("zero_stage") == zero_stage
    # Section keys are copied onto the launch arguments unchecked: a misspelt one would be ignored.
    options = {action.dest for action in launch_command_parser()._actions}
    for key in [*config.deepspeed_config, *config.fsdp_config]:
        assert key in options, f"{name}: {key} is not an accelerate launch option"
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(
        ["--config_file", path, "-m", "sectow.cli", "run"]))
    assert (args.use_deepspeed, args.use_fsdp, args.multi_gpu) == (
        distributed_type == DistributedType.DEEPSPEED, distributed_type == DistributedType.FSDP,
        distributed_type == DistributedType.MULTI_GPU)


def test_fsdp_wraps_classes_that_exist_in_transformers():
    wrapped = load_config_from_file(str(ACCELERATE / "fsdp.yaml")).fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    assert wrapped.split(",") == ["Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"]
    assert all(hasattr(qwen2_5_vl, name) for name in wrapped.split(","))


def test_recipes_are_shipped():
    assert {p.stem for p in RECIPES} == {"qwen2.5-vl-3b-lora", "qwen2.5-vl-3b-full", "qwen2.5-vl-7b-lora",
                                         "qwen2.5-vl-7b-full"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_its_header_launches_it(recipe):
    config = load_config(recipe)
    size = re.search(r"(\d+b)", recipe.stem).group(1).upper()
    for player in (config.defender, config.attacker):
        assert str(player.path) == f"/models/Qwen2.5-VL-{size}-Instruct"
        assert player.bf16 and player.gradient_checkpointing
        assert (player.lora is not None) == recipe.stem.endswith("lora")
    for grpo in (config.attacker_grpo, config.defender_grpo):
        assert grpo.batch_size % grpo.num_generations == 0  # TRL needs whole groups on every device
    header = recipe.read_text().split("\n\n")[0]
    assert "GPU memory" in header and "ESTIMATE" in header
    launches = [line for line in header.splitlines() if "accelerate launch" in line]
    assert launches
    for line in launches:
        assert re.search(r"--config (\S+)", line).group(1) == f"configs/recipes/{recipe.name}"
        assert (ROOT / re.search(r"--config_file (\S+)", line).group(1)).is_file()
