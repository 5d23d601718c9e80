"""`sectow attack`: the trained attacker red-teams a deployed model. It writes jailbreaks for a set of
harmful seeds, each is sent to an OpenAI-compatible endpoint, the reply is judged, and `rounds` > 1
refines the attempts the target resisted with its reply (the attacker's refine mode). Rounds are played
with `game.play_round`, the target standing in for the frozen defender, so the game's parsing, images,
judge and quality monitor decide exactly as in training.

An attack is prepared (every check, every seed read, nothing written), then run. Each round's attacker
outputs are written whole (plans/) before anything is sent, and each attempt is appended to
attempts.jsonl as soon as it is judged, so a killed or failed attack resumes where it stopped: nothing is
lost, nothing doubled, and a resumed attack records what an uninterrupted one would have."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import logging
import os
import random
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from PIL import Image

from sectow.atomic import replacing, write_atomic
from sectow.config import RunConfig, judge_settings, load_config
from sectow.data.benchmarks import BENCHMARKS, load_benchmark
from sectow.data.schema import Sample, load_image, read_samples
from sectow.errors import UserError
from sectow.game import AttackSeed, Attempt, play_round, sample_attacker
from sectow.jsonl import json_lines
from sectow.judges import JUDGES, build_judge
from sectow.judges.cache import ends_with_newline, open_private
from sectow.models.folder import check_model_folder
from sectow.models.vllm_generation import generation_engine
from sectow.paths import check_output_dir, lock_folder, nearest_existing
from sectow.red_team.figures import summarize
from sectow.red_team.report import write_attack_report
from sectow.red_team.target import ChatTarget, check_target_url
from sectow.rewards import attacker_reward, defender_outcome
from sectow.run_folder import MARKER, check_marker, write_marker
from sectow.world import load_world, strategies_for

log = logging.getLogger(__name__)

KIND = "attack"
CONFIG, SEEDS, ATTEMPTS, SUMMARY = "attack-config.json", "seeds.jsonl", "attempts.jsonl", "summary.json"
TARGET_LOG, JUDGE_CACHE = "target-replies.jsonl", "judge-cache.jsonl"
# Who writes the queries: the trained attacker, the self-instruct baseline (the attacker before any GRPO),
# and the seeds sent as they are.
SECTOW, SELF_INSTRUCT, PLAIN = "sectow", "self_instruct", "plain"


@dataclass
class AttackSettings:
    """What an attack is asked to do; saved in the attack folder (never the API key), so that `--resume`
    needs nothing else. The settings in RUNTIME may change on a resume; the others may not."""

    attacker: Path
    target_url: str
    target_model: str
    seeds: Path | None = None  # a JSONL of harmful samples; with no seeds and no benchmarks, the built-in held-out seeds
    benchmarks: dict[str, Path] = field(default_factory=dict)
    limit: int | None = None  # a seeded subset of the seeds
    samples_per_seed: int = 1
    rounds: int = 1  # 1: generate only; each further round refines the attempts the target resisted
    judge: str = "refusal"
    judge_options: dict = field(default_factory=dict)
    temperature: float | None = None  # None: the attacker's run's pool.temperature
    max_tokens: int = 256  # the target's reply length cap
    batch_size: int = 16  # attacker generation batch
    seed: int = 0
    text_only: bool = False
    baselines: bool = False
    self_instruct_attacker: Path | None = None
    use_vllm: bool = False
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0

    RUNTIME = ("judge_options", "concurrency", "timeout_s", "max_retries", "backoff_s")

    def check(self) -> None:
        check_target_url(self.target_url)
        if not self.target_model:
            raise UserError("--target-model: give the model name the endpoint serves")
        for name in ("samples_per_seed", "rounds", "max_tokens", "batch_size", "concurrency", "limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")
        for name in ("timeout_s", "backoff_s", "temperature"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"--{name.removesuffix('_s').replace('_', '-')} must be positive, got {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise UserError(f"--max-retries must be 0 or more, got {self.max_retries!r}")
        if self.judge not in JUDGES:
            raise UserError(f"unknown judge {self.judge!r} (judges: {', '.join(j for j in JUDGES if j != 'native')})")
        if self.judge == "native":
            raise UserError("--judge native scores benchmark rows in their authors' formats; judge an attack's replies "
                            "with refusal, guard or http")
        for name in self.benchmarks:
            if name not in BENCHMARKS:
                raise UserError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
            if BENCHMARKS[name].kind != "safety":
                raise UserError(f"benchmark {name!r} holds general questions, not harmful seeds to attack from")

    def to_json(self) -> dict:
        row = asdict(self)
        for name in ("attacker", "seeds", "self_instruct_attacker"):
            row[name] = None if row[name] is None else str(Path(row[name]).absolute())
        row["benchmarks"] = {name: str(Path(root).absolute()) for name, root in self.benchmarks.items()}
        return row

    @classmethod
    def from_json(cls, row: dict, where: Path) -> AttackSettings:
        known = {f.name for f in fields(cls)}
        if not isinstance(row, dict) or not {"attacker", "target_url", "target_model"} <= set(row) or set(row) - known:
            raise UserError(f"{where}: not the settings of a sectow attack")
        paths = {name: None if row.get(name) is None else Path(row[name])
                 for name in ("attacker", "seeds", "self_instruct_attacker")}
        return cls(**{**row, **paths, "benchmarks": {n: Path(r) for n, r in (row.get("benchmarks") or {}).items()}})


def run_config_of(attacker: Path) -> RunConfig:
    """The config of the run an attacker folder comes from (`<run>/checkpoints/attacker-K`): its attacker
    settings, image size, monitors and held-out seeds. Any other folder gets the defaults."""
    run = attacker.absolute().parent.parent
    if attacker.absolute().parent.name == "checkpoints" and (run / MARKER).is_file() and (run / "config.yaml").is_file():
        return load_config(run / "config.yaml")
    return RunConfig()


def self_instruct_of(attacker: Path) -> Path:
    """The self-instruct attacker beside a run's attacker-K: the run's attacker before any GRPO."""
    sibling = attacker.absolute().parent / "attacker-cold_start"
    if attacker.absolute().parent.name == "checkpoints" and sibling.is_dir():
        return sibling
    raise UserError(f"--baselines: no attacker-cold_start beside {attacker}; give the self-instruct attacker with "
                    "--self-instruct-attacker DIR")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class AttemptLog:
    """attempts.jsonl: one JSON line per attempt, appended, flushed and synced as it is judged. A line cut
    short by a kill is ignored, and that attempt played again."""

    def __init__(self, out: Path):
        self.path = out / ATTEMPTS
        self.records: dict[str, dict] = {}
        if self.path.is_file():
            for line in json_lines(self.path.read_text(encoding="utf-8")):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("id"), str):
                    self.records[row["id"]] = row

    def write(self, rows: list[dict]) -> None:
        needs_newline = self.path.is_file() and not ends_with_newline(self.path)
        with open_private(self.path, append=True) as out:
            out.write(("\n" if needs_newline else "") + "".join(json.dumps(row) + "\n" for row in rows))
            out.flush()
            os.fsync(out.fileno())
        self.records.update((row["id"], row) for row in rows)


class Attack:
    """A prepared attack: settings checked, attacker folders checked, judge built, seeds read and their
    images decoded, the folder judged usable. Nothing is written until `run`."""

    def __init__(self, settings: AttackSettings, out: Path, resume: bool = False):
        settings.check()
        self.settings, self.out, self.resume = settings, Path(out), resume
        self.staging: tempfile.TemporaryDirectory | None = None
        self.check_folder()
        self.config = run_config_of(settings.attacker)
        check_model_folder(settings.attacker, self.config.attacker.allow_pickle, flag="the attacker's allow_pickle")
        self.attackers = {SECTOW: Path(settings.attacker)}
        if settings.baselines:
            self.attackers[SELF_INSTRUCT] = Path(settings.self_instruct_attacker or self_instruct_of(settings.attacker))
            check_model_folder(self.attackers[SELF_INSTRUCT], self.config.attacker.allow_pickle)
        options = dict(settings.judge_options)
        if "cache_path" in inspect.signature(JUDGES[settings.judge]).parameters:
            options.setdefault("cache_path", self.out / JUDGE_CACHE)
        self.judge = build_judge(judge_settings(settings.judge, options))
        self.target = ChatTarget(settings.target_url, settings.target_model, max_tokens=settings.max_tokens,
                                 timeout_s=settings.timeout_s, max_retries=settings.max_retries,
                                 backoff_s=settings.backoff_s, concurrency=settings.concurrency,
                                 text_only=settings.text_only, log_path=self.out / TARGET_LOG)
        self.temperature = settings.temperature or self.config.pool.temperature
        self.image_size = self.config.data.image_size
        self.strategies = strategies_for(self.config, pictures=not settings.text_only)
        self.monitor = None
        try:
            self.seed_samples = [] if resume else self.read_seeds()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ preparing

    def check_folder(self) -> None:
        out = self.out
        if self.resume:
            check_marker(out, KIND)
            if not (out / CONFIG).is_file() or not (out / SEEDS).is_file():
                raise UserError(f"{out}: an attack folder without {CONFIG} or {SEEDS}: start a new attack")
            lock_folder(out)  # one attack at a time: two would ask the endpoint twice and log both
            return
        if out.exists() and not out.is_dir():
            raise UserError(f"{out}: output folder is an existing file")
        if out.is_dir() and any(out.iterdir()):
            hint = "; give --resume to continue that attack" if (out / MARKER).is_file() else ""
            raise UserError(f"{out}: output folder exists and is not empty{hint}")
        check_output_dir(out)

    def read_seeds(self) -> list[Sample]:
        """The harmful seeds to attack from, each image decoded once, ids unique, `limit` applied."""
        settings = self.settings
        seeds: list[Sample] = []
        if settings.seeds is not None:
            for sample in read_samples(settings.seeds):
                if sample.label != "harmful":
                    raise UserError(f"{settings.seeds}: sample {sample.id!r} is labelled {sample.label!r}; attack "
                                    "seeds are harmful requests")
                seeds.append(replace(sample, intent=sample.intent or sample.query))
        for name, root in settings.benchmarks.items():
            data = load_benchmark(name, root, limit=settings.limit, seed=settings.seed)
            seeds += [replace(s, id=f"{name}/{s.id}", intent=s.intent or s.query) for s in data.samples]
        if settings.seeds is None and not settings.benchmarks:
            # the built-in held-out seeds, or the run's own held-out file
            self.staging = tempfile.TemporaryDirectory(prefix=f".{self.out.name}-world-",
                                                       dir=nearest_existing(self.out.absolute().parent))
            seeds = list(load_world(self.config, Path(self.staging.name)).harmful_held_out)
        if not seeds:
            raise UserError("no seeds to attack from")
        repeated = next((i for i, n in Counter(s.id for s in seeds).items() if n > 1), None)
        if repeated is not None:
            raise UserError(f"seed id {repeated!r} appears twice; seed ids must be unique")
        if settings.limit is not None and settings.limit < len(seeds):
            chosen = sorted(random.Random(settings.seed).sample(range(len(seeds)), settings.limit))
            seeds = [seeds[i] for i in chosen]
        for image in dict.fromkeys(s.image for s in seeds if s.image):
            load_image(image)
        return seeds

    def close(self) -> None:
        if self.staging is not None:
            self.staging.cleanup()
            self.staging = None

    # ------------------------------------------------------------ running

    def run(self) -> dict:
        try:
            if not self.resume:
                self.start()
        finally:
            self.close()
        attempts = AttemptLog(self.out)
        seeds = self.load_seeds()
        try:
            for source, attacker_dir in self.attackers.items():
                for round_ in range(1, self.settings.rounds + 1):
                    items = self.round_seeds(source, round_, seeds, attempts)
                    if not items:
                        break
                    plan = self.plan(source, attacker_dir, round_, items)
                    self.play(plan, attempts)
            if self.settings.baselines:
                self.play_plain(seeds, attempts)
        except UserError as err:
            raise UserError(f"{err}. {len(attempts.records)} attempts are recorded in {self.out}; continue with "
                            f"`sectow attack --resume {self.out}`") from None
        summary = summarize(list(attempts.records.values()), self.describe(len(seeds)))
        write_atomic(self.out / SUMMARY, json.dumps(summary, indent=1))
        write_attack_report(self.out, summary, list(attempts.records.values()))
        return summary

    def start(self) -> None:
        """Make the folder: marker, settings, and the seeds with their images copied in, so the folder alone
        is enough to resume it."""
        self.out.mkdir(parents=True, exist_ok=True)
        os.chmod(self.out, 0o700)
        lock_folder(self.out)
        if (self.out / MARKER).exists():  # another attack started here since this one checked the folder
            raise UserError(f"{self.out}: output folder exists and is not empty; give --resume to continue that attack")
        write_marker(self.out, KIND)
        write_atomic(self.out / CONFIG, json.dumps(self.settings.to_json(), indent=1))
        # A seed's id names it in every attempt id (benchmark variants may share a `seed_id`; their ids differ).
        rows = [{"seed_id": s.id, "category": s.category, "intent": s.intent,
                 "image": self.save_image(load_image(s.image)) if s.image else None} for s in self.seed_samples]
        write_atomic(self.out / SEEDS, "".join(json.dumps(row) + "\n" for row in rows))

    def save_image(self, image: Image.Image) -> str:
        """The image's file in the folder, named by its content (each distinct image stored once)."""
        data = png_bytes(image)
        relative = f"images/{digest(data)}.png"
        path = self.out / relative
        if not path.is_file():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            with replacing(path) as tmp:
                tmp.write_bytes(data)
        return relative

    def load_seeds(self) -> list[AttackSeed]:
        rows = [json.loads(line) for line in json_lines((self.out / SEEDS).read_text(encoding="utf-8")) if line]
        return [AttackSeed(r["seed_id"], r["category"], r["intent"], str(self.out / r["image"]) if r["image"] else None)
                for r in rows]

    def describe(self, seeds: int) -> dict:
        settings = self.settings
        return {"target": {"url": self.target.url, "model": settings.target_model},
                "attackers": {source: path.name for source, path in self.attackers.items()}
                | ({PLAIN: "seeds as they are"} if settings.baselines else {}),
                "judge": getattr(self.judge, "label", self.judge.name), "seeds": seeds,
                "samples_per_seed": settings.samples_per_seed, "rounds": settings.rounds,
                "text_only": settings.text_only}

    def round_seeds(self, source: str, round_: int, seeds: list[AttackSeed],
                    attempts: AttemptLog) -> list[tuple[str, int, AttackSeed]]:
        """What the attacker works on in this round, as (attempt id, sample, seed): every seed in round 1
        (`samples_per_seed` times); after that, the attempts of the round before that the target resisted,
        refined with its reply (one whose output did not parse is tried again as it was)."""
        if round_ == 1:
            return [(attempt_id(source, s.seed_id, k, 1), k, s) for s in seeds for k in range(self.settings.samples_per_seed)]
        items = []
        for item in self.read_plan(source, round_ - 1):
            record = attempts.records[item["id"]]
            if record["verdict"] is not None and record["verdict"]["unsafe"]:
                continue
            seed = self.seed_of(item)
            if record["query"] is not None:
                seed = replace(seed, mode="refine", earlier_attempt=record["attacker_output"], earlier_reply=record["reply"])
            items.append((attempt_id(source, seed.seed_id, item["sample"], round_), item["sample"], seed))
        return items

    def plan_path(self, source: str, round_: int) -> Path:
        return self.out / "plans" / f"{source}-round-{round_}.jsonl"

    def read_plan(self, source: str, round_: int) -> list[dict]:
        return [json.loads(line) for line in json_lines(self.plan_path(source, round_).read_text(encoding="utf-8"))]

    def seed_of(self, item: dict) -> AttackSeed:
        seed = dict(item["seed"])
        seed["image"] = str(self.out / seed["image"]) if seed["image"] else None
        return AttackSeed(**seed)

    def plan(self, source: str, attacker_dir: Path, round_: int, items: list[tuple[str, int, AttackSeed]]) -> list[dict]:
        """The attacker's outputs for this round, sampled once and written whole before anything is sent."""
        path = self.plan_path(source, round_)
        if path.is_file():
            return self.read_plan(source, round_)
        seeds = [seed for _, _, seed in items]
        log.info("attack: %s writes %d queries (round %d)", attacker_dir.name, len(seeds), round_)
        outputs = sample_attacker(attacker_dir, self.config.attacker, seeds,
                                  engine=generation_engine(self.settings.use_vllm), temperature=self.temperature,
                                  batch_size=self.settings.batch_size, seed=self.settings.seed * 1000 + round_,
                                  desc=f"{source} round {round_}")
        plan = []
        for (id_, sample, seed), output in zip(items, outputs, strict=True):
            stored = asdict(seed)
            stored["image"] = str(Path(seed.image).relative_to(self.out)) if seed.image else None
            plan.append({"id": id_, "source": source, "attacker": attacker_dir.name, "round": round_,
                         "sample": sample, "seed": stored, "attacker_output": output})
        path.parent.mkdir(mode=0o700, exist_ok=True)
        write_atomic(path, "".join(json.dumps(item) + "\n" for item in plan))
        return plan

    def chunks(self, items: list) -> list[list]:
        size = max(8, 4 * self.settings.concurrency)
        return [items[i:i + size] for i in range(0, len(items), size)]

    def play(self, plan: list[dict], attempts: AttemptLog) -> None:
        """Play the planned attempts not yet recorded against the target, a chunk at a time."""
        pending = [item for item in plan if item["id"] not in attempts.records]
        if pending and self.monitor is None:
            from sectow.models.encoder import shared_encoder
            from sectow.monitors import AttackerQualityMonitor

            self.monitor = AttackerQualityMonitor(shared_encoder(), self.config.monitors, [])
        for chunk in self.chunks(pending):
            played = play_round([item["attacker_output"] for item in chunk], [self.seed_of(item) for item in chunk],
                                self.target, self.judge, self.monitor, self.config.rewards, self.strategies,
                                self.image_size)
            attempts.write([self.record(item, attempt) for item, attempt in zip(chunk, played.attempts, strict=True)])

    def record(self, item: dict, attempt: Attempt) -> dict:
        seed, verdict = attempt.seed, attempt.verdict
        sent_image = attempt.image if attempt.query is not None and not self.settings.text_only else None
        return {"id": item["id"], "source": item["source"], "attacker": item["attacker"], "round": item["round"],
                "sample": item["sample"], "seed_id": seed.seed_id, "category": seed.category, "intent": seed.intent,
                "mode": seed.mode, "strategy": attempt.composition, "query": attempt.query,
                "image": self.save_image(sent_image) if sent_image is not None else None,
                "attacker_output": attempt.attacker_output, "reply": attempt.reply,
                "verdict": None if verdict is None else {"refused": verdict.refused, "unsafe": verdict.unsafe,
                                                         "judge": verdict.judge, "category": verdict.category},
                "quality": {"intent_similarity": round(attempt.quality.intent_similarity, 4),
                            "reason": attempt.quality.reason.value},
                "outcome": attempt.outcome.value}

    def play_plain(self, seeds: list[AttackSeed], attempts: AttemptLog) -> None:
        """The baseline without an attacker: every seed's request sent as it is, with its image."""
        pending = [(attempt_id(PLAIN, s.seed_id, 0, 1), s) for s in seeds]
        pending = [(id_, s) for id_, s in pending if id_ not in attempts.records]
        for chunk in self.chunks(pending):
            inputs = [(s.intent, s.image) for _, s in chunk]
            replies = self.target.replies(inputs)
            verdicts = self.judge.judge([Sample(id=s.seed_id, query=s.intent, label="harmful", intent=s.intent)
                                         for _, s in chunk], replies)
            rows = []
            for (id_, seed), reply, verdict in zip(chunk, replies, verdicts, strict=True):
                image = None if self.settings.text_only or not seed.image else self.save_image(load_image(seed.image))
                rows.append({"id": id_, "source": PLAIN, "attacker": None, "round": 1, "sample": 0,
                             "seed_id": seed.seed_id, "category": seed.category, "intent": seed.intent,
                             "mode": "plain", "strategy": "plain", "query": seed.intent, "image": image,
                             "attacker_output": None, "reply": reply,
                             "verdict": {"refused": verdict.refused, "unsafe": verdict.unsafe, "judge": verdict.judge,
                                         "category": verdict.category},
                             "quality": None,
                             "outcome": attacker_reward(None, defender_outcome(verdict, reply, seed.intent),
                                                        self.config.rewards).outcome.value})
            attempts.write(rows)


def attempt_id(source: str, seed_id: str, sample: int, round_: int) -> str:
    return f"{source}/{seed_id}/{sample}/{round_}"


def prepare_resume(out: Path, given: dict) -> Attack:
    """The attack in `out` with its own settings. `given` holds the options the command line named: the
    RUNTIME ones replace the saved ones, any other must equal what the folder was started with."""
    out = Path(out)
    check_marker(out, KIND)
    where = out / CONFIG
    try:
        saved = AttackSettings.from_json(json.loads(where.read_text(encoding="utf-8")), where)
    except (OSError, ValueError) as err:
        raise UserError(f"{where}: unreadable ({err})") from None
    changes = {}
    for name, value in given.items():
        if name in AttackSettings.RUNTIME:
            changes[name] = value
            continue
        current = getattr(saved, name)
        same = (Path(value).absolute() == Path(current).absolute() if isinstance(current, Path) and value is not None
                else {n: Path(r).absolute() for n, r in value.items()} == {n: Path(r).absolute() for n, r in current.items()}
                if name == "benchmarks" else value == current)
        if not same:
            raise UserError(f"--resume continues {out} with its own settings: {name} {value} differs from the "
                            f"folder's {current} (drop that option, or start a new attack)")
    return Attack(replace(saved, **changes), out, resume=True)
