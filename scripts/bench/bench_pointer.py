"""Cache-pointer evaluation speed and memory, measured in one run (ratios are what count: the
machines are shared).

`eval` (the default): on a trained checkpoint and a split, as fairseq-eval-lm reads it at batch
size 1, times in one process
  plain     fairseq-eval-lm's own loop (eval_lm + SequenceScorer), task awd_language_modeling;
  ours      the same loop with task awd_cache_pointer (its StreamScorer), default warm-up rule, then
            with --pointer-skip-chunk-start (pointer.py's rule);
  original  salesforce/awd-lstm-lm pointer.py's per-token loop (awd_fairseq/tools/bench/reference_loops.py)
            on the same model outputs, window by window; its perplexity must equal ours with
            pointer.py's rule.
plain and ours alternate --repeats times (the run of each with the least CPU time is reported).
Wall and process CPU seconds are both printed: on a loaded machine the CPU seconds are the steadier.

    python scripts/bench/bench_pointer.py data-bin/ptb --path ckpt.pt --gen-subset test \\
        --pointer-window 500 --pointer-theta 1.0 --pointer-lambda 0.1
    python scripts/bench/bench_pointer.py data-bin/wikitext-2 --path ckpt.pt --gen-subset test --slice-tokens 4500 \\
        --pointer-window 3785 --pointer-theta 0.662 --pointer-lambda 0.1279

`simulate`: WikiText-103 scale without a model. A synthetic stream (Zipf-distributed words over
the vocabulary, random last-layer outputs, the unigram log-probability as the model's) is scored by
CachePointer window by window, each length in a fresh process: pointer time and the process's peak
resident memory per stream length.

    python scripts/bench/bench_pointer.py simulate --tokens 25000,50000,100000,200000 --vocab 267735 --window 3785

Run with OMP_NUM_THREADS=1 on a shared machine: small operations with several threads mostly wait
for each other there.
"""
import argparse
import json
import logging
import math
import resource
import subprocess
import sys
import time

import torch

from awd_fairseq.tools.bench.reference_loops import original_pointer_chunk
from awd_fairseq.tools.eval_lm_cli import eval_lm_parser, load_eval_lm_models, parse_eval_lm_args
from awd_fairseq.tools.cli import setup_logging

logger = logging.getLogger("scripts.bench_pointer")


# -- eval ------------------------------------------------------------------------------------


class Clock:
    """Wall and process CPU seconds since creation (the CPU time is less sensitive to neighbours)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self):
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def timed_eval_lm(model, task, dataset):
    """fairseq-eval-lm's loop; returns ((wall, cpu) seconds, perplexity)."""
    from fairseq_cli.eval_lm import eval_lm

    clock = Clock()
    result = eval_lm(models=[model], source_dictionary=task.source_dictionary,
                     batch_iterator=task.eval_lm_dataloader(dataset))
    return clock.read(), result["perplexity"]


@torch.no_grad()
def timed_original(wrapped, task, dataset, window, theta, lambdah):
    """pointer.py's evaluate(): the model's softmax over the vocabulary, then the per-token loop.
    Returns ((wall, cpu) seconds, perplexity, (wall, cpu) seconds of the pointer loop alone)."""
    model, vocab = wrapped.model, len(task.dictionary)
    pointer_history, next_word_history = None, torch.empty(0, vocab)
    loss, count, pointer_wall, pointer_cpu = 0.0, 0, 0.0, 0.0
    clock = Clock()
    for sample in task.eval_lm_dataloader(dataset):
        src, target = sample["net_input"]["src_tokens"], sample["target"]
        features, extra = model(src, stream_state=sample["net_input"]["stream_state"], features_only=True)
        probs = model.get_normalized_probs((model.decoder.output_layer(features), extra), log_probs=False)
        rnn_out = features[0].float()  # (T, H)
        if pointer_history is None:
            pointer_history = rnn_out.new_empty(0, rnn_out.size(1))
        tick = Clock()
        chunk_log_p, pointer_history, next_word_history = original_pointer_chunk(
            rnn_out, target[0], probs[0].float(), pointer_history, next_word_history, window, theta, lambdah, vocab)
        wall, cpu = tick.read()
        pointer_wall, pointer_cpu = pointer_wall + wall, pointer_cpu + cpu
        loss, count = loss - chunk_log_p.double().sum().item(), count + target.numel()
    return clock.read(), math.exp(loss / count), (pointer_wall, pointer_cpu)


@torch.no_grad()
def timed_pointer_math(wrapped, task, split):
    """Our pointer alone (CachePointer.score) on the split's stored model outputs: (wall, cpu)."""
    from awd_fairseq.tools.pointer_tuning import window_outputs

    windows = list(window_outputs(task, wrapped, split))
    wrapped.pointer.reset()
    clock = Clock()
    for h, y, lp in windows:
        wrapped.pointer.score(h, y, lp)
    return clock.read()


def eval_parser():
    parser = eval_lm_parser(__doc__.splitlines()[0])
    parser.add_argument("--slice-tokens", type=int, default=0, help="score only the split's first N tokens")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of plain and ours")
    parser.add_argument("--skip-original", action="store_true", help="do not run pointer.py's loop")
    return parser


def bench_eval(args):
    from awd_fairseq.modules.cache_pointer import CachePointer
    from awd_fairseq.tasks.awd_language_modeling import (AWDLanguageModelingConfig, AWDLanguageModelingTask,
                                                          TokenStreamDataset)

    task, models = load_eval_lm_models(args)
    logging.getLogger("fairseq_cli.eval_lm").setLevel(logging.WARNING)
    wrapped, cfg, split = models[0], task.cfg, args.gen_subset
    task.load_dataset(split)
    if args.slice_tokens:
        task.datasets[split] = TokenStreamDataset(task.datasets[split].tokens[: args.slice_tokens + 1])
    dataset = task.datasets[split]
    plain_cfg = AWDLanguageModelingConfig(data=cfg.data, bptt=cfg.bptt, test_batch_size=1)
    plain_task = AWDLanguageModelingTask(plain_cfg, task.dictionary)  # fairseq-eval-lm --task awd_language_modeling
    plain_task.datasets = task.datasets
    n = len(dataset) - 1
    logger.info("%s %s: %d tokens scored, --bptt %d, window %d theta %g lambda %g, torch %d threads",
                cfg.data, split, n, cfg.bptt, cfg.pointer_window, cfg.pointer_theta, cfg.pointer_lambda,
                torch.get_num_threads())

    plain, ours = [], []
    for _ in range(args.repeats):
        plain.append(timed_eval_lm(wrapped.model, plain_task, dataset))
        ours.append(timed_eval_lm(wrapped, task, dataset))
    plain_t, ppl_plain = min(plain, key=lambda r: r[0][1])  # fastest by CPU time
    ours_t, ppl_ours = min(ours, key=lambda r: r[0][1])
    default, wrapped.pointer = wrapped.pointer, CachePointer(
        cfg.pointer_window, cfg.pointer_theta, cfg.pointer_lambda, skip_chunk_start=True)
    skip_t, ppl_skip = timed_eval_lm(wrapped, task, dataset)
    wrapped.pointer = default
    math_t = timed_pointer_math(wrapped, task, split)

    def line(name, t, ppl, extra=""):
        logger.info("%-22s %8.1fs wall %8.1fs CPU  ppl %8.2f  %5.2fx plain (wall) %5.2fx (CPU)%s", name, t[0], t[1],
                    ppl, t[0] / plain_t[0], t[1] / plain_t[1], extra)

    line("plain fairseq-eval-lm", plain_t, ppl_plain)
    line("ours", ours_t, ppl_ours)
    line("ours, pointer.py rule", skip_t, ppl_skip)
    logger.info("our pointer math alone %.2fs wall %.2fs CPU (%.1f us/token CPU)", *math_t, 1e6 * math_t[1] / n)
    if args.skip_original:
        return
    orig_t, ppl_orig, orig_math_t = timed_original(wrapped, task, dataset, cfg.pointer_window, cfg.pointer_theta,
                                                   cfg.pointer_lambda)
    line("original (pointer.py)", orig_t, ppl_orig, f"  {orig_t[0] / ours_t[0]:.1f}x ours (wall) "
         f"{orig_t[1] / ours_t[1]:.1f}x (CPU)")
    logger.info("original pointer math alone %.1fs wall %.1fs CPU: %.0fx ours (wall) %.0fx (CPU)", *orig_math_t,
                orig_math_t[0] / math_t[0], orig_math_t[1] / math_t[1])
    if abs(math.log(ppl_orig) - math.log(ppl_skip)) > 1e-4:
        raise RuntimeError(f"pointer.py's loop gives ppl {ppl_orig:.4f}, ours with its rule {ppl_skip:.4f}")


# -- simulate --------------------------------------------------------------------------------


def simulate_one(tokens, vocab, window, hidden, chunk, theta, lambdah, seed):
    """Score a synthetic stream of `tokens` positions; returns pointer seconds and peak RSS (MiB)."""
    from awd_fairseq.modules.cache_pointer import CachePointer

    g = torch.Generator().manual_seed(seed)
    unigram = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)  # Zipf
    unigram /= unigram.sum()
    cdf, log_unigram = unigram.cumsum(0), unigram.log().float()
    pointer = CachePointer(window=window, theta=theta, lambdah=lambdah)
    seconds, cpu_seconds, total = 0.0, 0.0, 0.0
    with torch.no_grad():
        for start in range(0, tokens, chunk):
            t = min(chunk, tokens - start)
            targets = torch.searchsorted(cdf, torch.rand(t, generator=g, dtype=torch.float64)).clamp_(max=vocab - 1)
            h = torch.randn(t, hidden, generator=g) / math.sqrt(hidden) * 3  # (T, H), |h| ~ 3
            tick, cpu_tick = time.perf_counter(), time.process_time()
            scores = pointer.score(h, targets, log_unigram[targets])
            seconds += time.perf_counter() - tick
            cpu_seconds += time.process_time() - cpu_tick
            total += scores.double().sum().item()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tokens": tokens, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": peak_mib,
            "ppl": math.exp(-total / tokens)}


def simulate_parser():
    parser = argparse.ArgumentParser(description="cache pointer at WikiText-103 scale, synthetic stream")
    parser.add_argument("--tokens", default="25000,50000,100000,200000", help="comma-separated stream lengths")
    parser.add_argument("--vocab", type=int, default=267735, help="vocabulary size (WikiText-103's)")
    parser.add_argument("--window", type=int, default=3785, help="pointer window")
    parser.add_argument("--hidden", type=int, default=400, help="size of the last layer's output")
    parser.add_argument("--chunk", type=int, default=70, help="--bptt")
    parser.add_argument("--theta", type=float, default=0.662, help="pointer theta")
    parser.add_argument("--lambdah", type=float, default=0.1279, help="pointer lambda")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic stream")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process
    return parser


def bench_simulate(args, argv):
    if args.one:
        print(json.dumps(simulate_one(int(args.tokens), args.vocab, args.window, args.hidden, args.chunk,
                                      args.theta, args.lambdah, args.seed)))
        return
    logger.info("vocab %d, window %d, hidden %d, --bptt %d, torch %d threads", args.vocab, args.window, args.hidden,
                args.chunk, torch.get_num_threads())
    rows = []
    for tokens in [int(x) for x in args.tokens.split(",")]:
        child = [sys.executable, __file__, "simulate", *argv, "--tokens", str(tokens), "--one"]
        row = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        rows.append(row)
        logger.info("%10d tokens  %8.1fs wall (%6.1f us/token)  %8.1fs CPU (%6.1f us/token)  peak RSS %7.1f MiB",
                    tokens, row["seconds"], 1e6 * row["seconds"] / tokens, row["cpu_seconds"],
                    1e6 * row["cpu_seconds"] / tokens, row["peak_rss_mib"])
    per_token = rows[-1]["cpu_seconds"] / rows[-1]["tokens"]
    logger.info("CPU time per token, longest stream over shortest: %.2f; 100M tokens at the last rate: %.1f CPU-hours; "
                "peak RSS, longest over shortest: %.2f; pointer.py's (window, vocab) one-hot history alone "
                "would hold %.1f GiB", per_token / (rows[0]["cpu_seconds"] / rows[0]["tokens"]), per_token * 1e8 / 3600,
                rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"], args.window * args.vocab * 4 / 2**30)


def main(args) -> None:
    """`args.mode` is "simulate" (simulate_parser's flags) or "eval" (fairseq-eval-lm's)."""
    if args.mode == "simulate":
        bench_simulate(args, args.argv)
    else:
        bench_eval(args)


def cli_main() -> None:
    setup_logging()
    if sys.argv[1:2] == ["simulate"]:
        args = simulate_parser().parse_args(sys.argv[2:])
        args.mode, args.argv = "simulate", sys.argv[2:]
    else:
        args = parse_eval_lm_args(eval_parser())
        args.mode = "eval"
    main(args)


if __name__ == "__main__":
    cli_main()
