"""Bad input is refused with one line that names the problem and the flag or file to change, before
anything is written. Unit-level where the check is a function the tools call (model building, data
preparation), end to end through the fairseq tools where the wiring is the point."""
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary, data_utils

from awd_fairseq.tools.data.prepare import binarize, check_utf8
from awd_fairseq.models.awd_lstm import AWDLSTMModel, RecurrentLMConfig
from awd_fairseq.models.checks import check_precision
from awd_fairseq.modules.autocast import bf16_autocast
from awd_fairseq.models.qrnn import QRNNConfig, QRNNLanguageModel


def _task(words=20):
    dictionary = Dictionary()
    for i in range(words):
        dictionary.add_symbol(f"w{i}")
    return SimpleNamespace(target_dictionary=dictionary, source_dictionary=dictionary)


SMALL = dict(emsize=8, nhid=8, nlayers=2)

# -- model options ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
@pytest.mark.parametrize("name", ["dropout", "dropouth", "dropouti", "dropoute", "wdrop"])
@pytest.mark.parametrize("model, config", [(AWDLSTMModel, RecurrentLMConfig), (QRNNLanguageModel, QRNNConfig)])
def test_dropout_outside_0_1_is_refused_naming_the_flag(model, config, name, value):
    with pytest.raises(ValueError, match=rf"^--{name} {value} is outside \[0, 1\)"):
        model.build_model(config(**SMALL, **{name: value}), _task())


def test_qrnn_zoneout_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"^--zoneout 1.0 is outside \[0, 1\)"):
        QRNNLanguageModel.build_model(QRNNConfig(**SMALL, zoneout=1.0), _task())


DROPOUTS = ("dropout", "dropouth", "dropouti", "dropoute", "wdrop")


def _train_mode_outputs(model, src, seeds=(0, 1)):
    model.train()
    outputs = []
    for seed in seeds:
        torch.manual_seed(seed)
        outputs.append(model(src)[0].detach())
    return outputs


@pytest.mark.parametrize("name", DROPOUTS)
@pytest.mark.parametrize("model, config", [(AWDLSTMModel, RecurrentLMConfig), (QRNNLanguageModel, QRNNConfig)])
def test_each_dropout_inside_0_1_is_built_and_applied(model, config, name):
    """A value the checks accept reaches its dropout: with it alone at 0.5 two training-mode passes
    differ (masks drawn), with every dropout 0 training mode is evaluation mode."""
    torch.manual_seed(0)
    src = torch.randint(4, 20, (3, 7))
    off = model.build_model(config(**SMALL, **{n: 0.0 for n in DROPOUTS}), _task())
    first, second = _train_mode_outputs(off, src)
    torch.testing.assert_close(first, second)
    off.eval()
    torch.testing.assert_close(first, off(src)[0].detach())
    torch.manual_seed(0)
    on = model.build_model(config(**SMALL, **{n: 0.5 if n == name else 0.0 for n in DROPOUTS}), _task())
    first, second = _train_mode_outputs(on, src)
    assert not torch.allclose(first, second), f"--{name} 0.5 changed nothing in training mode"


def test_mixed_precision_without_cuda_names_the_flag():
    for flags, name in (((True, False, False), "--fp16"), ((False, True, False), "--bf16"), ((False, False, True), "--amp")):
        with pytest.raises(ValueError, match=rf"^{name} with --cpu: .*Drop {name} to train in fp32"):
            check_precision(*flags, cpu=True)
    check_precision(False, False, False, cpu=True)  # fp32: nothing to refuse
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^--fp16 without a CUDA device"):
            check_precision(True, False, False, cpu=False)


def test_bf16_on_a_gpu_names_the_plugins_route(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match=r"--bf16 in fairseq 0.12 means a TPU.*pass --bf16-autocast instead"):
        check_precision(False, True, False, cpu=False)
    check_precision(True, False, False, cpu=False)  # --fp16 on a GPU: fairseq's, allowed
    check_precision(False, False, True, cpu=False)  # --amp on a GPU


def test_bf16_autocast_off_a_gpu_names_the_flag():
    with pytest.raises(ValueError, match=r"^--bf16-autocast is for GPUs .*drop --bf16-autocast"):
        bf16_autocast(True, torch.device("cpu"))
    with bf16_autocast(False, torch.device("cpu")):  # off: no autocast, no check
        assert not torch.is_autocast_enabled("cpu")


# -- data preparation ------------------------------------------------------------------------


def _raw(folder, **splits):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        text = splits.get(split, "a b c\n")
        (folder / f"{split}.txt").write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return folder


def test_non_utf8_text_names_file_and_line_and_keeps_the_old_binarization(tmp_path):
    good = _raw(tmp_path / "good", train="a b\nc d\n")
    binarize(good, tmp_path / "bin")
    before = {p.name: p.read_bytes() for p in (tmp_path / "bin").iterdir()}
    bad = _raw(tmp_path / "bad", train="a b\nc d\n", valid=b"ok line\n\nsome caf\xe9 here\n")
    with pytest.raises(ValueError) as e:
        binarize(bad, tmp_path / "bin")
    message = str(e.value)
    assert "valid.txt: line 3 is not UTF-8 (byte 0xe9 at column 8" in message and "re-encode" in message
    assert {p.name: p.read_bytes() for p in (tmp_path / "bin").iterdir()} == before


def test_non_utf8_found_whatever_the_chunking(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("é\n".encode("utf-8") * 5 + b"\xff\n")  # a two-byte letter cut by small chunks
    for chunk in (1, 2, 3, 1 << 20):
        with pytest.raises(ValueError, match=r"line 6 is not UTF-8 \(byte 0xff at column 0, file offset 15\)"):
            check_utf8(path, chunk_bytes=chunk)
    path.write_bytes("é\n".encode("utf-8") * 5)
    for chunk in (1, 2, 3):
        check_utf8(path, chunk_bytes=chunk)


def test_empty_lines_keep_their_end_of_line_token(tmp_path):
    """As the original's data.py: every line, empty ones included, is `line.split() + ['<eos>']`."""
    text = "= title =\n\n a b c \n\n\nd\n"
    binarize(_raw(tmp_path / "raw", train=text), tmp_path / "bin")
    dictionary = Dictionary.load(str(tmp_path / "bin" / "dict.txt"))
    lines = data_utils.load_indexed_dataset(str(tmp_path / "bin" / "train"), dictionary)
    expected = [line.split() + ["</s>"] for line in text.split("\n")[:-1]]
    assert [[dictionary[i] for i in lines[k]] for k in range(len(lines))] == expected


# -- through the tools -------------------------------------------------------------------------


# -- the task --------------------------------------------------------------------------------


def _task_cfg(data, **overrides):
    from awd_fairseq.tasks.awd_language_modeling import AWDLanguageModelingConfig

    values = dict(data=str(data), bptt=20, seed=1, train_subset="train", batch_size=10, fp16=False, bf16=False,
                  amp=False, cpu=True)
    values.update(overrides)
    return AWDLanguageModelingConfig(**values)


def _setup(cfg):
    from awd_fairseq.tasks.awd_language_modeling import AWDLanguageModelingTask

    return AWDLanguageModelingTask.setup_task(cfg)


def test_missing_data_directory_names_dict_txt(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dict\.txt not found: is .*nowhere a fairseq-preprocess output"):
        _setup(_task_cfg(tmp_path / "nowhere"))


def test_missing_split_names_the_files(tiny_bin, tmp_path):
    task = _setup(_task_cfg(tiny_bin))
    with pytest.raises(FileNotFoundError, match=r"no binarized data at .*/dev\.bin/\.idx: run fairseq-preprocess"):
        task.load_dataset("dev")


def test_empty_split_is_refused_naming_the_file(tmp_path):
    binarize(_raw(tmp_path / "raw", valid=""), tmp_path / "bin")
    task = _setup(_task_cfg(tmp_path / "bin"))
    task.load_dataset("train")
    with pytest.raises(ValueError, match=r"^the valid split is empty \(.*/bin/valid\.bin holds no tokens\)"):
        task.load_dataset("valid")


@pytest.mark.parametrize("name, value, flag", [("bptt", 0, "--bptt 0"), ("bptt", -3, "--bptt -3"),
                                               ("eval_batch_size", 0, "--eval-batch-size 0"),
                                               ("test_batch_size", 0, "--test-batch-size 0")])
def test_window_and_stream_counts_below_one_are_refused(tiny_bin, name, value, flag):
    with pytest.raises(ValueError, match=rf"^{flag} must be at least 1"):
        _setup(_task_cfg(tiny_bin, **{name: value}))


def test_split_shorter_than_one_window_at_the_batch_size(tiny_bin):
    task = _setup(_task_cfg(tiny_bin, bptt=70, eval_batch_size=100))
    task.load_dataset("valid")
    rows = task.datasets["valid"].tokens.numel() // 100
    assert rows - 1 < 70 <= task.datasets["valid"].tokens.numel() // 10 - 1  # fits as 10 streams, not as 100
    task.cfg.eval_batch_size = 10
    task.get_batch_iterator(task.datasets["valid"], max_sentences=10).next_epoch_itr()
    task.cfg.eval_batch_size = 100
    with pytest.raises(ValueError, match=r"shorter than one window \(--bptt 70\); lower --bptt or the number of streams"):
        task.get_batch_iterator(task.datasets["valid"], max_sentences=10).next_epoch_itr()


def test_batch_size_valid_other_than_batch_size_is_refused_naming_eval_batch_size(tiny_bin):
    task = _setup(_task_cfg(tiny_bin))
    task.load_dataset("valid")
    task.get_batch_iterator(task.datasets["valid"], max_sentences=10)  # fairseq's default: = --batch-size
    with pytest.raises(ValueError, match=r"^--batch-size-valid 4 is not used .* pass --eval-batch-size 4 instead"):
        task.get_batch_iterator(task.datasets["valid"], max_sentences=4)


def test_eval_lm_batch_size_is_refused_naming_test_batch_size(tiny_bin):
    task = _setup(_task_cfg(tiny_bin))
    task.load_dataset("valid")
    with pytest.raises(ValueError, match=r"^fairseq-eval-lm's --batch-size 8 is not used .* pass --test-batch-size 8"):
        task.eval_lm_dataloader(task.datasets["valid"], batch_size=8)


@pytest.mark.parametrize("flag", ["fp16", "bf16", "amp"])
def test_mixed_precision_on_the_cpu_is_refused_before_training(tiny_bin, flag):
    task = _setup(_task_cfg(tiny_bin, **{flag: True}))
    with pytest.raises(ValueError, match=rf"^--{flag} with --cpu: "):
        task.build_criterion(SimpleNamespace(_name="awd_split_cross_entropy"))


