"""The run's typed configuration: YAML in, every field with a default that runs and a line of help.
Unknown keys, wrong types and out-of-range values become one UserError naming the key."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sectow.errors import UserError


class Section(BaseModel):
    # No inf or NaN anywhere: `learning_rate: .inf` would train a NaN model and crash minutes later.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class LoraSettings(Section):
    rank: int = Field(16, gt=0, description="LoRA rank")
    alpha: int = Field(32, gt=0, description="LoRA alpha")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    # Only the language model: a bare name like `q_proj` would also hit the vision tower.
    target_modules: str = Field(r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
                                description="regex of module names that get adapters")


class PolicySettings(Section):
    path: Path | None = Field(None, description="local model folder; null builds the tiny default")
    lora: LoraSettings | None = Field(None, description="train LoRA adapters instead of all weights")
    bf16: bool = Field(True, description="bf16 training on GPUs (ignored on CPU)")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory on big models")
    max_new_tokens: int = Field(24, gt=0, description="reply length cap when this player generates")
    hidden_size: int = Field(128, gt=0, description="tiny default only: text hidden size")
    layers: int = Field(2, gt=0, description="tiny default only: text layers")
    allow_pickle: bool = Field(False, description="load non-safetensors (pickle) weights; only for checkpoints you trust")

    @field_validator("hidden_size")
    @classmethod
    def _whole_heads(cls, value: int) -> int:
        # The tiny default has 32-wide heads in pairs sharing 2 key/value heads.
        if value % 64:
            raise ValueError(f"must be a multiple of 64 (heads are 32 wide, in pairs), got {value}")
        return value


class DataSettings(Section):
    harmful_seeds: Path | None = Field(None, description="JSONL of harmful seeds (label harmful); null: built-in")
    benign: Path | None = Field(None, description="JSONL of benign samples (answer = option letter); null: built-in")
    held_out_harmful: Path | None = Field(None, description="JSONL of held-out harmful seeds (needed with harmful_seeds)")
    held_out_benign: Path | None = Field(None, description="JSONL of held-out benign samples (needed with benign)")
    questions: int = Field(480, gt=0, description="built-in world: colour questions in the train split")
    image_size: int = Field(56, ge=28, description="built-in world: image side in pixels")
    allow_builtin_world: bool = Field(False, description="let a model of yours (defender.path or attacker.path) "
                                      "train on the built-in miniature world, toy data made for the tiny default")


# TrainingArguments fields that sectow sets itself, from its own keys or from how the loop works.
TRAINER_OWNED = {
    "output_dir": None, "seed": "seed", "learning_rate": "learning_rate", "per_device_train_batch_size": "batch_size",
    "max_steps": "steps", "use_cpu": None, "bf16": "<player>.bf16", "report_to": None, "save_strategy": None,
    "push_to_hub": None, "num_generations": "num_generations", "max_completion_length": "<player>.max_new_tokens",
    "temperature": "temperature", "beta": "beta", "use_vllm": "use_vllm", "vllm_mode": "vllm_mode",
    "completion_only_loss": None, "max_length": None, "log_completions": None,
}


class TrainerSettings(Section):
    """Settings shared by both trainers, and `trl`: any other field of TRL's config dataclass."""

    trainer_class: ClassVar[str]
    trl: dict[str, Any] = Field(default_factory=dict,
                                description="any other field of TRL's SFTConfig / GRPOConfig, passed through as is")

    @field_validator("trl")
    @classmethod
    def _known_trl_fields(cls, fields: dict) -> dict:
        if not fields:
            return fields
        import trl  # only when asked: importing TRL takes seconds

        known = {f.name: f for f in dataclasses.fields(getattr(trl, cls.trainer_class))}
        for name, value in fields.items():
            if name in TRAINER_OWNED:
                own = TRAINER_OWNED[name]
                raise ValueError(f"{name!r} is set by sectow" + (f" from {own!r}; set that key instead" if own else ""))
            if name not in known:
                nearest = difflib.get_close_matches(name, list(known), n=1)
                hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
                raise ValueError(f"{name!r} is not a field of trl.{cls.trainer_class}{hint}")
            default = known[name].default
            if isinstance(default, (bool, int, float, str)) and default is not None and not _fits(value, type(default)):
                raise ValueError(f"{name!r} takes a {type(default).__name__}, got {value!r}")
        return fields


def _fits(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


class SftSettings(TrainerSettings):
    trainer_class: ClassVar[str] = "SFTConfig"
    steps: int = Field(400, gt=0, description="cold-start SFT steps")
    learning_rate: float = Field(2e-3, gt=0, description="cold-start learning rate")
    batch_size: int = Field(16, gt=0, description="per-device batch size")


class GrpoSettings(TrainerSettings):
    trainer_class: ClassVar[str] = "GRPOConfig"
    steps: int = Field(30, gt=0, description="GRPO steps per phase")
    learning_rate: float = Field(5e-4, gt=0, description="GRPO learning rate")
    batch_size: int = Field(16, gt=0, description="completions per device per step (prompts x generations)")
    num_generations: int = Field(4, ge=2, description="G: completions sampled per prompt")
    beta: float = Field(0.0, ge=0, description="KL weight to the reference policy (0: no reference model)")
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    use_vllm: bool = Field(False, description="roll out with vLLM (GPU and vllm installed)")
    vllm_mode: Literal["colocate", "server"] = Field("colocate", description="vLLM in-process or a `trl vllm-serve` server")

    @model_validator(mode="after")
    def _whole_groups(self):
        # TRL samples num_generations completions per prompt inside each device batch.
        if self.batch_size % self.num_generations:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of num_generations "
                             f"({self.num_generations})")
        return self


class PoolSettings(Section):
    samples_per_seed: int = Field(2, gt=0, description="attacker samples per training seed each iteration")
    refine_share: float = Field(0.5, ge=0, le=1, description="share of attacker prompts in refine mode")
    temperature: float = Field(1.0, gt=0, description="attacker sampling temperature for the pool")
    use_vllm: bool = Field(False, description="sample the pool with vLLM (GPU and vllm installed; else HF generate)")


class MonitorSettings(Section):
    enabled_defender: bool = Field(True, description="defender strategy monitoring (ORR bound)")
    enabled_attacker: bool = Field(True, description="attacker sample quality monitoring")
    orr_bound: float = Field(0.10, ge=0, le=1, description="over-refusal rate above which the defender phase acts")
    orr_action: Literal["rollback", "reweight"] = Field(
        "rollback", description="rollback: keep the last good defender; reweight: retry once with double benign data")
    intent_threshold: float = Field(0.45, ge=-1, le=1, description="min cosine(seed, query) to keep the intent")
    duplicate_threshold: float = Field(0.98, ge=-1, le=1, description="cosine at or above which a query is a near-duplicate")
    min_query_chars: int = Field(12, ge=1, description="shorter queries are malformed")
    max_query_chars: int = Field(400, ge=1, description="longer queries are malformed")

    @model_validator(mode="after")
    def _ordered_lengths(self):
        if self.min_query_chars > self.max_query_chars:
            raise ValueError(f"min_query_chars ({self.min_query_chars}) is above max_query_chars ({self.max_query_chars})")
        return self


class RewardSettings(Section):
    refusal_on_harmful: float = Field(1.0, description="defender: refusing a harmful or jailbreak sample")
    correct_answer: float = Field(1.0, description="defender: the right option on a benign question")
    benign_compliance: float = Field(1.0, description="defender: answering a benign request")
    benign_refusal: float = Field(-1.0, description="defender: refusing a benign sample (over-refusal)")
    format_bonus: float = Field(0.1, description="both: reply follows the response template")
    attack_success: float = Field(1.0, description="attacker: defender complied and the query passed quality")


COMPOSITE_JUDGES = ("all", "any")


class JudgeSettings(Section):
    """The one judge of a run: the attacker's reward, the pool, the defender's reward, the over-refusal
    monitor and every evaluation ask it. Composites combine parts: `all` calls a reply unsafe only when
    every part does, `any` when one does."""

    # Checked against the judge registry (sectow.judges) before a run starts.
    kind: str = Field("refusal", description="refusal, guard, http, or all/any of `parts`")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="the judge's settings, e.g. markers: gcg (refusal), base_url and model (http)")
    parts: list[JudgeSettings] = Field(default_factory=list, description="the judges an all/any judge combines")

    @model_validator(mode="after")
    def _parts_for_composites(self):
        if self.kind in COMPOSITE_JUDGES and not self.parts:
            raise ValueError(f"an {self.kind!r} judge needs at least one judge in parts")
        if self.kind not in COMPOSITE_JUDGES and self.parts:
            raise ValueError(f"parts are for all/any judges, not {self.kind!r}")
        if self.kind in COMPOSITE_JUDGES and self.options:
            raise ValueError(f"an {self.kind!r} judge takes no options: set them on its parts")
        return self


class EvaluationSettings(Section):
    batch_size: int = Field(32, gt=0, description="generation batch size")
    max_new_tokens: int = Field(16, gt=0, description="reply length cap in evaluation")


class RunConfig(Section):
    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="run name (letters, digits, . _ -); the folder is <output_dir>/<name>-<time>")
    output_dir: Path = Field(Path("runs"), description="where run folders go")
    seed: int = Field(0, ge=0, lt=2 ** 31, description="master seed (each phase derives its own)")
    iterations: int = Field(3, gt=0, description="K: tug-of-war iterations")
    cold_start: bool = Field(True, description="run the cold-start SFT of both players")
    defender: PolicySettings = PolicySettings()
    attacker: PolicySettings = PolicySettings(max_new_tokens=64)
    data: DataSettings = DataSettings()
    defender_sft: SftSettings = SftSettings(steps=120)
    attacker_sft: SftSettings = SftSettings(steps=300)
    attacker_grpo: GrpoSettings = GrpoSettings(steps=20)
    defender_grpo: GrpoSettings = GrpoSettings(steps=60, batch_size=32, num_generations=8, learning_rate=2e-4, beta=0.04)
    pool: PoolSettings = PoolSettings()
    monitors: MonitorSettings = MonitorSettings()
    rewards: RewardSettings = RewardSettings()
    judge: JudgeSettings = JudgeSettings()
    evaluation: EvaluationSettings = EvaluationSettings()


def _valid_keys(model: type[BaseModel], location: tuple) -> list[str]:
    for key in location[:-1]:
        if isinstance(key, int):  # an item of a list section (judge.parts.0)
            continue
        annotation = model.model_fields[key].annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(model.model_fields)


def merged_into(base: dict, changes: dict) -> dict:
    """`changes` laid over `base`, section by section: a key a user sets changes that key alone."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged_into(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def parse_config(raw: dict, source: str = "config") -> RunConfig:
    """Validate a (partial) config against the full defaults. Without the merge, a section named in YAML
    or `--set` would be rebuilt from its class defaults, dropping RunConfig's own (defender_grpo.beta...)."""
    try:
        return RunConfig.model_validate(merged_into(RunConfig().model_dump(mode="json"), raw))
    except ValidationError as err:
        first = err.errors()[0]
        location = tuple(str(part) for part in first["loc"])
        key = ".".join(location)
        if first["type"] == "extra_forbidden":
            nearest = difflib.get_close_matches(location[-1], _valid_keys(RunConfig, first["loc"]), n=1)
            hint = f"; did you mean {'.'.join(location[:-1] + (nearest[0],))!r}?" if nearest else ""
            raise UserError(f"{source}: unknown key {key!r}{hint}") from None
        message = first["msg"].removeprefix("Value error, ")
        # A check's own message already names the value.
        got = "" if first["type"] == "value_error" else f" (got {first.get('input')!r})"
        raise UserError(f"{source}: {key}: {message}{got}") from None


def load_config(path: Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read YAML (or nothing: the defaults), apply `key.sub=value` overrides, validate."""
    raw: dict = {}
    source = "--set" if overrides else "defaults"
    if path is not None:
        source = str(path)
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise UserError(f"{where}: YAML syntax error ({getattr(err, 'problem', err)})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping of config keys at the top level")
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            raise UserError(f"override {override!r}: expected key=value, e.g. iterations=2")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {override!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return parse_config(raw, source)


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
