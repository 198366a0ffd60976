"""The fastai import against fastai's own language model (`get_language_model(AWD_LSTM, ...)`, in
eval mode, its hidden state carried by fastai between calls), where fastai is installed; skipped
otherwise. Also checks that the test fixture's key layout (tests/fastai_reference.py) is the one
fastai saves."""
import pytest
import torch

from fastai_reference import ITOS, fastai_state_dict
from test_fastai_import import convert, fastai_row_of, fastai_stream, load, scores_by_windows

learner = pytest.importorskip("fastai.text.learner")
awdlstm = pytest.importorskip("fastai.text.models.awdlstm")


def fastai_model(seed=0, **sizes):
    torch.manual_seed(seed)
    config = {**awdlstm.awd_lstm_lm_config, "emb_sz": 12, "n_hid": 20, "n_layers": 3, **sizes}
    model = learner.get_language_model(awdlstm.AWD_LSTM, len(ITOS), config=config)
    with torch.no_grad():  # fastai initialises the LSTMs in [-1/sqrt(H), 1/sqrt(H)]: make the test harder
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def test_fixture_layout_is_fastai_2s():
    theirs = fastai_model().state_dict()
    ours = fastai_state_dict(layout="fastai2")
    assert list(theirs) == list(ours)
    assert [tuple(v.shape) for v in theirs.values()] == [tuple(v.shape) for v in ours.values()]


@pytest.mark.parametrize("n_layers", [3, 2])
def test_scores_equal_fastai_awd_lstm_across_windows(tmp_path, n_layers):
    model = fastai_model(seed=n_layers, n_layers=n_layers)
    convert(tmp_path, model.state_dict())
    ours_model, dictionary = load(tmp_path)
    row = fastai_row_of(dictionary)
    to_fairseq = torch.empty_like(row)
    to_fairseq[row] = torch.arange(len(row))
    ids = fastai_stream(torch.Generator().manual_seed(7), batch=2, length=33)
    model.reset()
    with torch.no_grad():
        expected = torch.cat([torch.log_softmax(model(ids[:, s:s + 10])[0], -1) for s in range(0, 33, 10)], 1)
    ours = scores_by_windows(ours_model, to_fairseq[ids], window=6)
    torch.testing.assert_close(ours, expected[..., row], rtol=0, atol=1e-5)
