"""CachePointer against slow per-token references written from the formula and from pointer.py."""

import pytest
import torch

from awd_fairseq.tools.bench.reference_loops import original_pointer_chunk
from awd_fairseq.modules.cache_pointer import CachePointer

WINDOW, HIDDEN, VOCAB = 6, 5, 7  # a small vocabulary so the cache often holds the target
THETA, LAMBDAH = 0.8, 0.3


def make_stream(length, seed=0):
    """Random stream: hidden (N, H), next words (N,), model log-probs (N, V), all float64."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(length, HIDDEN, generator=g, dtype=torch.float64)
    targets = torch.randint(VOCAB, (length,), generator=g)
    log_probs = torch.randn(length, VOCAB, generator=g, dtype=torch.float64).log_softmax(-1)
    return hidden, targets, log_probs


def formula_reference(hidden, targets, log_probs, window, theta, lambdah):
    """Per-token p(y_t) from Grave et al., cache over positions t-window..t-1 once t > window."""
    out = []
    for t in range(hidden.size(0)):
        p = log_probs[t].exp()  # (V,)
        if t > window:
            previous = hidden[t - window:t]  # (window, H)
            attn = torch.softmax(theta * (previous @ hidden[t]), dim=0)  # (window,)
            one_hot = torch.nn.functional.one_hot(targets[t - window:t], VOCAB).to(attn)
            p_cache = (attn.unsqueeze(1) * one_hot).sum(0)  # (V,)
            p = lambdah * p_cache + (1 - lambdah) * p
        out.append(p[targets[t]].log())
    return torch.stack(out)


def original_reference(hidden, targets, log_probs, chunk_sizes, window, theta, lambdah):
    """pointer.py's evaluate loop, chunk by chunk (awd_fairseq/tools/bench/reference_loops.py, the
    restatement the benchmarks also time): concatenate, `start_idx + idx > window`, trim."""
    out, n = [], 0
    pointer_history, next_word_history = hidden.new_empty(0, HIDDEN), hidden.new_empty(0, VOCAB)
    for size in chunk_sizes:
        log_p, pointer_history, next_word_history = original_pointer_chunk(
            hidden[n:n + size], targets[n:n + size], log_probs[n:n + size].exp(), pointer_history,
            next_word_history, window, theta, lambdah, VOCAB)
        out.append(log_p)
        n += size
    return torch.cat(out)


def run_fast(pointer, hidden, targets, log_probs, chunk_sizes):
    """Feed the stream chunk by chunk through CachePointer.score; checks the bounded history."""
    out, n = [], 0
    for size in chunk_sizes:
        rows = slice(n, n + size)
        target_log_probs = log_probs[rows].gather(1, targets[rows].unsqueeze(1)).squeeze(1)
        out.append(pointer.score(hidden[rows], targets[rows], target_log_probs))
        n += size
        assert pointer.num_seen == n
        assert pointer.history_hidden.size(0) == min(n, pointer.window)
        assert torch.equal(pointer.history_next_words, targets[max(n - pointer.window, 0):n])
    return torch.cat(out)


# chunk lengths around WINDOW = 6: T = 1, T < window, T = window, T > window, several boundaries
CHUNKINGS = [
    [60],
    [1] * 60,
    [3, 1, 7, 2, 6, 1, 13, 5, 1, 1, 20],
    [6, 6, 6, 6, 6, 6, 6, 6, 6, 6],
    [7, 1, 1, 30, 2, 19],
]


@pytest.mark.parametrize("chunk_sizes", CHUNKINGS)
@pytest.mark.parametrize("block_size", [1024, 4])
def test_matches_formula_for_any_chunking(chunk_sizes, block_size):
    hidden, targets, log_probs = make_stream(sum(chunk_sizes))
    expected = formula_reference(hidden, targets, log_probs, WINDOW, THETA, LAMBDAH)
    pointer = CachePointer(window=WINDOW, theta=THETA, lambdah=LAMBDAH, block_size=block_size)
    got = run_fast(pointer, hidden, targets, log_probs, chunk_sizes)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_chunking_does_not_change_results():
    hidden, targets, log_probs = make_stream(60)
    results = [
        run_fast(CachePointer(window=WINDOW, theta=THETA, lambdah=LAMBDAH),
                 hidden, targets, log_probs, sizes)
        for sizes in CHUNKINGS
    ]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_sizes", CHUNKINGS)
def test_skip_chunk_start_matches_original_loop(chunk_sizes):
    hidden, targets, log_probs = make_stream(sum(chunk_sizes), seed=1)
    expected = original_reference(
        hidden, targets, log_probs, chunk_sizes, WINDOW, THETA, LAMBDAH)
    pointer = CachePointer(window=WINDOW, theta=THETA, lambdah=LAMBDAH, skip_chunk_start=True)
    got = run_fast(pointer, hidden, targets, log_probs, chunk_sizes)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_original_skips_only_chunk_starts_after_warm_up():
    chunk_sizes = [3, 1, 7, 2, 6, 1, 13]
    hidden, targets, log_probs = make_stream(sum(chunk_sizes), seed=2)
    model = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    original = run_fast(CachePointer(WINDOW, THETA, LAMBDAH, skip_chunk_start=True),
                        hidden, targets, log_probs, chunk_sizes)
    default = run_fast(CachePointer(WINDOW, THETA, LAMBDAH), hidden, targets, log_probs,
                       chunk_sizes)
    starts = torch.tensor([0, 3, 4, 11, 13, 19, 20])
    skipped = starts[starts > WINDOW]  # chunk starts at n >= window: 11, 13, 19, 20
    others = torch.ones(len(model), dtype=torch.bool)
    others[skipped] = False
    assert torch.equal(original[skipped], model[skipped])
    assert not torch.equal(default[skipped], model[skipped])
    torch.testing.assert_close(original[others], default[others], rtol=1e-12, atol=1e-12)


def test_warm_up_edge_is_strictly_after_window():
    hidden, targets, log_probs = make_stream(WINDOW + 2, seed=3)
    model = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    got = CachePointer(WINDOW, THETA, LAMBDAH).score(hidden, targets, model)
    # positions 0..window: no cache, exactly the model
    assert torch.equal(got[:WINDOW + 1], model[:WINDOW + 1])
    # position window + 1: cache over positions 1..window (not 0, not itself)
    t = WINDOW + 1
    attn = torch.softmax(THETA * (hidden[1:t] @ hidden[t]), dim=0)
    p_cache = attn[targets[1:t] == targets[t]].sum()
    expected = (LAMBDAH * p_cache + (1 - LAMBDAH) * model[t].exp()).log()
    torch.testing.assert_close(got[t], expected, rtol=1e-12, atol=1e-12)
    assert got[t] != model[t]


def test_lambda_zero_is_exactly_the_model():
    hidden, targets, log_probs = make_stream(40, seed=4)
    model = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    pointer = CachePointer(WINDOW, THETA, lambdah=0.0)
    got = torch.cat([pointer.score(hidden[a:a + 9], targets[a:a + 9], model[a:a + 9])
                     for a in range(0, 40, 9)])
    assert torch.equal(got, model)
    full = CachePointer(WINDOW, THETA, lambdah=0.0).full_distribution(hidden, targets, log_probs)
    assert torch.equal(full, log_probs)


@pytest.mark.parametrize("skip_chunk_start", [False, True])
def test_full_distribution_is_normalized_and_matches_score(skip_chunk_start):
    hidden, targets, log_probs = make_stream(40, seed=5)
    model = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    scorer = CachePointer(WINDOW, THETA, LAMBDAH, skip_chunk_start=skip_chunk_start)
    full = CachePointer(WINDOW, THETA, LAMBDAH, skip_chunk_start=skip_chunk_start,
                        block_size=5)
    for a, b in [(0, 4), (4, 5), (5, 17), (17, 40)]:
        scores = scorer.score(hidden[a:b], targets[a:b], model[a:b])
        dist = full.full_distribution(hidden[a:b], targets[a:b], log_probs[a:b])  # (T, V)
        torch.testing.assert_close(dist.exp().sum(1), torch.ones(b - a, dtype=dist.dtype))
        at_target = dist.gather(1, targets[a:b].unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(at_target, scores, rtol=1e-12, atol=1e-12)


def test_float32_hidden_and_reset():
    hidden, targets, log_probs = make_stream(30, seed=6)
    model = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    pointer = CachePointer(WINDOW, THETA, LAMBDAH)
    first = pointer.score(hidden.float(), targets, model.float())
    pointer.reset()
    assert pointer.num_seen == 0 and pointer.history_hidden is None
    again = pointer.score(hidden.float(), targets, model.float())
    assert torch.equal(first, again)
    expected = formula_reference(hidden, targets, log_probs, WINDOW, THETA, LAMBDAH)
    torch.testing.assert_close(first, expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window", [0, -3])
def test_window_must_be_positive(window):
    with pytest.raises(ValueError, match="--pointer-window"):
        CachePointer(window=window, theta=THETA, lambdah=LAMBDAH)


def test_lambda_out_of_range():
    with pytest.raises(ValueError, match="lambda"):
        CachePointer(window=WINDOW, theta=THETA, lambdah=1.5)


def test_cache_alone_mixes_into_score_for_any_lambda():
    """target_cache_log_probs + mix_with (the lambda search) against the formula per lambda."""
    from awd_fairseq.modules.cache_pointer import mix_with

    hidden, targets, log_probs = make_stream(45, seed=7)
    model = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    pointer = CachePointer(WINDOW, THETA, lambdah=1.0)
    parts = [pointer.target_cache_log_probs(hidden[a:a + 8], targets[a:a + 8]) for a in range(0, 45, 8)]
    log_cache, used = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    assert used.tolist() == [t > WINDOW for t in range(45)]
    for lambdah in [0.0, 0.1, 0.5, 1.0]:
        got = torch.where(used, mix_with(lambdah, log_cache, model), model)
        expected = formula_reference(hidden, targets, log_probs, WINDOW, THETA, lambdah)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
