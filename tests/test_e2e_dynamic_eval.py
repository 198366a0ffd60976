"""fairseq-eval-lm --task awd_dynamic_eval on tiny trained awd_lstm, qrnn, awd_lstm_mos and transformer_lm
checkpoints: against plain evaluation (zero rates, first segment), the checkpoint's bytes, and the
gradient statistics computed directly in the test."""
import glob
import hashlib
import math
import re

import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_MOS, eval_lm_loss, make_short_splits_bin, run_fairseq, train_args

BPTT = 5
TRANSFORMER_CONTEXT = 10


@pytest.fixture(scope="module")
def short_bin(tmp_path_factory):
    """The tiny corpus' training split with short valid / test splits (~100 segments of 5)."""
    return make_short_splits_bin(tmp_path_factory.mktemp("dyneval"))


def train(arch, data, save):
    if arch == "transformer_lm":
        args = [data, "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "1",
                "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2",
                "--tokens-per-sample", "64", "--optimizer", "adam", "--lr", "0.002", "--batch-size", "8",
                "--max-update", "20", "--save-dir", save, "--disable-validation", "--no-progress-bar"]
    else:
        args = train_args(data, save, "--max-update", "30", "--disable-validation",
                          *(TINY_MOS if arch == "awd_lstm_mos" else []))
        args[args.index("--arch") + 1] = arch
    run_fairseq("train", args)
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="module", params=["awd_lstm", "qrnn", "awd_lstm_mos", "transformer_lm"])
def checkpoint(request, short_bin, tmp_path_factory):
    return request.param, train(request.param, short_bin, tmp_path_factory.mktemp(request.param))


def eval_lm(data, ckpt, task, *extra):
    length = "--dyneval-bptt" if task == "awd_dynamic_eval" else "--bptt"
    proc = run_fairseq("eval_lm", [data, "--task", task, "--path", ckpt, "--gen-subset", "test",
                                   length, BPTT, "--no-progress-bar", "--output-word-probs", *extra])
    out = proc.stdout + proc.stderr
    summary = re.search(r"Loss \(base 2\): [0-9.]+, Perplexity: [0-9.]+", out).group(0)
    lines = re.findall(r"fairseq_cli\.eval_lm(?::| \| )0 (.*)", out)  # one line per segment, in order
    segments = [torch.tensor([float(x) for x in re.findall(r"\[(-?[0-9.]+)\]", line)]) for line in lines]
    return summary, segments, eval_lm_loss(out)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plain_task(arch):
    """Plain evaluation of the same segments: the stream task, or for the stateless transformer_lm
    the same segments with the same context (the cache pointer's model path, lambda 0)."""
    if arch == "transformer_lm":
        return ["awd_cache_pointer", "--pointer-lambda", "0", "--stream-context", TRANSFORMER_CONTEXT]
    return ["awd_language_modeling"]


def dyneval_task(arch, *rates):
    context = ["--stream-context", TRANSFORMER_CONTEXT] if arch == "transformer_lm" else []
    # statistics from the whole training split: with few segments, rarely seen words' MS stays ~0
    # and their embedding rows take steps of eta * g / epsilon (the transformer then diverges)
    return ["awd_dynamic_eval", *context, *rates]


def test_dynamic_eval_against_plain_evaluation(checkpoint, short_bin):
    arch, ckpt = checkpoint
    before = sha256(ckpt)
    plain, plain_segments, plain_loss = eval_lm(short_bin, ckpt, *plain_task(arch))
    still, still_segments, _ = eval_lm(short_bin, ckpt, *dyneval_task(arch, "--dyneval-lr", 0, "--dyneval-lambda", 0))
    assert still == plain  # nothing moves: the very same loss and perplexity lines
    assert len(still_segments) == len(plain_segments) > 50
    # token by token to rounding (autograd on or off may pick other CPU kernels)
    torch.testing.assert_close(torch.cat(still_segments), torch.cat(plain_segments), rtol=0, atol=2e-6)

    _, adapted_segments, adapted_loss = eval_lm(short_bin, ckpt, *dyneval_task(arch))  # the reference's rates
    torch.testing.assert_close(adapted_segments[0], plain_segments[0], rtol=0, atol=2e-6)  # before any update
    assert (adapted_segments[1] - plain_segments[1]).abs().max() > 1e-4  # updated after the first segment
    assert adapted_loss < plain_loss - 0.02  # adapting to the test text helps these undertrained models
    assert sha256(ckpt) == before  # the checkpoint is only read
    assert len(glob.glob(f"{ckpt}.dyneval-*.pt")) == 1  # one statistics file, reused by the later runs


def test_gradient_statistics_equal_direct_computation(short_bin, tmp_path):
    """The cached MS against the training split batchified here (100 streams, segments of 5, state
    carried through the decoder's own extract_features and detached), loss by full softmax."""
    from fairseq import checkpoint_utils

    from awd_fairseq.tasks.token_stream import read_stream

    ckpt = train("awd_lstm", short_bin, tmp_path)
    eval_lm(short_bin, ckpt, "awd_dynamic_eval", "--dyneval-max-segments", 30)
    (stats_file,) = glob.glob(f"{ckpt}.dyneval-*.pt")
    cached = torch.load(stats_file, weights_only=True)

    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"data": str(short_bin)})
    model = models[0].eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    stream = read_stream(str(short_bin / "train"), model.decoder.dictionary)
    rows = stream.numel() // 100
    data = stream[: rows * 100].view(100, rows).t()  # (rows, 100): column j is the j-th hundredth
    sum_sq = [torch.zeros_like(p, dtype=torch.float64) for _, p in named]
    state, segments = None, 0
    for start in range(0, rows - 1, BPTT):
        if segments == 30:
            break
        end = min(start + BPTT, rows - 1)
        features, _, state = model.decoder.extract_features(data[start:end].t(), state)
        state = {k: v.detach() for k, v in state.items()}
        logits = model.decoder.output_layer(features)  # (B, T, V) log-probabilities
        loss = F.nll_loss(logits.reshape(-1, logits.size(-1)), data[start + 1:end + 1].t().reshape(-1))
        for acc, g in zip(sum_sq, torch.autograd.grad(loss, [p for _, p in named])):
            acc += g.double() ** 2
        segments += 1
    assert cached["segments"] == segments
    assert cached["names"] == [n for n, _ in named]
    for (name, _), ms, acc in zip(named, cached["ms"], sum_sq):
        torch.testing.assert_close(ms.double(), (acc / segments).sqrt(), rtol=1e-4, atol=1e-9, msg=name)
    assert not math.isclose(float(cached["ms"][0].sum()), 0.0)


POINTER_WINDOW, POINTER_LAMBDA = 20, 0.25


def test_dynamic_eval_with_the_pointer(checkpoint, short_bin):
    """--dyneval-pointer: with zero rates, exactly the pointer task's scores; with the reference's
    rates, the adapting model's own scores (the gradient ignores the pointer) mixed with the cache,
    checked token by token from the stream: where the target is not among the window's previous
    targets the cache gives it nothing, so the score is log(1 - lambda) + the model's."""
    from awd_fairseq.tasks.token_stream import read_stream

    arch, ckpt = checkpoint
    pointer = ["--pointer-window", POINTER_WINDOW, "--pointer-lambda", POINTER_LAMBDA, "--pointer-theta", 1.0]
    context = ["--stream-context", TRANSFORMER_CONTEXT] if arch == "transformer_lm" else []
    _, alone, _ = eval_lm(short_bin, ckpt, "awd_cache_pointer", *pointer, *context)
    _, still, _ = eval_lm(short_bin, ckpt, *dyneval_task(arch, "--dyneval-lr", 0, "--dyneval-lambda", 0,
                                                         "--dyneval-pointer", *pointer))
    torch.testing.assert_close(torch.cat(still), torch.cat(alone), rtol=0, atol=2e-6)

    _, adapted, _ = eval_lm(short_bin, ckpt, *dyneval_task(arch))
    _, both, _ = eval_lm(short_bin, ckpt, *dyneval_task(arch, "--dyneval-pointer", *pointer))
    adapted, both = torch.cat(adapted).double(), torch.cat(both).double()
    dictionary = __import__("fairseq").data.Dictionary.load(str(short_bin / "dict.txt"))
    targets = read_stream(str(short_bin / "test"), dictionary)[1:].tolist()
    assert len(targets) == both.numel()
    mixed_only_model = adapted + math.log(1 - POINTER_LAMBDA)  # eval-lm prints natural-log scores
    cold = torch.tensor([t <= POINTER_WINDOW for t in range(len(targets))])
    unseen = torch.tensor([t > POINTER_WINDOW and y not in targets[t - POINTER_WINDOW:t]
                           for t, y in enumerate(targets)])
    seen = ~cold & ~unseen
    assert unseen.sum() > 50 and seen.sum() > 50
    torch.testing.assert_close(both[cold], adapted[cold], rtol=0, atol=1e-4)
    torch.testing.assert_close(both[unseen], mixed_only_model[unseen], rtol=0, atol=1e-4)
    assert (both[seen] >= mixed_only_model[seen] - 2e-6).all()  # printed to 6 decimals
    assert (both[seen] > mixed_only_model[seen] + 1e-3).double().mean() > 0.5


def test_divergence_stops_with_the_flag_named(checkpoint, short_bin):
    """Rates far above the reference's grid blow the weights up: fairseq-eval-lm stops at the
    first non-finite score, naming --dyneval-lr, instead of printing a nan perplexity."""
    arch, ckpt = checkpoint
    proc = run_fairseq("eval_lm", [short_bin, "--path", ckpt, "--gen-subset", "test", "--dyneval-bptt", BPTT,
                                   "--no-progress-bar", "--task", *dyneval_task(arch, "--dyneval-lr", 1e35)],
                       check=False, merge_output=True)
    assert proc.returncode != 0
    last = proc.stdout.strip().splitlines()[-1]
    assert "dynamic evaluation diverged" in last and "--dyneval-lr (now 1e+35)" in last, last


def test_reference_scale_equals_its_conversion(short_bin, tmp_path):
    """--dyneval-hyper-scale oldhyper with zihangdai/mos's rates scores as the paper-scale rates
    eta / sqrt(S), lambda / P, epsilon / sqrt(S), S the statistics' segments, P the adapted tensors."""
    ckpt = train("awd_lstm", short_bin, tmp_path)
    segments, old = 30, ["--dyneval-lr", "0.002", "--dyneval-lambda", "0.075", "--dyneval-epsilon", "0.002"]
    _, _, loss_old = eval_lm(short_bin, ckpt, "awd_dynamic_eval", "--dyneval-max-segments", segments,
                             "--dyneval-hyper-scale", "oldhyper", *old)
    (stats_file,) = glob.glob(f"{ckpt}.dyneval-*.pt")
    tensors = len(torch.load(stats_file, weights_only=True)["ms"])
    root = math.sqrt(segments)
    _, _, loss_new = eval_lm(short_bin, ckpt, "awd_dynamic_eval", "--dyneval-max-segments", segments,
                             "--dyneval-lr", 0.002 / root, "--dyneval-lambda", 0.075 / tensors,
                             "--dyneval-epsilon", 0.002 / root)
    _, _, loss_unconverted = eval_lm(short_bin, ckpt, "awd_dynamic_eval", "--dyneval-max-segments", segments, *old)
    assert tensors == 10 and loss_old == loss_new != loss_unconverted  # 2 layers x 4, embedding, output bias
