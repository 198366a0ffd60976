"""The recurrent decoder's pluggable output module: any module with SplitSoftmax's calls, passed
in by the builder, against the distribution written out by hand; and the tie-size checks."""
import pytest
import torch
import torch.nn.functional as F
from fairseq.data import Dictionary
from torch import nn

from awd_fairseq.models.recurrent_decoder import RecurrentLMDecoder
from awd_fairseq.modules.lstm_layer import LSTMLayer
from awd_fairseq.modules.split_softmax import SplitSoftmax

E, H = 6, 10  # embedding width, last layer's width (they differ on purpose)


class ProjectedSoftmax(nn.Module):
    """A stand-in for a mixture of softmaxes: projects H -> E itself, then a softmax."""

    def __init__(self, hidden_size, embed_dim):
        super().__init__()
        self.hidden_size, self.embed_dim = hidden_size, embed_dim
        self.proj = nn.Linear(hidden_size, embed_dim)

    def log_probs(self, features, weight, bias):
        return F.log_softmax(F.linear(self.proj(features), weight, bias), dim=-1)

    def target_log_probs(self, features, weight, bias, target):
        return self.log_probs(features, weight, bias).gather(-1, target.unsqueeze(-1)).squeeze(-1)


def dictionary(n=30):
    d = Dictionary()
    for i in range(n):
        d.add_symbol(f"w{i}")
    return d


def decoder(last, tied=True, **kw):
    layers = [LSTMLayer(E, 8, weight_drop=0.0), LSTMLayer(8, last, weight_drop=0.0)]
    return RecurrentLMDecoder(dictionary(), layers, embed_dim=E, dropout=0.0, dropouth=0.0, dropouti=0.0,
                              dropoute=0.0, tied=tied, **kw)


@pytest.mark.parametrize("tied", [True, False])
def test_a_module_projecting_to_the_embedding_is_used_for_both_calls(tied):
    torch.manual_seed(0)
    out = ProjectedSoftmax(H, E)
    dec = decoder(H, tied=tied, softmax=out).eval()
    assert dec.softmax is out
    weight = dec.embed_tokens.weight if tied else dec.output_weight
    assert weight.shape == (len(dec.dictionary), E)
    tokens = torch.randint(4, 30, (3, 5))
    features, extra = dec(tokens, features_only=True)  # (B, T, H)
    assert features.shape == (3, 5, H)
    expected = torch.log_softmax((features @ out.proj.weight.t() + out.proj.bias) @ weight.t() + dec.output_bias, -1)
    torch.testing.assert_close(dec(tokens)[0], expected)
    target = torch.randint(0, 30, (3, 5))
    torch.testing.assert_close(dec.target_log_probs(features, target),
                               expected.gather(2, target.unsqueeze(2)).reshape(-1))


def test_default_is_the_split_softmax_and_the_tie_checks_name_the_sizes():
    dec = decoder(E, split_softmax_cutoffs=[10])
    assert isinstance(dec.softmax, SplitSoftmax) and dec.softmax.cutoffs == [10]
    with pytest.raises(ValueError, match=r"embedding size \(10.*--emsize \(6\)"):
        decoder(H)  # split softmax: tying needs the last layer to be --emsize wide
    with pytest.raises(ValueError, match="reads features of size 10, the last layer gives 6"):
        decoder(E, softmax=ProjectedSoftmax(H, E))
    with pytest.raises(ValueError, match="--split-softmax-cutoffs"):
        decoder(H, softmax=ProjectedSoftmax(H, E), split_softmax_cutoffs=[10])
    assert decoder(H, tied=False).output_weight.shape == (30 + 4, H)  # untied: as wide as the features


def test_the_state_reaches_the_caller_through_the_stream_state_only():
    from awd_fairseq.modules.stream_state import StreamState

    dec = decoder(E).eval()
    state = StreamState()
    state.seek(0)
    _, extra = dec(torch.randint(4, 30, (2, 4)), stream_state=state)
    assert "state" not in extra
    assert set(state.hidden) == {"0.h", "0.c", "1.h", "1.c"}
