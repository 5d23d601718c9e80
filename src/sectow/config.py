"""The run's typed configuration: YAML in, every field with a default that runs and a line of help.
Unknown keys, wrong types and out-of-range values become one UserError naming the key."""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt,
                      ValidationError, field_validator, model_validator)

from sectow.errors import UserError
from sectow.paths import path_problem


def _not_a_bool(value):
    # pydantic reads True as 1.0; a boolean where a number goes is a mistake
    if isinstance(value, bool):
        raise ValueError("Input should be a number, not a boolean")
    return value


def _usable_path(value: Path) -> Path:
    problem = path_problem(value)
    if problem:
        raise ValueError(f"the path {problem}")
    return value


# Every field's type: integers and booleans are strict (`iterations: "3"` or `cold_start: 1` are refused, not
# read as 3 and true); numbers take any int or float (YAML reads `1e-3` as a string, so strings that parse are
# accepted) but no boolean; paths are checked for NUL bytes and lengths the operating system refuses.
Int = StrictInt
Bool = StrictBool
Number = Annotated[float, BeforeValidator(_not_a_bool)]
UserPath = Annotated[Path, AfterValidator(_usable_path)]


class Section(BaseModel):
    # No inf or NaN anywhere: `learning_rate: .inf` would train a NaN model and crash minutes later.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class LoraSettings(Section):
    rank: Int = Field(16, gt=0, description="LoRA rank")
    alpha: Int = Field(32, gt=0, description="LoRA alpha")
    dropout: Number = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    # Only the language model: a bare name like `q_proj` would also hit the vision tower.
    target_modules: str = Field(r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
                                description="regex of module names that get adapters")


class PolicySettings(Section):
    path: UserPath | None = Field(None, description="local model folder; null builds the tiny default")
    lora: LoraSettings | None = Field(None, description="train LoRA adapters instead of all weights")
    bf16: Bool = Field(True, description="bf16 training on GPUs (ignored on CPU)")
    gradient_checkpointing: Bool = Field(False, description="trade compute for memory on big models")
    max_new_tokens: Int = Field(24, gt=0, description="reply length cap when this player generates")
    hidden_size: Int = Field(128, gt=0, description="tiny default only: text hidden size")
    layers: Int = Field(2, gt=0, description="tiny default only: text layers")
    allow_pickle: Bool = Field(False, description="load non-safetensors (pickle) weights; only for checkpoints you trust")
    train_vision: Bool = Field(False, description="train the vision tower and projector too; off, they stay frozen, so "
                               "that what the model reads in pictures stays readable while its language model learns")

    @field_validator("hidden_size")
    @classmethod
    def _whole_heads(cls, value: int) -> int:
        # The tiny default has 32-wide heads in pairs sharing 2 key/value heads.
        if value % 64:
            raise ValueError(f"must be a multiple of 64 (heads are 32 wide, in pairs), got {value}")
        return value


class DataSettings(Section):
    harmful_seeds: UserPath | None = Field(None, description="JSONL of harmful seeds (label harmful); null: built-in")
    benign: UserPath | None = Field(None, description="JSONL of benign samples (answer = option letter); null: built-in")
    held_out_harmful: UserPath | None = Field(None, description="JSONL of held-out harmful seeds (needed with harmful_seeds)")
    held_out_benign: UserPath | None = Field(None, description="JSONL of held-out benign samples (needed with benign)")
    questions: Int = Field(480, gt=0, description="built-in world: colour questions in the train split")
    image_size: Int = Field(56, ge=28, description="built-in world: image side in pixels")
    allow_builtin_world: Bool = Field(False, description="let a model of yours (defender.path or attacker.path) "
                                      "train on the built-in miniature world, toy data made for the tiny default")


# TrainingArguments fields that sectow sets itself, from its own keys or from how the loop works.
TRAINER_OWNED = {
    "output_dir": None, "seed": "seed", "learning_rate": "learning_rate", "per_device_train_batch_size": "batch_size",
    "max_steps": "steps", "use_cpu": None, "bf16": "<player>.bf16", "report_to": "tracking.report_to", "run_name": None, "project": "tracking.project", "save_strategy": None,
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
            if not _finite(value):
                raise ValueError(f"{name!r} is {value!r}: numbers must be finite")
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


def _finite(value) -> bool:
    """No NaN or infinity anywhere in a value read from YAML (passthroughs and options are not typed)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _fits(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


class SftSettings(TrainerSettings):
    trainer_class: ClassVar[str] = "SFTConfig"
    steps: Int = Field(400, gt=0, description="cold-start SFT steps")
    learning_rate: Number = Field(2e-3, gt=0, description="cold-start learning rate")
    batch_size: Int = Field(16, gt=0, description="per-device batch size")


class GrpoSettings(TrainerSettings):
    trainer_class: ClassVar[str] = "GRPOConfig"
    steps: Int = Field(30, gt=0, description="GRPO steps per phase")
    learning_rate: Number = Field(5e-4, gt=0, description="GRPO learning rate")
    batch_size: Int = Field(16, gt=0, description="completions per device per step (prompts x generations)")
    num_generations: Int = Field(4, ge=2, description="G: completions sampled per prompt")
    beta: Number = Field(0.0, ge=0, description="KL weight to the reference policy (0: no reference model)")
    temperature: Number = Field(1.0, gt=0, description="rollout sampling temperature")
    use_vllm: Bool = Field(False, description="roll out with vLLM (GPU and vllm installed)")
    vllm_mode: Literal["colocate", "server"] = Field("colocate", description="vLLM in-process or a `trl vllm-serve` server")
    baseline: Literal["group", "batch"] = Field("group", description=(
        "what a completion's reward is compared with: group, the mean of its prompt's G completions (GRPO); batch, "
        "the mean of the whole batch (REINFORCE-style), so a group whose completions all agree still gets a signal"))

    @model_validator(mode="after")
    def _whole_groups(self):
        # TRL samples num_generations completions per prompt inside each device batch.
        if self.batch_size % self.num_generations:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of num_generations "
                             f"({self.num_generations})")
        return self


class PoolSettings(Section):
    samples_per_seed: Int = Field(2, gt=0, description="attacker samples per training seed each iteration")
    refine_share: Number = Field(0.5, ge=0, le=1, description="share of attacker prompts in refine mode")
    temperature: Number = Field(1.0, gt=0, description="attacker sampling temperature for the pool")
    use_vllm: Bool = Field(False, description="sample the pool with vLLM (GPU and vllm installed; else HF generate)")


class MonitorSettings(Section):
    enabled_defender: Bool = Field(True, description="defender strategy monitoring (ORR bound)")
    enabled_attacker: Bool = Field(True, description="attacker sample quality monitoring")
    orr_bound: Number = Field(0.10, ge=0, le=1, description="validation over-refusal rate a defender checkpoint may not exceed")
    check_every: Int = Field(15, gt=0, description="defender GRPO steps between two-sided checks on the validation split")
    intent_threshold: Number = Field(0.45, ge=-1, le=1, description="min cosine(seed, query) to keep the intent")
    duplicate_threshold: Number = Field(0.98, ge=-1, le=1, description="cosine at or above which a query is a near-duplicate")
    min_query_chars: Int = Field(12, ge=1, description="shorter queries are malformed")
    max_query_chars: Int = Field(400, ge=1, description="longer queries are malformed")

    @model_validator(mode="after")
    def _ordered_lengths(self):
        if self.min_query_chars > self.max_query_chars:
            raise ValueError(f"min_query_chars ({self.min_query_chars}) is above max_query_chars ({self.max_query_chars})")
        return self


class RewardSettings(Section):
    refusal_on_harmful: Number = Field(1.0, description="defender: refusing a harmful or jailbreak sample")
    correct_answer: Number = Field(1.0, description="defender: the right option on a benign question")
    benign_compliance: Number = Field(1.0, description="defender: answering a benign request")
    benign_refusal: Number = Field(-1.0, description="defender: refusing a benign sample (over-refusal)")
    format_bonus: Number = Field(0.1, description="both: reply follows the response template")
    attack_success: Number = Field(1.0, description="attacker: defender complied and the query passed quality")


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
        broken = next((name for name, value in self.options.items() if not _finite(value)), None)
        if broken is not None:
            raise ValueError(f"option {broken!r} is {self.options[broken]!r}: numbers must be finite")
        return self


class EvaluationSettings(Section):
    batch_size: Int = Field(32, gt=0, description="generation batch size")
    max_new_tokens: Int = Field(16, gt=0, description="reply length cap in evaluation")


class TrackingSettings(Section):
    """Where the run's figures go: every trainer's logs and the loop's own per-iteration figures, under the
    run folder's name. Nothing is sent anywhere unless named here."""

    report_to: list[str] = Field(default_factory=list, description=(
        "trackers for every trainer and the loop's figures: tensorboard, wandb, trackio, ... (transformers' "
        "integrations); [] sends nothing"))
    project: str = Field("sectow", min_length=1, description="the project wandb and trackio file the run under")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if value is None or value == "none":
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("report_to")
    @classmethod
    def _known_integrations(cls, names: list[str]) -> list[str]:
        if not names:
            return names
        # Only when asked: importing transformers takes seconds.
        from transformers.integrations.integration_utils import (INTEGRATION_TO_CALLBACK,
                                                                  get_available_reporting_integrations)

        for name in names:
            if name in ("all", "none"):
                raise ValueError(f"{name!r} is not accepted here: name the trackers, so that nothing is sent "
                                 "anywhere unasked")
            if name not in INTEGRATION_TO_CALLBACK:
                nearest = difflib.get_close_matches(name, list(INTEGRATION_TO_CALLBACK), n=1)
                hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
                raise ValueError(f"{name!r} is not a tracker transformers knows ({', '.join(INTEGRATION_TO_CALLBACK)})"
                                 f"{hint}")
            if name not in get_available_reporting_integrations():
                raise ValueError(f"{name!r} is not installed (pip install {name.replace('_', '-')})")
        return list(dict.fromkeys(names))


class RunConfig(Section):
    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=200,
                      description="run name (letters, digits, . _ -); the folder is <output_dir>/<name>-<time>")
    output_dir: UserPath = Field(Path("runs"), description="where run folders go")
    seed: Int = Field(0, ge=0, lt=2 ** 31, description="master seed (each phase derives its own)")
    iterations: Int = Field(3, gt=0,
                            description="K: tug-of-war iterations (the one key a resumed run may change, upwards)")
    cold_start: Bool = Field(True, description="run the cold-start SFT of both players")
    defender: PolicySettings = PolicySettings()
    attacker: PolicySettings = PolicySettings(max_new_tokens=80)
    data: DataSettings = DataSettings()
    defender_sft: SftSettings = SftSettings(steps=120)
    attacker_sft: SftSettings = SftSettings(steps=300)
    # The attacker: a KL anchor to its cold start and a lower learning rate than before, against collapse.
    attacker_grpo: GrpoSettings = GrpoSettings(steps=20, learning_rate=2e-4, beta=0.04)
    defender_grpo: GrpoSettings = GrpoSettings(steps=60, batch_size=32, num_generations=8, learning_rate=2e-4, beta=0.04,
                                               baseline="batch")
    pool: PoolSettings = PoolSettings()
    monitors: MonitorSettings = MonitorSettings()
    rewards: RewardSettings = RewardSettings()
    judge: JudgeSettings = JudgeSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    tracking: TrackingSettings = TrackingSettings()


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


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def judge_settings(kind: str, options: dict, source: str = "--judge-option") -> JudgeSettings:
    """The judge settings a command builds from its options (eval, attack), refused in one line naming `source`."""
    try:
        return JudgeSettings(kind=kind, options=options)
    except ValidationError as err:
        raise UserError(f"{source}: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None


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
        got = "" if first["type"] == "value_error" else f" (got {_short(repr(first.get('input')))})"
        raise UserError(f"{source}: {key}: {message}{got}") from None


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, mark):
        self.key, self.problem_mark = key, mark


MERGE = "tag:yaml.org,2002:merge"
# A config is a few hundred nodes; these bounds refuse a billion-laughs file (aliases that expand without
# end) and deep nesting before anything is built from them.
MAX_YAML_NODES = 100_000  # every alias counted as often as it is used
MAX_YAML_DEPTH = 64


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load's loader, refusing a key given twice in one mapping (YAML keeps the last one silently) and an
    unhashable key; merge keys (`<<: *anchor`) work as in YAML, the mapping's own keys overriding merged ones."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            own = sum(key_node.tag != MERGE for key_node, _ in node.value)
            self.flatten_mapping(node)  # merged keys first, then the mapping's own
            seen = set()
            for key_node, _ in node.value[len(node.value) - own:]:
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark)
                    seen.add(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(None, None, "a key that is a list or a mapping",
                                                            key_node.start_mark) from None
        return super().construct_mapping(node, deep)


def _check_bounds(root: yaml.Node) -> tuple[str, yaml.Mark] | None:
    """The first bound the node graph passes (its size with aliases expanded, or its depth), or None."""
    stack, count = [(root, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            return f"more than {MAX_YAML_NODES} values once its aliases are expanded", node.start_mark
        if depth > MAX_YAML_DEPTH:
            return f"nested more than {MAX_YAML_DEPTH} deep", node.start_mark
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            stack += [(child, depth + 1) for pair in node.value for child in pair]
    return None


def read_yaml(text: str, where: str, numbered: bool = True):
    """YAML text as Python values (safe_load's types, duplicate keys refused, size and depth bounded); errors
    name `where` (and the line, when `numbered`)."""
    loader = _UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        problem = _check_bounds(root) if root is not None else None
        if problem:
            mark = problem[1]
            raise UserError(f"{where}:{mark.line + 1}: YAML {problem[0]}" if numbered else f"{where}: YAML {problem[0]}")
        return loader.construct_document(root) if root is not None else None
    except RecursionError:
        raise UserError(f"{where}: YAML nested more than {MAX_YAML_DEPTH} deep") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{where}:{mark.line + 1}" if mark is not None and numbered else where
        if isinstance(err, _DuplicateKey):
            raise UserError(f"{where}: key {err.key!r} is given twice") from None
        raise UserError(f"{where}: YAML syntax error ({getattr(err, 'problem', None) or err})") from None
    finally:
        loader.dispose()


def load_config(path: Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read YAML (or nothing: the defaults), apply `key.sub=value` overrides, validate."""
    raw: dict = {}
    source = "--set" if overrides else "defaults"
    if path is not None:
        source = str(path)
        problem = path_problem(path)
        if problem:
            raise UserError(f"config file: the path {problem}")
        if not path.is_file():
            raise UserError(f"{path}: no such config file" if not path.exists() else f"{path}: not a file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        except OSError as err:
            raise UserError(f"{path}: unreadable ({err.strerror})") from None
        raw = read_yaml(text, str(path))
        if raw is None:  # an empty file (or only comments): the defaults
            raw = {}
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping of config keys at the top level, got "
                            f"{type(raw).__name__} {raw!r:.40}")
    for override in overrides:
        key, sep, value = override.partition("=")
        parts = key.split(".")
        if not sep:
            raise UserError(f"override {override!r}: expected key=value, e.g. iterations=2")
        if not all(part.strip() for part in parts):
            raise UserError(f"override {override!r}: {key!r} is not a key (dotted names, e.g. defender.path)")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {override!r}: {part!r} is not a section")
        node[parts[-1]] = read_yaml(value, f"override {override!r}", numbered=False)
    return parse_config(raw, source)


# Keys a resumed run may change in its config.yaml. `iterations` may grow: the run goes on to the new K and
# renders its report again. Where runs go and their name do not change what a run computes.
EXTENDABLE = ("iterations",)
NOT_COMPARED = ("name", "output_dir")


def flat_config(raw: dict, prefix: str = "") -> dict:
    """A config as {dotted key: value}; list items (judge parts) stay whole values."""
    out = {}
    for key, value in raw.items():
        out.update(flat_config(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value})
    return out


def resume_change(recorded: dict, config: RunConfig) -> str | None:
    """Why `config` cannot continue a run whose completed phases ran under `recorded` (a model_dump(mode="json")),
    or None: only `iterations` may change, and only upwards."""
    before, now = flat_config(recorded), flat_config(config.model_dump(mode="json"))
    for key in sorted(set(before) | set(now)):
        if key in NOT_COMPARED or before.get(key) == now.get(key):
            continue
        if key == "iterations" and isinstance(before.get(key), int) and now[key] > before[key]:
            continue
        was, new = before.get(key, "<unset>"), now.get(key, "<unset>")
        extra = "; iterations may only grow" if key == "iterations" else ""
        return f"{key!r} changed since the run began ({was!r} -> {new!r}){extra}"
    return None


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
