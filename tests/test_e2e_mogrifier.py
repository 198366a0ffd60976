"""The Mogrifier LSTM (mogrifier_lstm, mogrifier_lstm_mos) with averaged_adam end to end on the tiny
corpus: fairseq-train (the averaging switched on by lamb's trigger mid-run), fairseq-eval-lm's
stream task, the cache pointer and dynamic evaluation, a resumed run, and hub scoring and
generation, each against an independent reference: the validation fairseq-train logged, one
forward pass over the whole split with the loss or the pointer formula written out in the test,
plain evaluation (zero dynamic-evaluation rates), an uninterrupted run."""
import math

import pytest
import torch

from helpers import eval_lm_loss, run_fairseq, train_args, valid_losses
from test_e2e_pointer import formula_loss

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# small sizes, every Mogrifier option on: 5 rounds of rank 4, state dropout, dropped carried state,
# lamb's per-element dropouts and summed layer outputs (the architecture's defaults)
MOGRIFIER = ["--arch", "mogrifier_lstm", "--emsize", "32", "--nhid", "32", "--nlayers", "2",
             "--mogrifier-rounds", "5", "--mogrifier-rank", "4", "--drop-state-probability", "0.1"]
MOGRIFIER_MOS = ["--arch", "mogrifier_lstm_mos", "--emsize", "16", "--nhid", "24", "--nhidlast", "24",
                 "--n-experts", "2", "--mogrifier-rounds", "2", "--mogrifier-rank", "3"]
POINTER_WINDOW, POINTER_THETA, POINTER_LAMBDA = 40, 0.5, 0.2


def mogrifier_args(data, save, *extra, model=MOGRIFIER):
    """train_args with the Mogrifier and lamb's optimizer (beta1 0) in place of awd_lstm and NT-ASGD."""
    args = train_args(data, save, *extra)
    for flag, value in (("--optimizer", "averaged_adam"), ("--lr", "0.01")):
        args[args.index(flag) + 1] = value
    start = args.index("--arch")
    args[start : start + 8] = model  # "--arch awd_lstm" and TINY_MODEL's six
    return [*args, "--lr-scheduler", "awd_when"]


def _out(proc):
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trained(tiny_bin, tmp_path_factory):
    """30 updates validated every 10; averaging from the 2nd validation on (--trigger-averaging-at-the-latest)."""
    save = tmp_path_factory.mktemp("mogrifier")
    proc = run_fairseq("train", mogrifier_args(
        tiny_bin, save, "--max-update", "30", "--validate-interval-updates", "10", "--eval-batch-size", "10",
        "--trigger-averaging-at-the-latest", "2"))
    return save / "checkpoint_last.pt", _out(proc)


def load(ckpt, data):
    from fairseq import checkpoint_utils

    from awd_fairseq.tasks.token_stream import read_stream

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"data": str(data)})
    return models[0].eval(), read_stream(str(data / "test"), task.source_dictionary)


@pytest.fixture(scope="module")
def reference(trained, tiny_bin):
    """The whole test stream in one forward pass: h (the summed layer outputs), targets, log p."""
    model, tokens = load(trained[0], tiny_bin)
    with torch.no_grad():
        log_probs, extra = model(tokens[:-1].unsqueeze(0))  # (1, N, V)
    return extra["raw_output"][0], tokens[1:], log_probs[0]


def eval_lm(data, ckpt, task, *extra, subset="test"):
    proc = run_fairseq("eval_lm", [data, "--task", task, "--path", ckpt, "--gen-subset", subset,
                                   "--no-progress-bar", *extra])
    return _out(proc)


def test_trains_averages_and_eval_lm_equals_the_validation(trained, tiny_bin):
    ckpt, log = trained
    losses = valid_losses(log)
    assert len(losses) == 3
    assert log.count("averaged_adam: averaging the weights from the next update on") == 1
    assert losses[-1] < losses[0] - 0.5  # it learns
    state = torch.load(ckpt, weights_only=True)
    assert state["model"]["decoder.layers.0.factors.9"].shape == (4, 32)
    # checkpoint_last holds the averaged weights the last validation saw
    out = eval_lm(tiny_bin, ckpt, "awd_language_modeling", "--test-batch-size", "10", subset="valid")
    assert abs(eval_lm_loss(out) - losses[-1]) < 1e-3


def test_eval_lm_equals_one_forward_pass_over_the_split(trained, tiny_bin, reference):
    _, targets, log_probs = reference
    expected = -log_probs.gather(1, targets.unsqueeze(1)).mean().item() / math.log(2)
    for bptt in ("70", "7"):  # windows of any length, the state carried between them
        assert eval_lm_loss(eval_lm(tiny_bin, trained[0], "awd_language_modeling", "--bptt", bptt)) == pytest.approx(
            expected, abs=2e-4)


def test_cache_pointer_equals_the_formula(trained, tiny_bin, reference):
    expected = formula_loss(*reference, POINTER_WINDOW, POINTER_THETA, POINTER_LAMBDA)
    plain = -reference[2].gather(1, reference[1].unsqueeze(1)).mean().item()
    assert expected < plain - 0.05  # the cache helps this model: the check below is not vacuous
    out = eval_lm(tiny_bin, trained[0], "awd_cache_pointer", "--bptt", "20", "--pointer-window", POINTER_WINDOW,
                  "--pointer-theta", POINTER_THETA, "--pointer-lambda", POINTER_LAMBDA)
    assert eval_lm_loss(out) * math.log(2) == pytest.approx(expected, abs=2e-4)


def word_scores(out):
    """--output-word-probs: one tensor of log-probabilities per scored segment, in order."""
    import re

    lines = re.findall(r"fairseq_cli\.eval_lm(?::| \| )0 (.*)", out)
    return [torch.tensor([float(x) for x in re.findall(r"\[(-?[0-9.]+)\]", line)]) for line in lines]


def test_dynamic_evaluation_against_plain_evaluation(trained, tiny_bin):
    ckpt = trained[0]
    common = ["--output-word-probs"]
    plain = word_scores(eval_lm(tiny_bin, ckpt, "awd_language_modeling", "--bptt", "5", *common))
    still = eval_lm(tiny_bin, ckpt, "awd_dynamic_eval", "--dyneval-bptt", "5", "--dyneval-lr", "0",
                    "--dyneval-lambda", "0", *common)
    assert len(word_scores(still)) == len(plain) > 50
    torch.testing.assert_close(torch.cat(word_scores(still)), torch.cat(plain), rtol=0, atol=2e-6)
    adapted_out = eval_lm(tiny_bin, ckpt, "awd_dynamic_eval", "--dyneval-bptt", "5", *common)
    adapted = word_scores(adapted_out)
    torch.testing.assert_close(adapted[0], plain[0], rtol=0, atol=2e-6)  # before any update
    assert (adapted[1] - plain[1]).abs().max() > 1e-4  # updated after the first segment
    plain_loss = -torch.cat(plain).mean().item() / math.log(2)
    assert eval_lm_loss(adapted_out) < plain_loss - 0.02


@pytest.mark.parametrize("step", ["script", "eager"])
def test_resumed_run_equals_the_uninterrupted_one(tiny_bin, tmp_path, step):
    """6 updates, validated every 2, averaging from the first validation on; stopped at 3 and
    resumed: the weights, the average and Adam's moments equal those of one run, bit for bit
    (TorchScript's optimised graph, which a restarted process reaches later, would round otherwise)."""
    common = ["--validate-interval-updates", "2", "--save-interval-updates", "3", "--eval-batch-size", "10",
              "--trigger-averaging-at-the-latest", "1", "--mogrifier-step", step]
    whole = _out(run_fairseq("train", mogrifier_args(tiny_bin, tmp_path / "whole", *common, "--max-update", "6")))
    run_fairseq("train", mogrifier_args(tiny_bin, tmp_path / "split", *common, "--max-update", "3"))
    first = torch.load(tmp_path / "split" / "checkpoint_last.pt", weights_only=True)
    assert first["extra_state"]["train_iterator"]["iterations_in_epoch"] == 3
    resumed = _out(run_fairseq("train", mogrifier_args(tiny_bin, tmp_path / "split", *common, "--max-update", "6")))
    assert "no recurrent state saved" not in resumed
    assert valid_losses(resumed)[-1] == valid_losses(whole)[-1]
    a = torch.load(tmp_path / "whole" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint_last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["last_optimizer_state"]["state"], b["last_optimizer_state"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].keys() == sb[k].keys()
        for name in sa[k]:
            va, vb = sa[k][name], sb[k][name]
            assert torch.equal(va, vb) if torch.is_tensor(va) else va == vb, (k, name)


def test_mixture_of_softmaxes_variant(tiny_bin, tmp_path):
    proc = run_fairseq("train", mogrifier_args(tiny_bin, tmp_path, "--max-update", "20", "--eval-batch-size", "10",
                                               model=MOGRIFIER_MOS))
    (valid,) = valid_losses(_out(proc))
    ckpt = tmp_path / "checkpoint_last.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["model"]["decoder.softmax.latent.weight"].shape == (2 * 16, 24)
    assert state["model"]["decoder.layers.1.factors.3"].shape == (3, 24)  # round 2 (x -> h) of layer 2
    out = eval_lm(tiny_bin, ckpt, "awd_language_modeling", "--test-batch-size", "10", subset="valid")
    assert abs(eval_lm_loss(out) - valid) < 1e-3


@pytest.fixture(scope="module")
def hub(trained, tiny_bin):
    from awd_fairseq.models.mogrifier_lstm import MogrifierLSTMModel

    ckpt = trained[0]
    return MogrifierLSTMModel.from_pretrained(str(ckpt.parent), checkpoint_file=ckpt.name,
                                              data_name_or_path=str(tiny_bin)).eval()


SENTENCES = ["the game was released in japan", "it is the first"]


def test_hub_score_and_generation_equal_the_full_forward(hub):
    for sentence, hypo in zip(SENTENCES, hub.score(SENTENCES)):
        words = hub.encode(sentence)  # ends with </s>
        with torch.no_grad():
            lprobs = hub.models[0](torch.cat([words.new_tensor([hub.tgt_dict.eos()]), words[:-1]]).unsqueeze(0))[0][0]
        expected = lprobs.gather(1, words.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(hypo["positional_scores"], expected, rtol=1e-5, atol=1e-5)
    prefix = hub.encode(SENTENCES[0])
    hypo = hub.generate([prefix], beam=1, max_len_b=12)[0][0]  # one token at a time, state carried
    n = prefix.numel() - 1
    assert torch.equal(hypo["tokens"][:n], prefix[:n])
    torch.testing.assert_close(hypo["positional_scores"][:n], hub.score(SENTENCES[0])["positional_scores"][:n],
                               rtol=0, atol=1e-4)
