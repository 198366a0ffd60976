"""`awd_lstm_mos` / `qrnn_mos`: the recipes transcribed from zihangdai/mos, the layer sizes, the
forward pass against the mixture written out, and incremental decoding against the full forward."""
import argparse

import pytest
import torch
from fairseq import models
from fairseq.data import Dictionary

import awd_fairseq  # noqa: F401
from awd_fairseq.models.awd_lstm_mos import AWDLSTMMoSConfig, AWDLSTMMoSModel, QRNNMoSConfig, QRNNMoSModel
from awd_fairseq.modules.mixture_of_softmaxes import MixtureOfSoftmaxes

NO_DROPOUT = dict(dropout=0.0, dropouth=0.0, dropouti=0.0, dropoute=0.0, wdrop=0.0, dropoutl=0.0)
SMALL = dict(emsize=8, nhid=12, nhidlast=10, n_experts=3)

# zihangdai/mos README commands, with main.py's defaults for every model flag they do not give
PTB = dict(emsize=280, nhid=960, nhidlast=620, nlayers=3, n_experts=15, dropout=0.4, dropouth=0.225,
           dropouti=0.4, dropoute=0.1, dropoutl=0.29, wdrop=0.5, tied=True)
WT2 = dict(PTB, emsize=300, nhid=1150, nhidlast=650, dropouth=0.2, dropouti=0.55)


class _Task:
    def __init__(self, n=40):
        self.target_dictionary = self.source_dictionary = Dictionary()
        for i in range(n):
            self.target_dictionary.add_symbol(f"w{i}")


def build(model=AWDLSTMMoSModel, config=AWDLSTMMoSConfig, **kw):
    return model.build_model(config(**{**SMALL, **NO_DROPOUT, "nlayers": 3, **kw}), _Task())


def test_names_resolve_to_our_classes():
    assert models.MODEL_REGISTRY["awd_lstm_mos"] is AWDLSTMMoSModel
    assert models.MODEL_REGISTRY["qrnn_mos"] is QRNNMoSModel
    assert models.ARCH_MODEL_REGISTRY["awd_lstm_mos_wt2"] is AWDLSTMMoSModel


def test_the_recipes_are_the_original_commands():
    defaults = AWDLSTMMoSConfig()
    assert {k: getattr(defaults, k) for k in PTB} == PTB  # `--arch awd_lstm_mos`: the PTB recipe
    args = argparse.Namespace()
    models.ARCH_CONFIG_REGISTRY["awd_lstm_mos_wt2"](args)
    assert {k: vars(args).get(k, getattr(defaults, k)) for k in WT2} == WT2
    args = argparse.Namespace(dropouti=0.3)
    models.ARCH_CONFIG_REGISTRY["awd_lstm_mos_wt2"](args)
    assert args.dropouti == 0.3  # a flag given wins


def test_layer_sizes_tying_and_the_original_defaults_for_nhidlast_and_dropoutl():
    m = build(dropouth=0.3, dropoutl=None)
    sizes = [(l.lstm.input_size, l.lstm.hidden_size) for l in m.decoder.layers]
    assert sizes == [(8, 12), (12, 12), (12, 10)]  # emsize -> nhid -> nhid -> nhidlast
    mos = m.decoder.softmax
    assert isinstance(mos, MixtureOfSoftmaxes)
    assert (mos.hidden_size, mos.embed_dim, mos.n_experts, mos.dropout_latent) == (10, 8, 3, 0.3)
    assert m.decoder._output_weight() is m.decoder.embed_tokens.weight
    assert build(nhidlast=None).decoder.layers[-1].lstm.hidden_size == 8  # main.py: nhidlast = emsize
    assert build(tied=False).decoder.output_weight.shape == (len(_Task().target_dictionary), 8)
    q = build(QRNNMoSModel, QRNNMoSConfig, zoneout=0.0, nlayers=2)
    assert [l.hidden_size for l in q.decoder.layers] == [12, 10]


def test_split_softmax_cutoffs_are_refused_with_the_flag_named():
    with pytest.raises(ValueError, match="--split-softmax-cutoffs"):
        build(split_softmax_cutoffs="10,20")


def _mixture(mos, h, weight, bias):
    """zihangdai/mos model.py's output layer in probability space (float64: nothing underflows)."""
    h, weight, bias = h.double(), weight.double(), bias.double()
    latent = torch.tanh(h @ mos.latent.weight.double().t() + mos.latent.bias.double())  # (N, K * E)
    prior = torch.softmax(h @ mos.prior.weight.double().t(), -1)  # (N, K)
    probs = torch.softmax(latent.view(-1, mos.n_experts, mos.embed_dim) @ weight.t() + bias, -1)  # (N, K, V)
    return (prior.unsqueeze(2) * probs).sum(1).log()


@pytest.mark.parametrize("model, config", [(AWDLSTMMoSModel, AWDLSTMMoSConfig), (QRNNMoSModel, QRNNMoSConfig)])
def test_forward_is_the_mixture_of_the_last_layer_output(model, config):
    torch.manual_seed(0)
    m = build(model, config).eval()
    tokens = torch.randint(4, 40, (3, 7))
    log_probs, extra = m(tokens)  # (B, T, V)
    h = extra["raw_output"].reshape(-1, 10)  # no dropout: the features are the last layer's output
    expected = _mixture(m.decoder.softmax, h, m.decoder.embed_tokens.weight, m.decoder.output_bias)
    torch.testing.assert_close(log_probs.reshape(-1, log_probs.size(-1)).double(), expected, atol=1e-5, rtol=1e-5)
    target = torch.randint(0, 40, (3, 7))
    features, _ = m(tokens, features_only=True)
    torch.testing.assert_close(m.decoder.target_log_probs(features, target),
                               log_probs.gather(2, target.unsqueeze(2)).reshape(-1))


def test_the_mixture_reads_the_dropped_output_batch_major():
    torch.manual_seed(0)
    m = build(dropout=0.5).train()
    seen = []
    original = m.decoder.softmax.target_log_probs
    m.decoder.softmax.target_log_probs = lambda f, *a: seen.append(f) or original(f, *a)
    tokens = torch.randint(4, 40, (3, 7))
    features, extra = m(tokens, features_only=True)
    m.decoder.target_log_probs(features, tokens)
    assert seen[0] is extra["dropped_output"] and seen[0].shape == (3, 7, 10)  # (B, T, nhidlast)
    raw, dropped = extra["raw_output"], extra["dropped_output"]
    mask = torch.where(raw != 0, dropped / raw, torch.zeros_like(raw))
    assert torch.isclose(mask, torch.tensor(0.0)).logical_or(torch.isclose(mask, torch.tensor(2.0))).all()
    assert (mask == mask[:, :1]).all()  # AR reads the locked-dropped output, TAR the raw one


@pytest.mark.parametrize("model, config", [(AWDLSTMMoSModel, AWDLSTMMoSConfig), (QRNNMoSModel, QRNNMoSConfig)])
def test_incremental_decoding_equals_the_full_forward(model, config):
    torch.manual_seed(0)
    dropouts = dict(dropout=0.3, dropouth=0.2, dropouti=0.2, dropoute=0.1, wdrop=0.3, dropoutl=0.3)  # off in eval
    m = build(model, config, mos_chunk_elements=2 * 3 * 44, **dropouts).eval()  # two tokens per chunk
    tokens = torch.randint(4, 40, (3, 8))
    whole, _ = m(tokens)
    inc = {}
    steps = [m(tokens[:, : t + 1], incremental_state=inc)[0][:, -1] for t in range(5)]
    order = torch.tensor([2, 0, 1])
    m.decoder.reorder_incremental_state(inc, order)
    steps = torch.stack(steps, 1)[order]
    later = [m(tokens[order, : t + 1], incremental_state=inc)[0][:, -1] for t in range(5, 8)]
    torch.testing.assert_close(torch.cat([steps, torch.stack(later, 1)], 1), whole[order])
