"""The `awd_lstm` model, criterion and task step against independent references."""
import argparse

import pytest
import torch
from fairseq import criterions, models, optim, tasks
from fairseq.data import Dictionary

import awd_fairseq  # noqa: F401
from awd_fairseq.criterions.awd_split_cross_entropy import AWDSplitCrossEntropyCriterion
from awd_fairseq.models.awd_lstm import AWDLSTMModel, RecurrentLMConfig
from awd_fairseq.modules.stream_state import StreamState
from awd_fairseq.optim.nt_asgd import FairseqNTASGD
from awd_fairseq.tasks.awd_language_modeling import AWDLanguageModelingConfig, AWDLanguageModelingTask


class _Task:
    def __init__(self, n=50):
        self.target_dictionary = self.source_dictionary = Dictionary()
        for i in range(n):
            self.target_dictionary.add_symbol(f"w{i}")


def build(no_dropout=True, **kw):
    cfg = RecurrentLMConfig(emsize=8, nhid=12, nlayers=3, **kw)
    if no_dropout:
        cfg.dropout = cfg.dropouth = cfg.dropouti = cfg.dropoute = cfg.wdrop = 0.0
    return AWDLSTMModel.build_model(cfg, _Task())


def test_our_names_resolve_to_our_classes():
    assert tasks.TASK_REGISTRY["awd_language_modeling"] is AWDLanguageModelingTask
    assert models.MODEL_REGISTRY["awd_lstm"] is AWDLSTMModel
    assert criterions.CRITERION_REGISTRY["awd_split_cross_entropy"] is AWDSplitCrossEntropyCriterion
    assert optim.OPTIMIZER_REGISTRY["nt_asgd"] is FairseqNTASGD
    for arch in ("awd_lstm", "awd_lstm_wt2", "awd_lstm_pennchar", "awd_lstm_enwik8"):
        assert models.ARCH_MODEL_REGISTRY[arch] is AWDLSTMModel


def test_named_architectures_override_only_their_recipe():
    def resolved(arch, **given):
        args = argparse.Namespace(**given)
        models.ARCH_CONFIG_REGISTRY[arch](args)
        return vars(args)

    assert resolved("awd_lstm_wt2") == {"dropouth": 0.2, "dropouti": 0.65}
    assert resolved("awd_lstm_wt2", dropouth=0.3)["dropouth"] == 0.3  # a flag given wins
    assert resolved("awd_lstm_enwik8")["nhid"] == 1840


def test_layer_sizes_init_and_tying():
    m = build()
    sizes = [(l.lstm.input_size, l.lstm.hidden_size) for l in m.decoder.layers]
    assert sizes == [(8, 12), (12, 12), (12, 8)]  # emsize -> nhid -> nhid -> emsize
    w = m.decoder.embed_tokens.weight
    assert w.abs().max() <= 0.1 and m.decoder._output_weight() is w
    assert torch.count_nonzero(m.decoder.output_bias) == 0
    untied = build(tied=False)
    assert untied.decoder.layers[-1].lstm.hidden_size == 12 and untied.decoder.output_weight.shape == (len(_Task().target_dictionary), 12)


def _hand_forward(m, tokens):
    """model.py RNNModel.forward without dropout, written out with the LSTM cell equations."""
    x = m.decoder.embed_tokens.weight[tokens.t()]  # (T, B, E)
    for layer in m.decoder.layers:
        lstm = layer.lstm
        H = lstm.hidden_size
        h = torch.zeros(x.size(1), H)
        c = torch.zeros(x.size(1), H)
        outs = []
        for t in range(x.size(0)):
            g = x[t] @ lstm.weight_ih_l0.t() + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.t() + lstm.bias_hh_l0
            i, f, gg, o = g.split(H, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        x = torch.stack(outs)
    logits = x.transpose(0, 1) @ m.decoder.embed_tokens.weight.t() + m.decoder.output_bias
    return torch.log_softmax(logits, -1)


def test_forward_equals_the_recurrence_written_out():
    torch.manual_seed(0)
    m = build().eval()
    tokens = torch.randint(4, 50, (3, 9))
    out, _ = m(tokens)
    assert torch.allclose(out, _hand_forward(m, tokens), atol=1e-5)


def test_a_window_split_in_two_with_the_state_carried_equals_one_piece():
    torch.manual_seed(0)
    m = build().eval()
    tokens = torch.randint(4, 50, (2, 12))
    whole, _ = m(tokens)
    state = StreamState()
    state.seek(0)
    first, _ = m(tokens[:, :5], stream_state=state)
    state.commit(5)
    state.seek(5)
    second, _ = m(tokens[:, 5:], stream_state=state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-6)
    assert not any(t.requires_grad for t in state.hidden.values())  # detached between windows


def test_incremental_decoding_equals_the_full_forward():
    torch.manual_seed(0)
    m = build().eval()
    tokens = torch.randint(4, 50, (2, 7))
    whole, _ = m(tokens)
    inc = {}
    steps = [m(tokens[:, : t + 1], incremental_state=inc)[0][:, -1] for t in range(7)]
    assert torch.allclose(torch.stack(steps, 1), whole, atol=1e-6)


def test_ar_and_tar_are_the_formulas():
    torch.manual_seed(0)
    m = build(no_dropout=False, dropout=0.5).train()  # the last layer's output dropout on
    crit = AWDSplitCrossEntropyCriterion(_Task(), alpha=2.0, beta=1.0)
    tokens, target = torch.randint(4, 50, (3, 6)), torch.randint(4, 50, (3, 6))
    sample = {"net_input": {"src_tokens": tokens}, "target": target, "ntokens": 18, "nsentences": 3}
    seen = {}  # the last layer's output before (raw) and after (dropped) its locked dropout
    hook = m.decoder.dropout_output.register_forward_hook(
        lambda mod, inputs, output: seen.update(raw=inputs[0].transpose(0, 1), dropped=output.transpose(0, 1))
    )
    loss, sample_size, log = crit(m, sample)
    hook.remove()
    raw, dropped = seen["raw"].detach(), seen["dropped"].detach()  # (B, T, H)
    assert not torch.allclose(raw, dropped)  # a criterion reading the wrong one fails below
    w, bias = m.decoder.embed_tokens.weight, m.decoder.output_bias  # tied, full softmax (V = 50)
    lprobs = torch.log_softmax(dropped @ w.t() + bias, -1)  # (B, T, V)
    nll = -sum(lprobs[b, t, target[b, t]] for b in range(3) for t in range(6))
    # main.py: AR on the last layer's dropped output, TAR on its raw (undropped) output
    ar = sum(dropped[b, t, k] ** 2 for b in range(3) for t in range(6) for k in range(8)) / (3 * 6 * 8)
    tar = sum((raw[b, t + 1, k] - raw[b, t, k]) ** 2 for b in range(3) for t in range(5) for k in range(8)) / (3 * 5 * 8)
    assert sample_size == 18
    torch.testing.assert_close(log["loss"], nll.detach(), atol=1e-4, rtol=1e-5)
    # fairseq divides by the sample size: mean CE + alpha * AR + beta * TAR, as main.py
    torch.testing.assert_close(loss.detach() / 18, (nll / 18 + 2.0 * ar + 1.0 * tar).detach(), atol=1e-5, rtol=1e-5)
    m.eval()
    loss_eval, _, log_eval = crit(m, sample)
    assert "ar" not in log_eval and torch.allclose(loss_eval, log_eval["loss"])


def test_learning_rate_is_scaled_by_seq_len_over_bptt_at_the_step():
    torch.manual_seed(0)
    m = build().train()
    crit = AWDSplitCrossEntropyCriterion(_Task(), alpha=0.0, beta=0.0)
    params = list(m.parameters())
    from fairseq.optim.nag import FairseqNAG, FairseqNAGConfig

    opt = FairseqNAG(FairseqNAGConfig(momentum=0.0, weight_decay=0.1, lr=[2.0]), params)  # = SGD here
    task = AWDLanguageModelingTask(
        AWDLanguageModelingConfig(bptt=14, reset_state_every_window=True, train_subset="train", seed=1), Dictionary()
    )
    tokens, target = torch.randint(4, 50, (2, 7)), torch.randint(4, 50, (2, 7))
    sample = {"net_input": {"src_tokens": tokens}, "target": target, "ntokens": 14, "nsentences": 2}
    before = [p.detach().clone() for p in params]
    task.train_step(sample, m, crit, opt, 0)
    grads = [p.grad.clone() for p in params]
    task.optimizer_step(opt, m, 0)
    for p, p0, g in zip(params, before, grads):
        # main.py: lr2 = lr; lr = lr2 * seq_len / bptt (7 / 14); SGD(weight_decay) step; lr = lr2
        assert torch.allclose(p, p0 - 2.0 * 0.5 * (g + 0.1 * p0), atol=1e-6)
    assert opt.get_lr() == 2.0


def test_checkpoint_with_another_vocabulary_is_a_clear_error():
    m = build()
    state = m.state_dict()
    other = AWDLSTMModel.build_model(RecurrentLMConfig(emsize=8, nhid=12, nlayers=3), _Task(60))
    with pytest.raises(ValueError, match="dict.txt"):
        other.load_state_dict(state)
