import re

import pytest

from sectow.config import RunConfig, config_to_yaml, load_config, parse_config
from sectow.errors import UserError


def test_defaults_validate_and_round_trip(tmp_path):
    config = RunConfig()
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(config))
    assert load_config(path) == config


@pytest.mark.parametrize("raw,message", [
    ({"iteratons": 2}, "unknown key 'iteratons'; did you mean 'iterations'?"),
    ({"defender": {"pathh": "x"}}, "did you mean 'defender.path'?"),
    ({"defender_grpo": {"learnin_rate": 1}}, "did you mean 'defender_grpo.learning_rate'?"),
    ({"iterations": -1}, "iterations: Input should be greater than 0"),
    ({"defender_grpo": {"learning_rate": 0}}, "defender_grpo.learning_rate"),
    ({"seed": "abc"}, "seed: Input should be a valid integer"),
    ({"defender_grpo": {"baseline": "panic"}}, "defender_grpo.baseline"),
    ({"name": "../elsewhere"}, "name: String should match pattern"),
])
def test_bad_keys_name_the_key(raw, message):
    with pytest.raises(UserError, match=None) as err:
        parse_config(raw, "my.yaml")
    assert message in str(err.value) and str(err.value).startswith("my.yaml")
    assert "\n" not in str(err.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("iterations: 2\ndefender: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+: YAML syntax error"):
        load_config(path)


def test_overrides():
    config = load_config(None, ["iterations=5", "defender.lora.rank=4", "monitors.orr_bound=0.2"])
    assert config.iterations == 5 and config.defender.lora.rank == 4 and config.monitors.orr_bound == 0.2
    with pytest.raises(UserError, match="expected key=value"):
        load_config(None, ["iterations"])


def test_setting_one_key_keeps_the_rest_of_its_section():
    config = load_config(None, ["defender_grpo.steps=2", "attacker.lora.rank=8"])
    defaults = RunConfig()
    assert config.defender_grpo.steps == 2
    assert config.defender_grpo.model_dump(exclude={"steps"}) == defaults.defender_grpo.model_dump(exclude={"steps"})
    assert config.attacker.max_new_tokens == defaults.attacker.max_new_tokens  # 64, not the class default 24
    assert config.attacker.lora.rank == 8 and config.attacker.lora.alpha == 32


def test_readme_lists_every_config_key():
    from pathlib import Path

    from pydantic import BaseModel

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()

    def keys(model: BaseModel, prefix: str = ""):
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel) and name != "lora":
                yield from keys(value, f"{prefix}{name}.")
            else:
                yield prefix + name

    missing = [key for key in keys(RunConfig()) if f"| `{key}` |" not in readme]
    assert not missing, f"README's config reference lacks {missing}"


@pytest.mark.parametrize("override,message", [
    ("attacker_grpo.batch_size=6", "batch_size (6) must be a multiple of num_generations (4)"),
    ("attacker_grpo.num_generations=3", "must be a multiple of num_generations (3)"),
    ("monitors.min_query_chars=500", "min_query_chars (500) is above max_query_chars (400)"),
    ("defender.hidden_size=16", "must be a multiple of 64"),
    ("defender_sft.learning_rate=.inf", "finite"),
    ("seed=4294967296", "less than 2147483648"),
    ("seed=-1", "greater than or equal to 0"),
    ("defender_sft.trl={max_grad_nrm: 1}", "did you mean 'max_grad_norm'"),
    ("attacker_grpo.trl={beta: 0.1}", "'beta' is set by sectow from 'beta'"),
    ("attacker_grpo.trl={output_dir: x}", "'output_dir' is set by sectow"),
    ("attacker_grpo.trl={loss_type: 3}", "'loss_type' takes a str"),
    ("judge.kind=all", "needs at least one judge in parts"),
    ("judge.parts=[{kind: refusal}]", "parts are for all/any judges"),
])
def test_cross_field_checks_at_load_time(override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(None, [override])


def test_trl_passthrough_reaches_the_trainer():
    from sectow.training.common import trainer_kwargs

    config = load_config(None, ["defender_grpo.trl={max_grad_norm: 0.5, loss_type: dr_grpo}"])
    kwargs = trainer_kwargs("out", 0, config.defender_grpo, bf16=False)
    assert kwargs["max_grad_norm"] == 0.5 and kwargs["loss_type"] == "dr_grpo"
    assert kwargs["learning_rate"] == config.defender_grpo.learning_rate


def test_yaml_merge_keys_work_and_own_keys_override(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("defender_sft: &sft {steps: 3, learning_rate: 0.001}\nattacker_sft:\n  <<: *sft\n  steps: 4\n")
    config = load_config(path)
    assert config.attacker_sft.steps == 4 and config.attacker_sft.learning_rate == 0.001
    assert config.defender_sft.steps == 3
