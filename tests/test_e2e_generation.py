"""Generation and sentence scoring end to end on checkpoints fairseq-train wrote: fairseq-interactive,
the hub interface's score() and generation, scripts/generate.py and scripts/score_sentences.py,
each against the model's full forward pass over the whole context (one call per step or sentence)."""
import math
import subprocess
import sys

import pytest
import torch
from fairseq.models import ARCH_MODEL_REGISTRY

from helpers import REPO, TINY_MOS, train_args


ARCHS = ["awd_lstm", pytest.param("qrnn", marks=pytest.mark.skipif(
    "qrnn" not in ARCH_MODEL_REGISTRY, reason="the qrnn model is not registered yet")), "awd_lstm_mos"]
ARCH_FLAGS = {"awd_lstm_mos": TINY_MOS}


@pytest.fixture(scope="module", params=ARCHS)
def checkpoint(request, tiny_bin, tmp_path_factory, fairseq_cli):
    save = tmp_path_factory.mktemp(request.param)
    args = train_args(tiny_bin, save, "--max-update", "30", "--disable-validation", *ARCH_FLAGS.get(request.param, []))
    args[args.index("--arch") + 1] = request.param
    fairseq_cli("train", args)
    ckpt = save / "checkpoint_last.pt"
    torch.load(ckpt, weights_only=True)
    return ckpt


@pytest.fixture(scope="module")
def hub(checkpoint, tiny_bin):
    from fairseq.models import MODEL_REGISTRY

    model_class = MODEL_REGISTRY[torch.load(checkpoint, weights_only=True)["cfg"]["model"]["_name"]]
    return model_class.from_pretrained(str(checkpoint.parent), checkpoint_file=checkpoint.name,
                                       data_name_or_path=str(tiny_bin)).eval()


SENTENCES = ["the game was released in japan", "", "it is the first"]


def test_hub_score_equals_full_forward(hub):
    for sentence, hypo in zip(SENTENCES, hub.score(SENTENCES)):
        words = hub.encode(sentence)  # ends with </s>
        assert torch.equal(hypo["tokens"], words)
        with torch.no_grad():
            lprobs = hub.models[0](torch.cat([words.new_tensor([hub.tgt_dict.eos()]), words[:-1]]).unsqueeze(0))[0][0]
        expected = lprobs.gather(1, words.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(hypo["positional_scores"], expected, rtol=1e-5, atol=1e-5)
        assert hypo["score"].item() == pytest.approx(expected.mean().item(), abs=1e-5)


def test_hub_generation_is_incremental_and_continues_the_prefix(hub):
    prefix = hub.encode(SENTENCES[0])
    # greedy search steps the decoder one token at a time; the forced prefix keeps its log-probs
    hypo = hub.generate([prefix], beam=1, max_len_b=12)[0][0]  # the length counts the prefix
    n = prefix.numel() - 1
    assert torch.equal(hypo["tokens"][:n], prefix[:n])
    scored = hub.score(SENTENCES[0])["positional_scores"]
    # (the generator's per-token scores are differences of float32 running sums)
    torch.testing.assert_close(hypo["positional_scores"][:n], scored[:n], rtol=0, atol=1e-4)
    torch.manual_seed(0)
    samples = hub.sample(SENTENCES, sampling=True, temperature=0.7, max_len_b=12)
    prefixes = [hub.decode(hub.encode(p)) for p in SENTENCES]  # out-of-vocabulary words read <unk>
    assert [s.startswith(p) for s, p in zip(samples, prefixes)] == [True] * 3
    assert samples[1].strip()  # from nothing: fairseq forbids </s> as the first token


def test_interactive_sampling(checkpoint, tiny_bin, tmp_path, fairseq_cli):
    (tmp_path / "in.txt").write_text("the game was\n\n", encoding="utf-8")
    proc = fairseq_cli("interactive", [
        tiny_bin, "--task", "awd_language_modeling", "--path", checkpoint, "--input", tmp_path / "in.txt",
        "--sampling", "--temperature", "0.7", "--beam", "1", "--max-len-b", "10", "--seed", "1",
    ])
    hypos = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert len(hypos) == 2 and hypos[0][2].startswith("the game was") and hypos[1][2].strip()
    assert all(math.isfinite(float(h[1])) for h in hypos)


def run_script(name, *args):
    cmd = [sys.executable, str(REPO / "scripts" / name), *map(str, args), "--cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def sample_by_full_forward(model, num_tokens, context, temperature, seed):
    """awd-lstm-lm generate.py's loop without carried state: one full forward pass over the whole
    stream per word, then one draw from softmax(log p / temperature) with a generator seeded `seed`."""
    tokens, generator = list(context), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(num_tokens):
            lprobs = model(torch.tensor([tokens]))[0][0, -1].float()  # (V,) after every token so far
            tokens.append(int(torch.multinomial(torch.softmax(lprobs / temperature, -1), 1, generator=generator)))
    return tokens[len(context):]


@pytest.mark.parametrize("temperature", [0.7, 1e-4])
def test_generate_script_equals_sampling_by_full_forward(checkpoint, tiny_bin, hub, temperature):
    prime = "the game was"
    text = run_script("generate.py", tiny_bin, "--path", checkpoint, "--words", 40, "--temperature", temperature,
                      "--seed", 5, "--prime", prime, "--outf", "-")
    d = hub.tgt_dict
    context = [d.eos(), *d.encode_line(prime, add_if_not_exist=False, append_eos=False).tolist()]
    assert d.unk() not in context
    words = sample_by_full_forward(hub.models[0], 40, context, temperature, seed=5)
    assert text == prime + " " + "".join("\n" if t == d.eos() else d[t] + " " for t in words) + "\n"


def test_score_script_equals_full_forward(checkpoint, tiny_bin, hub, tmp_path):
    (tmp_path / "s.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    lines = run_script("score_sentences.py", tiny_bin, "--path", checkpoint, "--input", tmp_path / "s.txt").splitlines()
    assert len(lines) == len(SENTENCES)
    eos = hub.tgt_dict.eos()
    for line, sentence in zip(lines, SENTENCES):
        words = hub.tgt_dict.encode_line(sentence, add_if_not_exist=False).long()  # ends with </s>
        with torch.no_grad():  # the line alone, read after a </s>, its closing </s> scored too
            lprobs = hub.models[0](torch.cat([words.new_tensor([eos]), words[:-1]]).unsqueeze(0))[0][0]
        expected = lprobs.gather(1, words.unsqueeze(1)).squeeze(1)  # (n + 1,) natural log
        ppl, tokens = line.split("\t")
        assert float(ppl) == pytest.approx(math.exp(-expected.mean().item()), abs=0.006)
        pairs = [t.rsplit("/", 1) for t in tokens.split()]
        assert [w for w, _ in pairs] == [hub.tgt_dict[t] for t in words.tolist()]
        assert [float(x) for _, x in pairs] == pytest.approx(expected.tolist(), abs=1e-4)  # printed to 4 decimals
