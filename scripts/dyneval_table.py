"""Plain evaluation, the cache pointer, dynamic evaluation and both, on valid and test of one
trained checkpoint: one Markdown table of perplexities and evaluation times, every figure read
from fairseq-eval-lm's own summary line ("Evaluated N tokens in S s", "Loss (base 2)").

    python scripts/dyneval_table.py data-bin/ptb --path ckpt.pt --out runs/dyneval_ptb --cpu
    python scripts/dyneval_table.py data-bin/ptb --path tr.pt --context 64 --out runs/dyneval_tr --cpu

Steps (each one's log or result goes into --out; a rerun reuses the finished ones):

1. plain: fairseq-eval-lm at batch size 1. A recurrent model (no --context) reads one carried
   stream (`--task awd_language_modeling`, windows of --bptt); a stateless one (transformer_lm,
   --context C) reads segments of --dyneval-bptt tokens, each after the C tokens before it
   (`--task language_modeling --context-window C`), the windows dynamic evaluation sees.
2. pointer: theta and lambda tuned on valid (awd_fairseq.tools.pointer_tuning), then valid and
   test scored with the best pair by fairseq-eval-lm `--task awd_cache_pointer`.
3. dynamic evaluation: eta and lambda tuned on valid (awd_fairseq.tools.dyneval_tuning: the
   reference's grid, on the first --search-segments segments), then valid and test by
   fairseq-eval-lm `--task awd_dynamic_eval`; the gradient statistics are computed once and cached.
4. both: `--dyneval-pointer` with the two tuned pairs (each tuned alone).
"""
import argparse
import json
import logging
from pathlib import Path

from awd_fairseq.tools import dyneval_tuning, pointer_tuning
from awd_fairseq.tools.cli import USER_DIR, fairseq_command, setup_logging
from awd_fairseq.tools.compare.runner import reuse_or_call, run_step
from awd_fairseq.tools.fairseq_logs import eval_lm_summary

logger = logging.getLogger("dyneval_table")
SPLITS = ("valid", "test")


def _eval(args, label, flags, split):
    cmd = [*fairseq_command("fairseq-eval-lm"), args.data, "--path", args.path, "--user-dir", str(USER_DIR), "--gen-subset", split,
           *(["--cpu"] if args.cpu else []), *flags]
    log = args.out / f"{label}_{split}.log"
    run_step(f"{label} {split}", cmd, log)
    s = eval_lm_summary(log.read_text())
    return {"ppl": s.perplexity, "seconds": s.seconds, "tokens": s.tokens}


def plain_flags(args):
    if args.context:
        return ["--task", "language_modeling", "--sample-break-mode", "none", "--context-window", str(args.context),
                "--tokens-per-sample", str(args.context + args.dyneval_bptt), "--batch-size", "1"]
    return ["--task", "awd_language_modeling", "--test-batch-size", "1", "--bptt", str(args.bptt)]


def pointer_windows(args):
    if args.context:
        return ["--bptt", str(args.dyneval_bptt), "--stream-context", str(args.context)]
    return ["--bptt", str(args.bptt)]


def checkpoint_args(args):
    return [args.data, "--path", args.path, "--user-dir", str(USER_DIR), *(["--cpu"] if args.cpu else [])]


def tune_pointer(args):
    argv = [*checkpoint_args(args), "--task", "awd_cache_pointer", "--pointer-window", str(args.pointer_window),
            *pointer_windows(args)]
    result = reuse_or_call("pointer tuning", {"argv": argv}, args.out / "pointer_tuning.json",
                           lambda: pointer_tuning.tune_checkpoint(argv))
    return result["theta"], result["lambda"]


def dyneval_base(args):
    flags = ["--task", "awd_dynamic_eval", "--dyneval-bptt", str(args.dyneval_bptt),
             "--dyneval-max-segments", str(args.stats_segments)]
    return flags + (["--stream-context", str(args.context)] if args.context else [])


def tune_dyneval(args):
    argv = [*checkpoint_args(args), *dyneval_base(args)]
    grids = [None if getattr(args, name) is None else [float(x) for x in getattr(args, name).split(",")]
             for name in ("etas", "lambdas", "epsilons")]
    key = {"argv": argv, "grids": grids, "search_segments": args.search_segments}
    result = reuse_or_call("dynamic evaluation search", key, args.out / "dyneval_tuning.json",
                           lambda: dyneval_tuning.tune(*dyneval_tuning.load(argv), *grids,
                                                       search_segments=args.search_segments, score=False))
    return result["eta"], result["lambda"], result["epsilon"]


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {"plain": {s: _eval(args, "plain", plain_flags(args), s) for s in SPLITS}}
    theta, lam = tune_pointer(args)
    pointer = ["--pointer-window", str(args.pointer_window), "--pointer-theta", str(theta), "--pointer-lambda", str(lam)]
    rows["pointer"] = {s: _eval(args, "pointer", ["--task", "awd_cache_pointer", *pointer_windows(args), *pointer], s)
                       for s in SPLITS}
    eta, dlam, eps = tune_dyneval(args)
    dyneval = [*dyneval_base(args), "--dyneval-lr", str(eta), "--dyneval-lambda", str(dlam), "--dyneval-epsilon",
               str(eps)]
    rows["dynamic evaluation"] = {s: _eval(args, "dyneval", dyneval, s) for s in SPLITS}
    both = [*dyneval, "--dyneval-pointer", *pointer]
    rows["both"] = {s: _eval(args, "both", both, s) for s in SPLITS}

    counts = {s: {name: r[s]["tokens"] for name, r in rows.items()} for s in SPLITS}
    problems = [f"{s}: scored-token counts differ: {c}" for s, c in counts.items() if len(set(c.values())) > 1]
    settings = {"pointer": {"window": args.pointer_window, "theta": theta, "lambda": lam},
                "dyneval": {"bptt": args.dyneval_bptt, "eta": eta, "lambda": dlam, "epsilon": eps}}
    lines = ["| evaluation | valid ppl | test ppl | valid time (s) | test time (s) | time / plain |",
             "|---|---|---|---|---|---|"]
    base = sum(rows["plain"][s]["seconds"] for s in SPLITS)
    for name, r in rows.items():
        t = sum(r[s]["seconds"] for s in SPLITS)
        ratio = f"{t / base:.1f}x" if base > 0 else "n/a"  # a tiny split can report 0.0 s
        lines.append(f"| {name} | {r['valid']['ppl']:.2f} | {r['test']['ppl']:.2f} | {r['valid']['seconds']:.0f} "
                     f"| {r['test']['seconds']:.0f} | {ratio} |")
    lines.append("")
    lines.append(f"pointer: window {args.pointer_window}, theta {theta:g}, lambda {lam:g} (tuned on valid); dynamic "
                 f"evaluation: segments of {args.dyneval_bptt}, eta {eta:g}, lambda {dlam:g}, epsilon "
                 f"{eps:g} (tuned on valid); scored "
                 f"tokens: valid {sorted(set(counts['valid'].values()))}, test {sorted(set(counts['test'].values()))}")
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "settings": settings, "problems": problems},
                                                      indent=1))
    print(table, end="")
    if problems:
        raise SystemExit("; ".join(problems))


def cli_main():
    setup_logging()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="fairseq-preprocess output, e.g. data-bin/ptb")
    p.add_argument("--path", required=True, help="the trained checkpoint (never modified)")
    p.add_argument("--out", type=Path, required=True, help="folder for the logs, table.md and results.json")
    p.add_argument("--context", type=int, default=0, help="stateless models (transformer_lm): tokens of context")
    p.add_argument("--bptt", type=int, default=70, help="plain and pointer windows of a recurrent model")
    p.add_argument("--dyneval-bptt", type=int, default=5, help="dynamic evaluation's segments (the reference's 5)")
    p.add_argument("--pointer-window", type=int, default=500, help="cache size (PTB recipe: 500)")
    p.add_argument("--search-segments", type=int, default=2000, help="tune eta and lambda on this many valid segments")
    p.add_argument("--etas", help="dynamic evaluation's eta grid (default: the reference's, scaled by bptt/5)")
    p.add_argument("--lambdas", help="dynamic evaluation's lambda grid (default: the reference's, scaled by bptt/5)")
    p.add_argument("--epsilons", help="dynamic evaluation's epsilon grid (default: 2e-5, the reference's)")
    p.add_argument("--stats-segments", type=int, default=0, help="cap on the gradient statistics' segments (0: all)")
    p.add_argument("--cpu", action="store_true")
    main(p.parse_args())


if __name__ == "__main__":
    cli_main()
