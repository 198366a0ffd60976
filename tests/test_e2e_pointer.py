"""fairseq-eval-lm --task awd_cache_pointer on tiny trained checkpoints (awd_lstm and fairseq's
transformer_lm), against the pointer formula evaluated token by token in the test."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import eval_lm_loss, run_fairseq, train_args

WINDOW, THETA, LAMBDA = 40, 0.5, 0.2


def formula_loss(h, targets, log_probs, window, theta, lambdah, skip_chunk_starts_of=None):
    """Mean -log p(y_t) of p = lambda p_cache + (1 - lambda) p_model, slowly: t counts from the
    stream's leading </s>, the cache holds positions t-window..t-1 and is used iff t > window (and,
    with pointer.py's rule, not at a chunk start)."""
    h, log_probs = h.double(), log_probs.double()
    total = 0.0
    for t in range(targets.numel()):
        p = log_probs[t].exp()  # (V,)
        used = t > window and not (skip_chunk_starts_of and t % skip_chunk_starts_of == 0)
        if used:
            attn = torch.softmax(theta * (h[t - window:t] @ h[t]), dim=0)  # (window,)
            p_cache = (attn.unsqueeze(1) * F.one_hot(targets[t - window:t], p.numel()).double()).sum(0)
            p = lambdah * p_cache + (1 - lambdah) * p
        total -= p[targets[t]].log().item()
    return total / targets.numel()


def load(ckpt, data):
    """The checkpoint's model (with its own task) and the test split as our task's stream."""
    from fairseq import checkpoint_utils

    from awd_fairseq.tasks.awd_language_modeling import read_stream

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"data": str(data)})
    return models[0].eval(), read_stream(str(data / "test"), task.source_dictionary)


@pytest.fixture(scope="module")
def awd_checkpoint(tiny_bin, tmp_path_factory):
    save = tmp_path_factory.mktemp("awd_pointer")
    run_fairseq("train", train_args(tiny_bin, save, "--max-update", "30", "--disable-validation"))
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def awd_reference(awd_checkpoint, tiny_bin):
    """The whole test stream in one forward pass: h = the last layer's output, log p_model."""
    model, tokens = load(awd_checkpoint, tiny_bin)
    with torch.no_grad():
        log_probs, extra = model(tokens[:-1].unsqueeze(0))  # (1, N, V)
    return extra["raw_output"][0], tokens[1:], log_probs[0]


def eval_pointer(data, ckpt, *extra):
    args = [data, "--task", "awd_cache_pointer", "--path", ckpt, "--gen-subset", "test", "--no-progress-bar",
            "--pointer-window", WINDOW, "--pointer-theta", THETA, "--pointer-lambda", LAMBDA, *extra]
    proc = run_fairseq("eval_lm", args)
    return eval_lm_loss(proc.stdout + proc.stderr) * math.log(2)


@pytest.mark.parametrize("extra", [["--bptt", "20"], ["--bptt", "7", "--pointer-full-distribution"]])
def test_eval_lm_pointer_equals_formula_whatever_the_windows(tiny_bin, awd_checkpoint, awd_reference, extra):
    expected = formula_loss(*awd_reference, WINDOW, THETA, LAMBDA)
    plain = -awd_reference[2].gather(1, awd_reference[1].unsqueeze(1)).mean().item()
    assert expected < plain - 0.05  # the cache helps this model: the check below is not vacuous
    assert eval_pointer(tiny_bin, awd_checkpoint, *extra) == pytest.approx(expected, abs=2e-4)


def test_original_chunk_start_rule(tiny_bin, awd_checkpoint, awd_reference):
    expected = formula_loss(*awd_reference, WINDOW, THETA, LAMBDA, skip_chunk_starts_of=20)
    got = eval_pointer(tiny_bin, awd_checkpoint, "--bptt", "20", "--pointer-skip-chunk-start")
    assert got == pytest.approx(expected, abs=2e-4)
    assert got != pytest.approx(formula_loss(*awd_reference, WINDOW, THETA, LAMBDA), abs=2e-4)


def test_transformer_lm_with_context(tiny_bin, tmp_path):
    run_fairseq("train", [
        tiny_bin, "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "1",
        "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2",
        "--tokens-per-sample", "64", "--optimizer", "adam", "--lr", "0.002", "--batch-size", "8",
        "--max-update", "20", "--save-dir", tmp_path, "--disable-validation", "--no-progress-bar",
    ])
    ckpt = tmp_path / "checkpoint_last.pt"
    torch.load(ckpt, weights_only=True)
    bptt, context = 20, 30
    model, tokens = load(ckpt, tiny_bin)
    hs, lps = [], []
    with torch.no_grad():  # each window with the `context` tokens before it
        for start in range(0, tokens.numel() - 1, bptt):
            end = min(start + bptt, tokens.numel() - 1)
            x = tokens[max(0, start - context):end].unsqueeze(0)
            h, extra = model(x, features_only=True)
            lp = model.get_normalized_probs((model.decoder.output_layer(h), extra), log_probs=True)
            hs.append(h[0, -(end - start):])
            lps.append(lp[0, -(end - start):])
    expected = formula_loss(torch.cat(hs), tokens[1:], torch.cat(lps), WINDOW, THETA, LAMBDA)
    got = eval_pointer(tiny_bin, ckpt, "--bptt", bptt, "--stream-context", context)
    assert got == pytest.approx(expected, abs=2e-4)
    # the plain stream task scores a stateless model window by window, each window on its own
    nll = []
    with torch.no_grad():
        for start in range(0, tokens.numel() - 1, bptt):
            end = min(start + bptt, tokens.numel() - 1)
            lp = model.get_normalized_probs(model(tokens[start:end].unsqueeze(0)), log_probs=True)[0]
            nll.append(-lp.gather(1, tokens[start + 1 : end + 1].unsqueeze(1)).squeeze(1))
    plain = run_fairseq("eval_lm", [tiny_bin, "--task", "awd_language_modeling", "--path", ckpt,
                                    "--gen-subset", "test", "--bptt", bptt, "--no-progress-bar"])
    expected_bits = torch.cat(nll).mean().item() / math.log(2)
    assert eval_lm_loss(plain.stdout + plain.stderr) == pytest.approx(expected_bits, abs=2e-4)
