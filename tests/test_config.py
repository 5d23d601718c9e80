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
    ({"monitors": {"orr_action": "panic"}}, "monitors.orr_action"),
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
