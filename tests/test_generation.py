"""Generation and sentence scoring, unit level: incremental decoding against the full forward pass
(with beam reordering), the sampler against its tempered distribution, the sentence dataset
(end to end through the tools: test_e2e_generation.py)."""

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import FairseqLanguageModel

from awd_fairseq.models.recurrent_decoder import RecurrentLMDecoder
from awd_fairseq.modules.lstm_layer import LSTMLayer
from awd_fairseq.modules.qrnn import QRNNLayer
from awd_fairseq.tasks.lm_inference import SentenceDataset, sample_tokens

LAYERS = {
    "lstm": lambda i, o: LSTMLayer(i, o, weight_drop=0.3),
    "qrnn": lambda i, o: QRNNLayer(i, o, window=1),
    "qrnn_window2": lambda i, o: QRNNLayer(i, o, window=2),
}


def tiny_lm(kind, vocab=30, seed=0):
    torch.manual_seed(seed)
    dictionary = Dictionary()
    for i in range(vocab):
        dictionary.add_symbol(f"w{i}")
    layers = [LAYERS[kind](8, 12), LAYERS[kind](12, 8)]
    decoder = RecurrentLMDecoder(dictionary, layers, embed_dim=8, dropout=0.3, dropouth=0.2, dropouti=0.2,
                                 dropoute=0.1, tied=True, split_softmax_cutoffs=[])
    return FairseqLanguageModel(decoder).eval()


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_incremental_decoding_equals_full_forward_with_reordering(kind):
    model = tiny_lm(kind)
    tokens = torch.randint(4, len(model.decoder.dictionary), (3, 9))  # (B, T)
    state, steps = {}, []
    with torch.no_grad():
        for t in range(5):  # one token per call, as SequenceGenerator does
            steps.append(model.decoder(tokens[:, : t + 1], incremental_state=state)[0][:, -1])
        torch.testing.assert_close(torch.stack(steps, 1), model(tokens[:, :5])[0], rtol=1e-5, atol=1e-5)
        # a beam search keeps hypotheses 2, 0, 0: the state follows them
        order = torch.tensor([2, 0, 0])
        model.decoder.reorder_incremental_state(state, order)
        reordered = torch.cat([tokens[order, :5], tokens[:, 5:]], 1)
        later = [model.decoder(reordered[:, : t + 1], incremental_state=state)[0][:, -1] for t in range(5, 9)]
        torch.testing.assert_close(torch.stack(later, 1), model(reordered)[0][:, 5:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 1e-6])
def test_sampler_low_temperature_is_greedy_without_overflow(temperature):
    model = tiny_lm("lstm")
    eos = model.decoder.dictionary.eos()
    out = list(sample_tokens(model, 12, temperature, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        lprobs = model(torch.tensor([[eos, *out[:-1]]]))[0][0]  # (12, V), the full forward pass
    assert out == lprobs.argmax(-1).tolist()


@pytest.fixture
def one_thread():
    """2000 one-token forwards: with several threads on a loaded machine each tiny op waits for
    its threads (minutes instead of seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sampler_draws_from_the_tempered_distribution(one_thread):
    model = tiny_lm("qrnn")
    eos = model.decoder.dictionary.eos()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lprobs = model(torch.tensor([[eos]]))[0][0, 0]  # (V,)
    expected = torch.softmax(lprobs / 0.5, -1)
    draws = torch.tensor([next(sample_tokens(model, 1, 0.5, generator=g)) for _ in range(2000)])
    freq = torch.bincount(draws, minlength=expected.numel()).float() / draws.numel()
    assert (freq - expected).abs().max() < 0.04


def test_sentence_dataset_scores_the_closing_eos():
    ds = SentenceDataset([torch.tensor([7, 8, 9, 2]), torch.tensor([2]), torch.tensor([5, 6])], eos=2, pad=1)
    batch = ds.collater([ds[i] for i in range(3)])
    assert batch["net_input"]["src_tokens"].tolist() == [[2, 7, 8, 9], [2, 1, 1, 1], [2, 5, 6, 1]]
    assert batch["target"].tolist() == [[7, 8, 9, 2], [2, 1, 1, 1], [5, 6, 2, 1]]
    assert batch["ntokens"] == 4 + 1 + 3


# -- end to end on tiny trained checkpoints --------------------------------------------------
