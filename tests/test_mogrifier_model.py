"""`mogrifier_lstm` as a model: with zero rounds and the AWD-LSTM's choices it is `awd_lstm` (the
same weights give the same log-probabilities, carried state and gradients), and its softmax
temperature against a full softmax (and a mixture of softmaxes) with the temperature written out."""
import pytest
import torch
import torch.nn.functional as F
from fairseq.data import Dictionary

import awd_fairseq  # noqa: F401
from awd_fairseq.models.awd_lstm import AWDLSTMModel, RecurrentLMConfig
from awd_fairseq.models.mogrifier_lstm import (
    MogrifierLSTMConfig, MogrifierLSTMModel, MogrifierLSTMMoSConfig, MogrifierLSTMMoSModel,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script's

SIZES = dict(emsize=8, nhid=12, nlayers=3)
NO_DROPOUT = dict(dropout=0.0, dropouth=0.0, dropouti=0.0, dropoute=0.0, wdrop=0.0)
# the AWD-LSTM's forward pass: no rounds, torch's input gate, the last layer's output, locked dropout
AS_AWD_LSTM = dict(mogrifier_rounds=0, input_gate="standard", layer_outputs="last", shared_mask_dropout=True,
                   state_dropout=0.0, drop_state_probability=0.0)


class _Task:
    def __init__(self, n=40):
        self.target_dictionary = self.source_dictionary = Dictionary()
        for i in range(n):
            self.target_dictionary.add_symbol(f"w{i}")


def awd_and_mogrifier(step="eager", **dropouts):
    torch.manual_seed(0)
    awd = AWDLSTMModel.build_model(RecurrentLMConfig(**SIZES, **{**NO_DROPOUT, **dropouts}), _Task())
    mog = MogrifierLSTMModel.build_model(
        MogrifierLSTMConfig(**SIZES, **{**NO_DROPOUT, **dropouts}, **AS_AWD_LSTM, mogrifier_step=step), _Task())
    with torch.no_grad():  # awd_lstm's weights into the Mogrifier: one bias = b_ih + b_hh
        for name, p in mog.named_parameters():
            if name.startswith("decoder.layers."):
                i, what = name.split(".")[2], name.split(".")[3]
                lstm = awd.decoder.layers[int(i)].lstm
                p.copy_({"weight_ih": lstm.weight_ih_l0, "weight_hh": lstm.weight_hh_l0,
                         "bias": lstm.bias_ih_l0 + lstm.bias_hh_l0}[what])
            else:
                p.copy_(dict(awd.named_parameters())[name])
    return awd, mog


def two_windows(model, tokens, seed=None):
    """Log-probabilities of two windows with the state carried (not detached), and the gradients
    of their targets' total log-probability."""
    if seed is not None:
        torch.manual_seed(seed)
    out, state = [], None
    for window in (tokens[:, :5], tokens[:, 5:]):
        features, _, state = model.decoder.extract_features(window, state)
        out.append(model.decoder.output_layer(features))
    log_probs = torch.cat(out, 1)  # (B, T, V)
    targets = torch.roll(tokens, -1, 1)
    log_probs.gather(2, targets.unsqueeze(2)).sum().backward()
    return log_probs.detach(), state


def gradients(awd, mog):
    """The two models' gradients by Mogrifier name (awd_lstm's b_ih and b_hh both as the one bias)."""
    theirs = {}
    for name, p in mog.named_parameters():
        if name.startswith("decoder.layers."):
            i, what = name.split(".")[2], name.split(".")[3]
            lstm = awd.decoder.layers[int(i)].lstm
            theirs[name] = {"weight_ih": lstm.weight_ih_l0, "weight_hh": lstm.weight_hh_l0,
                            "bias": lstm.bias_ih_l0}[what].grad
            if what == "bias":
                torch.testing.assert_close(lstm.bias_hh_l0.grad, lstm.bias_ih_l0.grad)
        else:
            theirs[name] = dict(awd.named_parameters())[name].grad
    return theirs, {name: p.grad for name, p in mog.named_parameters()}


@pytest.mark.parametrize("step", ["eager", "script"])
def test_zero_rounds_is_awd_lstm(step):
    awd, mog = awd_and_mogrifier(step)
    tokens = torch.randint(4, 40, (3, 11))
    awd.eval(), mog.eval()  # dropout off
    ref, ref_state = two_windows(awd, tokens)
    got, state = two_windows(mog, tokens)
    torch.testing.assert_close(got, ref)
    assert state.keys() == ref_state.keys()  # the stream state's names: "0.h", "0.c", ...
    torch.testing.assert_close(state, ref_state)
    theirs, ours = gradients(awd, mog)
    assert theirs.keys() == ours.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], msg=name)


def test_zero_rounds_is_awd_lstm_with_its_dropouts_in_training():
    """The locked dropouts and the embedding dropout draw the same masks in the same order (weight
    drop draws its mask elsewhere in nn.LSTM's call: the same distribution, another draw)."""
    drops = dict(dropout=0.3, dropouth=0.2, dropouti=0.25, dropoute=0.1)
    awd, mog = awd_and_mogrifier(**drops)
    tokens = torch.randint(4, 40, (3, 11))
    awd.train(), mog.train()
    ref, _ = two_windows(awd, tokens, seed=5)
    got, _ = two_windows(mog, tokens, seed=5)
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(two_windows(mog, tokens, seed=6)[0], ref)  # the dropouts are on


def written_out_softmax(decoder, features, temperature):
    weight = decoder.embed_tokens.weight if decoder.output_weight is None else decoder.output_weight
    return F.log_softmax((features @ weight.t() + decoder.output_bias) / temperature, dim=-1)


def written_out_mixture(decoder, features, temperature):
    """p = sum_k pi_k softmax((W latent_k + b) / T): the components tempered, the weights pi not."""
    mos = decoder.softmax
    latent = torch.tanh(features @ mos.latent.weight.t() + mos.latent.bias)
    latent = latent.view(*features.shape[:-1], mos.n_experts, -1)  # (B, T, K, E)
    prior = torch.softmax(features @ mos.prior.weight.t(), -1)  # (B, T, K)
    logits = (latent @ decoder.embed_tokens.weight.t() + decoder.output_bias) / temperature  # (B, T, K, V)
    return torch.log((prior.unsqueeze(-1) * torch.softmax(logits, -1)).sum(-2))


@pytest.mark.parametrize("mixture", [False, True], ids=["softmax", "mixture"])
@pytest.mark.parametrize("temperature", [1.0, 0.8, 1.3])
def test_softmax_temperature_divides_the_logits(mixture, temperature):
    torch.manual_seed(0)
    if mixture:
        cfg = MogrifierLSTMMoSConfig(emsize=6, nhid=10, nhidlast=10, nlayers=2, n_experts=3, mogrifier_rounds=2,
                                     mogrifier_rank=3, softmax_temperature=temperature, mogrifier_step="eager")
        model = MogrifierLSTMMoSModel.build_model(cfg, _Task())
    else:
        cfg = MogrifierLSTMConfig(emsize=10, nhid=10, nlayers=2, mogrifier_rounds=3, mogrifier_rank=2,
                                  softmax_temperature=temperature, mogrifier_step="eager")
        model = MogrifierLSTMModel.build_model(cfg, _Task())
    model.eval()
    tokens = torch.randint(4, 40, (2, 7))
    with torch.no_grad():
        model.decoder.output_bias.normal_()  # lamb's initial bias is zero: the bias's part would go untested
        features, _ = model(tokens, features_only=True)
        log_probs = model(tokens)[0]
        reference = (written_out_mixture if mixture else written_out_softmax)(model.decoder, features, temperature)
        torch.testing.assert_close(log_probs, reference)
        target = torch.randint(4, 40, (2, 7))  # the scoring path: the targets' log-probabilities alone
        only = model(tokens, target=target)[0][..., 0]
        torch.testing.assert_close(only, reference.gather(2, target.unsqueeze(2)).squeeze(2))
