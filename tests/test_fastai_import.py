"""The fastai import (awd_fairseq/tools/fastai_*.py): a state dict in fastai's key layout and
shapes with random weights, converted, loaded by fairseq's own checkpoint loader and scored against
fastai's forward pass written out (tests/fastai_reference.py), window after window with the state
carried; the backward model on its reversed stream; the vocabulary's order and its re-alignment
against fastai's `match_embeds` rule written out; refusals."""
import pickle
import subprocess
import sys

import pytest
import torch

from awd_fairseq.modules.stream_state import StreamState
from awd_fairseq.tools.fastai_import import import_fastai_lm
from awd_fairseq.tools.fastai_text import reverse_documents
from helpers import REPO
from fastai_reference import ITOS, FastaiForward, fastai_state_dict, write_itos

# fairseq's four specials, by index, and the fastai token each one reads (docs/pretrained.md)
FAIRSEQ_SPECIALS = ["xxeos", "xxpad", "xxbos", "xxunk"]  # <s>, <pad>, </s>, <unk>


def convert(tmp_path, sd, itos=ITOS, **kwargs):
    torch.save(sd, tmp_path / "lstm.pth")
    write_itos(tmp_path / "itos.pkl", itos)
    return import_fastai_lm(str(tmp_path / "lstm.pth"), str(tmp_path / "itos.pkl"), str(tmp_path / "out"), **kwargs)


def load(tmp_path):
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(tmp_path / "out" / "model.pt")], arg_overrides={"data": str(tmp_path / "out")})
    return models[0].eval(), task.target_dictionary


def fastai_row_of(dictionary, itos=ITOS):
    """For every fairseq row, the fastai index it must hold, read from dict.txt's words."""
    return torch.tensor([itos.index(FAIRSEQ_SPECIALS[r] if r < 4 else dictionary[r]) for r in range(len(dictionary))])


def scores_by_windows(model, stream, window):
    """log p over fairseq's rows (B, T, V) for inputs stream (B, T), `window` tokens a call."""
    state, out = StreamState(), []
    with torch.no_grad():
        for start in range(0, stream.size(1), window):
            out.append(model(stream[:, start:start + window], stream_state=state)[0])
    return torch.cat(out, 1)


def fastai_stream(rng, batch, length, vocab=len(ITOS)):
    """(B, T) fastai ids: words, with xxbos starting documents."""
    ids = torch.randint(9, vocab, (batch, length), generator=rng)
    ids[:, 0] = ITOS.index("xxbos")
    ids[torch.rand(batch, length, generator=rng) < 0.1] = ITOS.index("xxbos")
    ids[torch.rand(batch, length, generator=rng) < 0.05] = ITOS.index("xxunk")
    return ids


@pytest.mark.parametrize("layout", ["fastai", "fastai2", "fastai-0.7", "wrapped"])
def test_scores_equal_fastai_forward_across_windows(tmp_path, layout):
    sd = fastai_state_dict(layout="fastai" if layout == "wrapped" else layout, seed=1)
    result = convert(tmp_path, {"model": sd, "opt": {"lr": 0.1}} if layout == "wrapped" else sd)
    assert result.vocab_size == len(ITOS) and result.new_words == 0
    model, dictionary = load(tmp_path)
    row = fastai_row_of(dictionary)
    assert sorted(row.tolist()) == list(range(len(ITOS)))  # a permutation of fastai's rows
    to_fairseq = torch.empty_like(row)
    to_fairseq[row] = torch.arange(len(row))
    ids = fastai_stream(torch.Generator().manual_seed(2), batch=3, length=40)
    reference = FastaiForward(sd)
    expected = torch.cat([reference(ids[:, s:s + 9]) for s in range(0, 40, 9)], 1)  # fastai's windows of 9
    ours = scores_by_windows(model, to_fairseq[ids], window=7)
    torch.testing.assert_close(ours, expected[..., row], rtol=0, atol=1e-5)
    assert (ours[:, 20:] - scores_by_windows(model, to_fairseq[ids[:, 20:]], 7)).abs().max() > 1e-3  # state matters


def test_backward_model_scores_its_reversed_stream(tmp_path):
    sd = fastai_state_dict(seed=3)
    convert(tmp_path, sd)
    model, dictionary = load(tmp_path)
    rng = torch.Generator().manual_seed(4)
    documents = [[ITOS[i] for i in torch.randint(9, len(ITOS), (int(n),), generator=rng)]
                 for n in torch.randint(0, 12, (6,), generator=rng)]
    # fastai's backward stream: the forward one, xxbos before each document, flipped whole
    forward_ids = [ITOS.index(t) for doc in documents for t in ["xxbos", *doc]]
    flipped = torch.tensor(forward_ids).flip(0)
    # fairseq's stream of the reversed text: </s>, then every line followed by </s>
    lines = [" ".join(tokens) for tokens in reverse_documents(documents)]
    encoded = [dictionary.encode_line(line, add_if_not_exist=False) for line in lines]  # each ends with </s>
    stream = [dictionary.eos()] + [int(t) for line in encoded for t in line]
    row = fastai_row_of(dictionary)
    assert row[torch.tensor(stream[1:])].tolist() == flipped.tolist()
    ours = scores_by_windows(model, torch.tensor([stream[:-1]]), window=5)
    targets = torch.tensor(stream[1:])
    ours = ours[0].gather(1, targets[:, None])[:, 0]
    reference = FastaiForward(sd)(torch.cat([torch.tensor([ITOS.index("xxbos")]), flipped[:-1]])[None])[0]
    torch.testing.assert_close(ours, reference.gather(1, flipped[:, None])[:, 0], rtol=0, atol=1e-5)


def test_checkpoint_loads_weights_only_without_the_plugin(tmp_path):
    convert(tmp_path, fastai_state_dict())
    code = (f"import torch\nstate = torch.load({str(tmp_path / 'out' / 'model.pt')!r}, weights_only=True)\n"
            "print(state['cfg']['model']['_name'], state['cfg']['task']['_name'], len(state['model']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["awd_lstm", "awd_language_modeling", "15"]


def test_dict_txt_is_fastai_order_without_the_specials(tmp_path):
    extra = ["two words", "tab\there", "the", "", "<unk>", "#fairseq:overwrite"]  # fastai indices 9-14
    itos = ITOS[:9] + extra + ITOS[9:]  # "the" again at 15
    convert(tmp_path, fastai_state_dict(vocab=len(itos)), itos=itos)
    lines = (tmp_path / "out" / "dict.txt").read_text(encoding="utf-8").splitlines()
    assert all(line.endswith(" 1") for line in lines)
    assert [line[:-2] for line in lines] == [
        "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj",  # the specials fairseq's four do not take
        "two\u2581words", "tab\\there", "the", "<fastai:12>", "<fastai:13>", "<fastai:14>", "<fastai:15>", *ITOS[10:],
    ]


def test_without_xxeos_fairseq_bos_takes_xxfld(tmp_path):
    itos = [t for t in ITOS if t != "xxeos"]
    sd = fastai_state_dict(vocab=len(itos))
    convert(tmp_path, sd, itos=itos)
    model, dictionary = load(tmp_path)
    assert "xxfld" not in dictionary.indices
    fld = itos.index("xxfld")
    torch.testing.assert_close(model.decoder.embed_tokens.weight[dictionary.bos()], sd["0.encoder.weight"][fld])
    torch.testing.assert_close(model.decoder.output_bias[dictionary.bos()], sd["1.decoder.bias"][fld])


def test_realigned_vocabulary_follows_match_embeds(tmp_path):
    """fastai's match_embeds: a word of the new vocabulary keeps its pretrained row, a new word gets
    the mean of all pretrained rows (embedding and bias alike)."""
    user = ["the", "game", "zebra", "japan", "xxmaj", "quokka", "madeupword0000"]
    (tmp_path / "user_dict.txt").write_text("".join(f"{w} {10 - i}\n" for i, w in enumerate(user)), encoding="utf-8")
    sd = fastai_state_dict(seed=5)
    result = convert(tmp_path, sd, vocab=str(tmp_path / "user_dict.txt"))
    assert (tmp_path / "out" / "dict.txt").read_text() == (tmp_path / "user_dict.txt").read_text()
    model, dictionary = load(tmp_path)
    emb, bias = sd["0.encoder.weight"], sd["1.decoder.bias"]
    for r in range(len(dictionary)):
        word = FAIRSEQ_SPECIALS[r] if r < 4 else dictionary[r]
        e, b = (emb[ITOS.index(word)], bias[ITOS.index(word)]) if word in ITOS else (emb.mean(0), bias.mean())
        torch.testing.assert_close(model.decoder.embed_tokens.weight[r], e, rtol=0, atol=1e-7)
        torch.testing.assert_close(model.decoder.output_bias[r], b, rtol=0, atol=1e-7)
    assert result.new_words == 3 and result.vocab_size == 4 + len(user)


def _refusal(tmp_path, sd, itos=ITOS):
    with pytest.raises(ValueError) as e:
        convert(tmp_path, sd, itos=itos)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_refuses_a_mismatching_state_dict(tmp_path):
    qrnn = fastai_state_dict()
    qrnn = {k.replace("weight_hh_l0_raw", "layers.0.linear.weight"): v for k, v in qrnn.items()}
    assert "0.rnns.0.weight_hh_l0_raw" in _refusal(tmp_path, qrnn)
    bidir = fastai_state_dict()
    bidir["0.rnns.1.module.weight_ih_l0_reverse"] = bidir["0.rnns.1.module.weight_ih_l0"]
    assert "unexpected key 0.rnns.1.module.weight_ih_l0_reverse" in _refusal(tmp_path, bidir)
    classifier = {f"0.module.{k[2:]}": v for k, v in fastai_state_dict().items() if k.startswith("0.")}
    assert "0.rnns.0.weight_hh_l0_raw" in _refusal(tmp_path, classifier)
    untied = fastai_state_dict()
    untied["1.decoder.weight"] = untied["1.decoder.weight"] + 1
    assert _refusal(tmp_path, untied).startswith("1.decoder.weight differs from 0.encoder.weight")
    missing = fastai_state_dict()
    del missing["0.rnns.2.module.bias_hh_l0"]
    assert _refusal(tmp_path, missing).startswith("0.rnns.2.module.bias_hh_l0 is missing")
    uneven = fastai_state_dict(nlayers=4)
    uneven["0.rnns.2.weight_hh_l0_raw"] = torch.zeros(4 * 20, 19)
    assert _refusal(tmp_path, uneven).startswith("0.rnns.2.weight_hh_l0_raw has shape (80, 19), expected (76, 19)")
    assert "49 rows" in _refusal(tmp_path, fastai_state_dict(), itos=ITOS[:-1])
    assert "'xxbos'" in _refusal(tmp_path, fastai_state_dict(vocab=48), itos=[t for t in ITOS if t != "xxbos"])


def test_refuses_pickled_code(tmp_path):
    sd = fastai_state_dict()
    torch.save(sd, tmp_path / "lstm.pth")
    with open(tmp_path / "itos.pkl", "wb") as f:
        pickle.dump(ITOS, f)
        f.seek(0)
        pickle.dump(__import__("collections").OrderedDict(a=1), f)
    with pytest.raises(ValueError, match=r"refers to collections\.OrderedDict"):
        import_fastai_lm(str(tmp_path / "lstm.pth"), str(tmp_path / "itos.pkl"), str(tmp_path / "out"))
    torch.save({"model": sd, "extra": __import__("argparse").ArgumentParser}, tmp_path / "lstm.pth")
    write_itos(tmp_path / "itos.pkl")
    with pytest.raises(ValueError, match="--allow-pickle"):
        import_fastai_lm(str(tmp_path / "lstm.pth"), str(tmp_path / "itos.pkl"), str(tmp_path / "out"))
