"""awd_fairseq.tools.softmax_temperature: lamb's search (evaluation.py) on functions whose minimum
is known, and the loss at a temperature against a full softmax with the temperature written out,
the features taken from one forward pass over each stream."""
import math

import pytest
import torch
import torch.nn.functional as F
from fairseq.data import Dictionary

import awd_fairseq  # noqa: F401
from awd_fairseq.models.mogrifier_lstm import MogrifierLSTMConfig, MogrifierLSTMModel
from awd_fairseq.tools.softmax_temperature import fit_softmax_temperature, lamb_search, loss_at_temperature

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_search_finds_the_grid_minimum_and_stops_two_after_it():
    calls = []

    def parabola(s):
        calls.append(round(s, 2))
        return (s - 0.95) ** 2

    best, tried = lamb_search(parabola)
    assert round(best, 2) == 0.96 or round(best, 2) == 0.94  # the grid 1.06, 1.04, ... is off 0.95 by 0.01
    assert calls == [1.06, 1.04, 1.02, 1.0, 0.98, 0.96, 0.94, 0.92, 0.9][: len(calls)]
    best_index = calls.index(round(best, 2))
    assert len(calls) == best_index + 3  # two more candidates, then stop
    assert [round(s, 2) for s, _ in tried] == calls


def test_search_never_goes_below_the_lowest_multiplier():
    best, tried = lamb_search(lambda s: s)  # lower is always better
    assert round(best, 2) == 0.8 and round(tried[-1][0], 2) == 0.8 and len(tried) == 14
    best, _ = lamb_search(lambda s: -s)  # the first is best
    assert best == 1.06


class _Task:
    def __init__(self, n=30):
        self.target_dictionary = self.source_dictionary = Dictionary()
        for i in range(n):
            self.target_dictionary.add_symbol(f"w{i}")


@pytest.fixture
def model():
    torch.manual_seed(0)
    cfg = MogrifierLSTMConfig(emsize=12, nhid=12, nlayers=2, mogrifier_rounds=3, mogrifier_rank=2,
                              mogrifier_step="eager")
    m = MogrifierLSTMModel.build_model(cfg, _Task())
    with torch.no_grad():
        m.decoder.output_bias.normal_()
        m.decoder.embed_tokens.weight.mul_(8.0)  # confident logits: the best temperature is not 1
    return m.eval()


def full_softmax_loss(model, tokens, streams, temperature):
    """Each stream read in one forward pass, the logits divided by T in the test."""
    length = (tokens.numel() - 1) // streams
    decoder, total, count = model.decoder, 0.0, 0
    weight = decoder.embed_tokens.weight
    with torch.no_grad():
        for i in range(streams):
            x = tokens[i * length : (i + 1) * length].unsqueeze(0)
            y = tokens[i * length + 1 : (i + 1) * length + 1]
            features = decoder.extract_features(x, None)[0][0]  # (L, H)
            log_probs = F.log_softmax((features @ weight.t() + decoder.output_bias) / temperature, -1)
            total -= log_probs.gather(1, y.unsqueeze(1)).sum().item()
            count += y.numel()
    return total / count / math.log(2)


def test_fit_is_the_best_of_lambs_candidates_by_full_softmax(model):
    tokens = torch.randint(4, 30, (401,))
    fit = fit_softmax_temperature(model, tokens, streams=4, window=7)
    for temperature, loss in fit.tried:  # every candidate's loss, the windows' state carried
        assert loss == pytest.approx(full_softmax_loss(model, tokens, 4, temperature), abs=1e-5)
    assert fit.loss == min(loss for _, loss in fit.tried)
    assert fit.loss_at_one == pytest.approx(full_softmax_loss(model, tokens, 4, 1.0), abs=1e-5)
    assert fit.loss < fit.loss_at_one - 1e-3 and fit.temperature != 1.0
    assert model.decoder.softmax_temperature == 1.0  # restored


def test_other_decoders_are_refused():
    class Plain(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="mogrifier_lstm"):
        loss_at_temperature(Plain(), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), 1.0)
