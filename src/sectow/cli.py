"""The `sectow` command: parse, call, print. User mistakes print one line and exit with code 2."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sectow.errors import UserError


def print_table(summary: dict) -> None:
    rows = [("cold start", summary["cold_start"], None, None)]
    rows += [(f"iteration {it['iteration']}", it, it["attacker_success_rate"], it["pool_size"]) for it in summary["iterations"]]
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    header = f"{'':<14}{'ASR':>8}{'ASR unseen':>12}{'ORR':>8}{'accuracy':>10}{'attacker':>10}{'pool':>7}"
    print(header)
    for name, m, attacker, pool in rows:
        print(f"{name:<14}{fmt(m['asr']):>8}{fmt(m['asr_unseen_form']):>12}{fmt(m['orr']):>8}{fmt(m['accuracy']):>10}"
              f"{fmt(attacker):>10}{fmt(pool):>7}")


def cmd_run(args) -> int:
    from sectow import ranks
    from sectow.config import load_config
    from sectow.run_folder import new_run_folder
    from sectow.tug_of_war import TugOfWar

    if args.resume:
        if args.set or args.config:
            raise UserError("--resume continues a run with its own config.yaml: drop --config and --set")
        folder = Path(args.resume)
        if not (folder / "config.yaml").is_file():
            raise UserError(f"{folder}: not a run folder (no config.yaml)")
        config = load_config(folder / "config.yaml")
    else:
        config = load_config(Path(args.config) if args.config else None, args.set)
        folder = ranks.share(new_run_folder(config.output_dir, config.name) if ranks.is_main() else None)
    if ranks.is_main():
        print(f"run folder: {folder}", flush=True)
    else:
        logging.getLogger("sectow").setLevel(logging.WARNING)  # progress is told once, by the main process
    summary = TugOfWar(config, folder).run()
    if ranks.is_main():
        print_table(summary)
        print(f"summary: {folder / 'summary.json'}")
    return 0


def cmd_eval(args) -> int:
    from sectow.evaluation.benchmark_eval import evaluate_model, parse_benchmark_args

    evaluate_model(Path(args.model), parse_benchmark_args(args.benchmark), Path(args.out), judge=args.judge,
                            limit=args.limit, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                            system_prompt=args.system_prompt)
    print((Path(args.out) / "eval.md").read_text())
    print(f"results: {Path(args.out) / 'eval.json'}")
    return 0


def cmd_report(args) -> int:
    from sectow.report.html_report import write_report

    html, markdown = write_report(Path(args.run_dir))
    print(f"report: {html}\nmarkdown: {markdown}")
    return 0


def cmd_doctor(args) -> int:
    from sectow.doctor import run_doctor
    from sectow.evaluation.benchmark_eval import parse_benchmark_args

    return run_doctor(Path(args.config) if args.config else None, args.set, parse_benchmark_args(args.benchmark),
                      args.judge_url)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sectow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="cold start + K tug-of-war iterations; writes a run folder")
    run.add_argument("--config", help="YAML config (default: the embedded default)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set iterations=2 --set defender.path=/models/qwen")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last finished phase")
    run.set_defaults(func=cmd_run)
    evaluate = sub.add_parser("eval", help="evaluate any model folder on local benchmark copies")
    evaluate.add_argument("--model", required=True, help="local model folder")
    evaluate.add_argument("--benchmark", action="append", required=True, metavar="NAME=ROOT",
                          help="e.g. figstep=/data/FigStep; repeat for several")
    evaluate.add_argument("--out", required=True, help="folder for eval.json, eval.md, responses.jsonl")
    evaluate.add_argument("--judge", default="refusal", help="refusal (default), guard or http")
    evaluate.add_argument("--limit", type=int, help="at most this many samples per benchmark (seeded subset)")
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--max-new-tokens", type=int, default=64)
    evaluate.add_argument("--system-prompt", help="a safety system prompt defense, prepended to every query")
    evaluate.set_defaults(func=cmd_eval)
    report = sub.add_parser("report", help="HTML and Markdown report of a run folder")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)
    doctor = sub.add_parser("doctor", help="check the environment and a config before a long run")
    doctor.add_argument("--config", help="YAML config (default: the embedded default)")
    doctor.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    doctor.add_argument("--benchmark", action="append", default=[], metavar="NAME=ROOT")
    doctor.add_argument("--judge-url", help="an OpenAI-compatible judge server to reach")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "transformers", "sentence_transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return args.func(args)
    except UserError as err:
        print(f"sectow: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
