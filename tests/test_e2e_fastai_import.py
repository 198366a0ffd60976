"""The fastai import end to end: a small fastai-layout model (random weights, a vocabulary from the
embedded WikiText-2) imported by scripts/import_fastai_lm.py, text prepared by
scripts/prepare_fastai_text.py and binarized by fairseq-preprocess --srcdict, then scored by
fairseq-eval-lm (plain, the cache pointer and dynamic evaluation turned off, forward and backward
text) and the hub against fastai's forward pass written out (tests/fastai_reference.py), and
fine-tuned by fairseq-train on a re-aligned vocabulary."""
import math
import subprocess
import sys
from collections import Counter

import pytest
import torch

from helpers import REPO, head_lines, eval_lm_loss, valid_losses
from fastai_reference import SPECIAL, FastaiForward, fastai_state_dict, write_itos

WT2 = REPO / "data" / "wikitext-2"


def run_script(name, *args):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def prepared(tmp, split, lines, *flags):
    raw = tmp / f"{split}.raw"
    raw.write_text("".join(line for line in head_lines(WT2 / f"{split}.txt.xz", lines).splitlines(True) if line.strip()),
                   encoding="utf-8")
    out = tmp / f"{split}{'-bwd' if flags else ''}.txt"
    run_script("prepare_fastai_text.py", raw, "--tokenizer", "whitespace", "--output", out, *flags)
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory, fairseq_cli):
    """(import dir, fastai state dict, itos, data-bin of valid text for it, the script's flag line)."""
    tmp = tmp_path_factory.mktemp("fastai")
    train = prepared(tmp, "train", 300)
    counts = Counter(train.read_text(encoding="utf-8").split())
    itos = SPECIAL + [w for w, _ in counts.most_common() if w not in SPECIAL][:300]
    sd = fastai_state_dict(vocab=len(itos), emsize=16, nhid=24, seed=11)
    torch.save(sd, tmp / "lstm_fwd.pth")
    write_itos(tmp / "itos.pkl", itos)
    out = run_script("import_fastai_lm.py", tmp / "lstm_fwd.pth", tmp / "itos.pkl", "--out", tmp / "model")
    checkpoint, flags = out.splitlines()
    assert checkpoint == str(tmp / "model" / "model.pt")
    valid = prepared(tmp, "valid", 40)
    backward = prepared(tmp, "valid", 40, "--backwards")
    bins = {}
    for name, text in (("fwd", valid), ("bwd", backward)):
        fairseq_cli("preprocess", ["--only-source", "--srcdict", tmp / "model" / "dict.txt", "--trainpref", train,
                                   "--validpref", text, "--destdir", tmp / f"bin-{name}", "--workers", "1"])
        bins[name] = tmp / f"bin-{name}"
    return tmp / "model", sd, itos, bins, (valid, backward), flags.split()


def fastai_ids(lines, itos):
    """fastai's stream of the prepared lines: xxbos before every document, unknown words xxunk."""
    index = {t: i for i, t in enumerate(itos)}
    return [i for line in lines for i in [index["xxbos"]] + [index.get(t, index["xxunk"]) for t in line.split()]]


def written_out_loss_base2(sd, ids):
    """Mean -log2 p of every token after the first, one pass with the state carried."""
    lprobs = FastaiForward(sd)(torch.tensor([ids[:-1]]))[0]
    return -lprobs.gather(1, torch.tensor(ids[1:])[:, None]).double().mean().item() / math.log(2)


def eval_lm(fairseq_cli, data, checkpoint, *extra):
    proc = fairseq_cli("eval_lm", [data, "--path", checkpoint, "--gen-subset", "valid", "--no-progress-bar",
                                   "--task", "awd_language_modeling", *extra], merge_output=True)
    return eval_lm_loss(proc.stdout)


def test_eval_lm_equals_written_out_forward(imported, fairseq_cli):
    model_dir, sd, itos, bins, (valid, _), _ = imported
    lines = valid.read_text(encoding="utf-8").splitlines()
    # fairseq's stream is </s> + every line + </s>: fastai's with xxbos for </s>, closed by one more
    expected = written_out_loss_base2(sd, fastai_ids(lines, itos) + [itos.index("xxbos")])
    assert eval_lm(fairseq_cli, bins["fwd"], model_dir / "model.pt") == pytest.approx(expected, abs=1e-4)


def test_eval_lm_backward_text_equals_flipped_fastai_stream(imported, fairseq_cli):
    model_dir, sd, itos, bins, (valid, backward), _ = imported
    flipped = fastai_ids(valid.read_text(encoding="utf-8").splitlines(), itos)[::-1]
    expected = written_out_loss_base2(sd, [itos.index("xxbos")] + flipped)  # fairseq's leading </s> first
    assert eval_lm(fairseq_cli, bins["bwd"], model_dir / "model.pt") == pytest.approx(expected, abs=1e-4)


def test_pointer_and_dynamic_evaluation_load_the_import(imported, fairseq_cli):
    """Switched off (lambda 0; learning rate and decay 0) both score as the plain evaluation."""
    model_dir, _, _, bins, _, _ = imported
    plain = eval_lm(fairseq_cli, bins["fwd"], model_dir / "model.pt")
    pointer = eval_lm(fairseq_cli, bins["fwd"], model_dir / "model.pt", "--task", "awd_cache_pointer",
                      "--pointer-lambda", "0", "--pointer-window", "50")
    dyneval = eval_lm(fairseq_cli, bins["fwd"], model_dir / "model.pt", "--task", "awd_dynamic_eval",
                      "--dyneval-lr", "0", "--dyneval-lambda", "0", "--dyneval-no-cache")
    assert pointer == pytest.approx(plain, abs=2e-4) and dyneval == pytest.approx(plain, abs=2e-4)


def test_hub_score_and_sample(imported):
    from fairseq.models import MODEL_REGISTRY

    model_dir, sd, itos, _, _, _ = imported
    hub = MODEL_REGISTRY["awd_lstm"].from_pretrained(str(model_dir)).eval()  # model.pt and dict.txt in DIR
    sentence = "the game was released in japan"
    hypo = hub.score(sentence)
    ids = fastai_ids([sentence], itos) + [itos.index("xxbos")]
    lprobs = FastaiForward(sd)(torch.tensor([ids[:-1]]))[0]
    expected = lprobs.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    torch.testing.assert_close(hypo["positional_scores"], expected, rtol=0, atol=1e-5)
    torch.manual_seed(0)
    text = hub.sample("the game", sampling=True, temperature=0.8, max_len_b=10)
    words = text.split()
    assert words[:2] == ["the", "game"] and len(words) > 2
    assert all(w in hub.tgt_dict.indices for w in words)


def test_finetune_on_a_realigned_vocabulary(imported, fairseq_cli, tmp_path):
    """fairseq-preprocess builds the corpus's own dict.txt; the import re-aligns the model to it
    (new words: the mean embedding and bias); fairseq-train --finetune-from-model starts from it:
    with a zero learning rate its validation equals fairseq-eval-lm's of the import, and a few
    NT-ASGD updates lower it."""
    model_dir, _, _, _, (valid, _), flags = imported
    train = prepared(tmp_path, "train", 120)
    fairseq_cli("preprocess", ["--only-source", "--trainpref", train, "--validpref", valid, "--destdir",
                               tmp_path / "bin", "--workers", "1", "--thresholdsrc", "1"])
    tmp = model_dir.parent
    run_script("import_fastai_lm.py", tmp / "lstm_fwd.pth", tmp / "itos.pkl", "--out", tmp_path / "realigned",
               "--vocab", tmp_path / "bin" / "dict.txt")
    ckpt = tmp_path / "realigned" / "model.pt"
    before = eval_lm(fairseq_cli, tmp_path / "bin", ckpt, "--test-batch-size", "10")

    def finetune(lr, updates, save):
        args = [tmp_path / "bin", "--task", "awd_language_modeling", *flags, "--criterion", "awd_split_cross_entropy",
                "--optimizer", "nt_asgd", "--lr", lr, "--clip-norm", "0.25", "--batch-size", "10", "--bptt", "20",
                "--finetune-from-model", ckpt, "--max-update", updates, "--save-dir", tmp_path / save, "--seed", "1",
                "--log-format", "simple", "--no-progress-bar", "--no-save", "--validate-interval-updates", updates]
        return valid_losses(fairseq_cli("train", args, merge_output=True).stdout)

    assert finetune("0", "1", "zero")[0] == pytest.approx(before, abs=2e-3)
    assert finetune("30", "20", "tuned")[0] < before - 0.1
