"""Time the cache-pointer math: awd-lstm-lm pointer.py's per-token loop against CachePointer.score.

The original (salesforce/awd-lstm-lm pointer.py, restated in awd_fairseq/tools/bench/reference_loops.py) keeps a (window, V) one-hot
history of next words and, for every token, computes ptr_dist = (attn * one_hot).sum(0) over the
whole vocabulary. CachePointer scores a chunk at once with an O(window) masked sum per token.

Both sides start from a full history of `window` positions (built untimed, so every timed token
uses the cache) and then score one chunk of `tokens` positions; the model's softmax is computed
beforehand for both, so only the pointer math is timed. Both use pointer.py's exact rule
(skip_chunk_start=True), and the script checks they give the same loss.

    python scripts/bench/bench_pointer_math.py   # PTB- and WT2-like, ~15 min on 2 cores
"""

import argparse
import logging
import math
import time

import torch

from awd_fairseq.tools.bench.reference_loops import one_hot, original_pointer_chunk
from awd_fairseq.modules.cache_pointer import CachePointer
from awd_fairseq.tools.cli import setup_logging

logger = logging.getLogger("scripts.bench_pointer_math")

SETTINGS = {  # name: (vocab, window, tokens); theta/lambda from the awd-lstm-lm README
    "ptb": (10000, 500, 2000, 1.0, 0.1),
    "wt2": (33278, 3785, 1000, 0.662, 0.1279),
}


def bench(name, vocab, window, tokens, theta, lambdah, hidden_size, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(window + tokens, hidden_size, generator=g) * 0.4 - 0.2  # (W + T, H)
    y = torch.randint(vocab, (window + tokens,), generator=g)  # (W + T,)
    # a model that puts some mass on the truth, so the loss is a meaningful checksum
    logits = torch.randn(tokens, vocab, generator=g)  # (T, V)
    logits[torch.arange(tokens), y[window:]] += 5.0
    probs, log_probs = logits.softmax(-1), logits.log_softmax(-1)  # (T, V)
    target_log_probs = log_probs.gather(1, y[window:].unsqueeze(1)).squeeze(1)  # (T,)
    h_warm, y_warm, h_run, y_run = h[:window], y[:window], h[window:], y[window:]

    # original: untimed warm history, then one timed chunk
    warm_one_hot = torch.cat([one_hot(t.item(), vocab) for t in y_warm])  # (W, V)
    start = time.perf_counter()
    log_p_orig, _, _ = original_pointer_chunk(h_run, y_run, probs, h_warm.clone(), warm_one_hot, window,
                                              theta, lambdah, vocab)
    loss_orig = -log_p_orig.double().sum().item()
    t_orig = time.perf_counter() - start
    del warm_one_hot

    pointer = CachePointer(window=window, theta=theta, lambdah=lambdah, skip_chunk_start=True)
    pointer.score(h_warm, y_warm, torch.zeros(window))  # untimed warm history
    start = time.perf_counter()
    loss_fast = -pointer.score(h_run, y_run, target_log_probs).sum().item()
    t_fast = time.perf_counter() - start

    pointer.reset()
    pointer.score(h_warm, y_warm, torch.zeros(window))
    start = time.perf_counter()
    full = pointer.full_distribution(h_run, y_run, log_probs)  # (T, V)
    t_full = time.perf_counter() - start
    loss_full = -full.gather(1, y_run.unsqueeze(1)).sum().item()

    rel = abs(loss_fast - loss_orig) / abs(loss_orig)
    logger.info(
        "%s V=%d window=%d tokens=%d | original %.2fs (%.2f ms/token) | score %.4fs | "
        "full_distribution %.3fs | speed-up score %.0fx, full_distribution %.0fx | "
        "ppl original %.4f fast %.4f (rel. loss diff %.1e)",
        name, vocab, window, tokens, t_orig, 1e3 * t_orig / tokens, t_fast, t_full,
        t_orig / t_fast, t_orig / t_full, math.exp(loss_orig / tokens),
        math.exp(loss_fast / tokens), rel)
    if rel > 1e-4 or abs(loss_full - loss_fast) / abs(loss_fast) > 1e-4:
        raise RuntimeError(f"{name}: CachePointer disagrees with the original loop")


def main(args: argparse.Namespace) -> None:
    logger.info("torch %s, %d threads", torch.__version__, torch.get_num_threads())
    for name in args.settings:
        vocab, window, tokens, theta, lambdah = SETTINGS[name]
        with torch.no_grad():
            bench(name, vocab, window, args.tokens or tokens, theta, lambdah, args.hidden_size, args.seed)


def cli_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["ptb", "wt2"],
                        help="vocabulary / window / tokens settings to time")
    parser.add_argument("--tokens", type=int, default=None, help="override the number of timed tokens of every setting")
    parser.add_argument("--hidden-size", type=int, default=400, help="size of the last layer's output")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic outputs and targets")
    args = parser.parse_args()
    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
