"""Cache-pointer evaluation speed and memory, measured in one run (ratios are what count: the
machines are shared).

`eval` (the default): on a trained checkpoint and a split, as fairseq-eval-lm reads it at batch
size 1, times in one process
  plain     fairseq-eval-lm's own loop (eval_lm + SequenceScorer), task awd_language_modeling;
  ours      the same loop with task awd_cache_pointer (CachePointerLM), default warm-up rule, then
            with --pointer-skip-chunk-start (pointer.py's rule);
  original  salesforce/awd-lstm-lm pointer.py's per-token loop (bench_pointer_math.original_chunk)
            on the same model outputs, window by window; its perplexity must equal ours with
            pointer.py's rule.
plain and ours alternate --repeats times (the fastest run of each is reported).

    python scripts/bench_pointer.py data-bin/ptb --path ckpt.pt --gen-subset test \\
        --pointer-window 500 --pointer-theta 1.0 --pointer-lambda 0.1
    python scripts/bench_pointer.py data-bin/wikitext-2 --path ckpt.pt --gen-subset test --slice-tokens 5000 \\
        --pointer-window 3785 --pointer-theta 0.662 --pointer-lambda 0.1279

`simulate`: WikiText-103 scale without a model. A synthetic stream (Zipf-distributed words over
the vocabulary, random last-layer outputs, the unigram log-probability as the model's) is scored by
CachePointer window by window, each length in a fresh process: pointer time and the process's peak
resident memory per stream length.

    python scripts/bench_pointer.py simulate --tokens 25000,50000,100000,200000 --vocab 267735 --window 3785
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

from bench_pointer_math import original_chunk  # scripts/ is on sys.path when run as a script
from pointer_search import eval_lm_parser, load_pointer_models

logger = logging.getLogger("bench_pointer")


# -- eval ------------------------------------------------------------------------------------


def timed_eval_lm(model, task, dataset):
    from fairseq_cli.eval_lm import eval_lm

    start = time.perf_counter()
    result = eval_lm(models=[model], source_dictionary=task.source_dictionary,
                     batch_iterator=task.eval_lm_dataloader(dataset))
    return time.perf_counter() - start, result["perplexity"]


@torch.no_grad()
def timed_original(wrapped, task, dataset, window, theta, lambdah):
    """pointer.py's evaluate(): model softmax over the vocabulary, then the per-token loop."""
    model, vocab = wrapped.model, len(task.dictionary)
    pointer_history, next_word_history = None, torch.empty(0, vocab)
    loss, count, pointer_seconds = 0.0, 0, 0.0
    start = time.perf_counter()
    for sample in task.eval_lm_dataloader(dataset):
        src, target = sample["net_input"]["src_tokens"], sample["target"]
        features, extra = model(src, stream_state=sample["net_input"]["stream_state"], features_only=True)
        probs = model.get_normalized_probs((model.decoder.output_layer(features), extra), log_probs=False)
        rnn_out = features[0].float()  # (T, H)
        if pointer_history is None:
            pointer_history = rnn_out.new_empty(0, rnn_out.size(1))
        tick = time.perf_counter()
        chunk_loss, pointer_history, next_word_history = original_chunk(
            rnn_out, target[0], probs[0].float(), pointer_history, next_word_history, window, theta, lambdah, vocab)
        pointer_seconds += time.perf_counter() - tick
        loss, count = loss + chunk_loss, count + target.numel()
    return time.perf_counter() - start, math.exp(loss / count), pointer_seconds


@torch.no_grad()
def timed_pointer_math(wrapped, task, split):
    """Our pointer alone (CachePointer.score) on the split's stored model outputs."""
    from awd_fairseq.tasks.cache_pointer_lm import window_outputs

    windows = list(window_outputs(task, wrapped, split))
    wrapped.pointer.reset()
    start = time.perf_counter()
    for h, y, lp in windows:
        wrapped.pointer.score(h, y, lp)
    return time.perf_counter() - start


def bench_eval():
    from awd_fairseq.modules.cache_pointer import CachePointer
    from awd_fairseq.tasks.awd_language_modeling import AWDLanguageModelingTask, TokenStreamDataset

    parser = eval_lm_parser(__doc__.splitlines()[0])
    parser.add_argument("--slice-tokens", type=int, default=0, help="score only the split's first N tokens")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of plain and ours")
    parser.add_argument("--skip-original", action="store_true", help="do not run pointer.py's loop")
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    args, task, models = load_pointer_models(parser)
    logging.getLogger("fairseq_cli.eval_lm").setLevel(logging.WARNING)
    wrapped, cfg, split = models[0], task.cfg, args.gen_subset
    task.load_dataset(split)
    if args.slice_tokens:
        task.datasets[split] = TokenStreamDataset(task.datasets[split].tokens[: args.slice_tokens + 1])
    dataset = task.datasets[split]
    plain_task = AWDLanguageModelingTask(cfg, task.dictionary)  # fairseq-eval-lm --task awd_language_modeling
    plain_task.datasets = task.datasets
    n = len(dataset) - 1
    logger.info("%s %s: %d tokens scored, --bptt %d, window %d theta %g lambda %g, torch %d threads",
                cfg.data, split, n, cfg.bptt, cfg.pointer_window, cfg.pointer_theta, cfg.pointer_lambda,
                torch.get_num_threads())

    plain, ours = [], []
    for _ in range(args.repeats):
        plain.append(timed_eval_lm(wrapped.model, plain_task, dataset))
        ours.append(timed_eval_lm(wrapped, task, dataset))
    (t_plain, ppl_plain), (t_ours, ppl_ours) = min(plain), min(ours)
    skip = CachePointer(cfg.pointer_window, cfg.pointer_theta, cfg.pointer_lambda, skip_chunk_start=True)
    default, wrapped.pointer = wrapped.pointer, skip
    t_skip, ppl_skip = timed_eval_lm(wrapped, task, dataset)
    wrapped.pointer = default
    t_math = timed_pointer_math(wrapped, task, split)
    logger.info("plain eval      %8.1fs  ppl %.2f", t_plain, ppl_plain)
    logger.info("ours            %8.1fs  ppl %.2f   %.2fx plain", t_ours, ppl_ours, t_ours / t_plain)
    logger.info("ours, skip rule %8.1fs  ppl %.2f   %.2fx plain", t_skip, ppl_skip, t_skip / t_plain)
    logger.info("our pointer math alone %.2fs (%.1f us/token)", t_math, 1e6 * t_math / n)
    if args.skip_original:
        return
    t_orig, ppl_orig, t_orig_math = timed_original(wrapped, task, dataset, cfg.pointer_window, cfg.pointer_theta,
                                                   cfg.pointer_lambda)
    logger.info("original        %8.1fs  ppl %.2f   %.2fx plain, %.1fx ours (pointer math alone: %.1fs, %.0fx ours)",
                t_orig, ppl_orig, t_orig / t_plain, t_orig / t_ours, t_orig_math, t_orig_math / t_math)
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
    seconds, total = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, tokens, chunk):
            t = min(chunk, tokens - start)
            targets = torch.searchsorted(cdf, torch.rand(t, generator=g, dtype=torch.float64)).clamp_(max=vocab - 1)
            h = torch.randn(t, hidden, generator=g) / math.sqrt(hidden) * 3  # (T, H), |h| ~ 3
            tick = time.perf_counter()
            scores = pointer.score(h, targets, log_unigram[targets])
            seconds += time.perf_counter() - tick
            total += scores.double().sum().item()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tokens": tokens, "seconds": seconds, "peak_rss_mib": peak_mib, "ppl": math.exp(-total / tokens)}


def bench_simulate(argv):
    parser = argparse.ArgumentParser(description="cache pointer at WikiText-103 scale, synthetic stream")
    parser.add_argument("--tokens", default="25000,50000,100000,200000")
    parser.add_argument("--vocab", type=int, default=267735)
    parser.add_argument("--window", type=int, default=3785)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--chunk", type=int, default=70, help="--bptt")
    parser.add_argument("--theta", type=float, default=0.662)
    parser.add_argument("--lambdah", type=float, default=0.1279)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
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
        logger.info("%10d tokens  %8.1fs  %6.1f us/token  peak RSS %7.1f MiB", tokens, row["seconds"],
                    1e6 * row["seconds"] / tokens, row["peak_rss_mib"])
    per_token = rows[-1]["seconds"] / rows[-1]["tokens"]
    logger.info("time per token, longest over shortest: %.2f; 100M tokens at the last rate: %.1f h; "
                "pointer.py's (window, vocab) one-hot history alone would hold %.1f GiB",
                per_token / (rows[0]["seconds"] / rows[0]["tokens"]), per_token * 1e8 / 3600,
                args.window * args.vocab * 4 / 2**30)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "simulate":
        bench_simulate(sys.argv[2:])
    else:
        bench_eval()
