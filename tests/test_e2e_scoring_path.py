"""fairseq-eval-lm scores through the decoder's target-only path: its per-token log-probabilities
(`--output-word-probs`) equal a full-softmax reference computed here from the checkpoint's weights,
for an unsplit and a split vocabulary; the scorer is handed no (B, T, V) distribution."""
import re

import pytest
import torch
from fairseq import checkpoint_utils

from helpers import run_fairseq, train_args

from awd_fairseq.tasks.token_stream import read_stream

WORD_PROB = re.compile(r"(\S+) \[(-?[0-9.]+)\]")
WORD_LINE = re.compile(r"fairseq_cli\.eval_lm(?: \| |:)(\d+) (.*\[-?[0-9.]+\].*)$", re.M)


def _word_log_probs(out: str):
    """Per-token natural-log probabilities from eval-lm's --output-word-probs lines, in stream order."""
    # one line per window, in stream order: "<sample id> word [lp]\tword [lp] ..."
    return [float(v) for m in WORD_LINE.finditer(out) for _, v in WORD_PROB.findall(m.group(2))]


@torch.no_grad()
def _reference(ckpt, data_bin, split, bptt, split_softmax: bool):
    """Window by window, state carried, the full distribution over the vocabulary gathered at the
    targets: `log_softmax(h W^T + b)` written out for the plain softmax; the decoder's full
    (B, T, V) output (checked against the two-level formula in test_split_softmax.py) when split."""
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"data": str(data_bin)})
    decoder = models[0].eval().decoder
    stream = read_stream(str(data_bin / split), task.dictionary)
    state, out = None, []
    for i in range(0, stream.numel() - 1, bptt):
        n = min(bptt, stream.numel() - 1 - i)
        src, tgt = stream[i : i + n].view(1, -1), stream[i + 1 : i + 1 + n].view(1, -1)
        features, _raw, state = decoder.extract_features(src, state)
        if split_softmax:
            lprobs = decoder.output_layer(features)
        else:
            lprobs = torch.log_softmax(features @ decoder.embed_tokens.weight.t() + decoder.output_bias, dim=-1)
        out.extend(lprobs.gather(2, tgt.unsqueeze(2)).view(-1).tolist())
    return out


@pytest.mark.parametrize("cutoffs", ["none", "200,1000"])
def test_eval_lm_word_probs_equal_a_full_softmax(tiny_bin, tmp_path, cutoffs):
    save = tmp_path / "ckpt"
    run_fairseq("train", train_args(tiny_bin, save, "--max-update", "3", "--disable-validation",
                                    "--split-softmax-cutoffs", cutoffs))
    ckpt = save / "checkpoint_last.pt"
    out = run_fairseq("eval_lm", [tiny_bin, "--task", "awd_language_modeling", "--path", ckpt, "--gen-subset", "valid",
                                  "--bptt", "20", "--output-word-probs"])
    ours = _word_log_probs(out.stdout + out.stderr)
    ref = _reference(ckpt, tiny_bin, "valid", 20, split_softmax=cutoffs != "none")
    assert len(ours) == len(ref)
    assert max(abs(a - b) for a, b in zip(ours, ref)) < 1e-5  # printed with 6 decimals


def test_decoder_scores_targets_alone_as_a_stride_zero_view():
    from fairseq.data import Dictionary

    from awd_fairseq.models.recurrent_decoder import RecurrentLMDecoder
    from awd_fairseq.modules.lstm_layer import LSTMLayer

    d = Dictionary()
    for i in range(60):
        d.add_symbol(f"w{i}")
    torch.manual_seed(0)
    decoder = RecurrentLMDecoder(d, [LSTMLayer(8, 16), LSTMLayer(16, 8)], embed_dim=8, dropout=0, dropouth=0,
                                 dropouti=0, dropoute=0, tied=True, split_softmax_cutoffs=[20, 40]).eval()
    tokens = torch.randint(4, len(d), (2, 7))
    target = torch.randint(4, len(d), (2, 7))
    full = decoder.get_normalized_probs(decoder(tokens), log_probs=True)
    net_output = decoder(tokens, target=target)
    scores = decoder.get_normalized_probs(net_output, log_probs=True)
    assert scores.shape == full.shape and scores.stride(-1) == 0
    torch.testing.assert_close(scores.gather(2, target[..., None]), full.gather(2, target[..., None]))
    probs = decoder.get_normalized_probs(net_output, log_probs=False)
    torch.testing.assert_close(probs.gather(2, target[..., None]), full.exp().gather(2, target[..., None]))
