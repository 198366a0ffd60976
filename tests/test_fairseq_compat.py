"""awd_fairseq/fairseq_compat.py: each fairseq detail it relies on is asserted to exist on the
installed fairseq (an upgrade that changes one fails here, by name), and each fallback is checked
to give what the fairseq route gives."""
import inspect

import numpy as np
import torch
from fairseq.data import data_utils, indexed_dataset
from fairseq.data.iterators import EpochBatchIterator
from fairseq.optim import FP16Optimizer
from omegaconf import OmegaConf

from awd_fairseq import fairseq_compat
from awd_fairseq.tasks.token_stream import read_stream


def test_fairseq_still_has_what_the_compat_functions_read():
    changed = "fairseq changed what awd_fairseq/fairseq_compat.py relies on: "
    # read_mmap_tokens: the mmap index class and its dtype, the file-name helpers
    mmap = indexed_dataset.MMapIndexedDataset
    assert isinstance(getattr(mmap, "Index", None), type), changed + "MMapIndexedDataset.Index"
    assert isinstance(inspect.getattr_static(mmap.Index, "dtype", None), property), changed + "Index.dtype"
    assert callable(getattr(indexed_dataset, "index_file_path", None)), changed + "indexed_dataset.index_file_path"
    assert callable(getattr(indexed_dataset, "data_file_path", None)), changed + "indexed_dataset.data_file_path"
    # epoch_iterator_kwargs: the option we pass where it exists
    assert "reuse_dataloader" in inspect.signature(EpochBatchIterator.__init__).parameters, (
        changed + "EpochBatchIterator(reuse_dataloader=...)"
    )
    # fp16_model_sync: FP16Optimizer's private copy, and the public attributes its fallback reads
    assert callable(getattr(FP16Optimizer, "_sync_fp32_params_to_fp16", None)), (
        changed + "FP16Optimizer._sync_fp32_params_to_fp16"
    )
    assert isinstance(inspect.getattr_static(FP16Optimizer, "has_flat_params", None), property), (
        changed + "FP16Optimizer.has_flat_params"
    )


def test_whole_split_read_equals_the_lines_read_one_by_one(tiny_bin):
    path = str(tiny_bin / "train")
    lines = data_utils.load_indexed_dataset(path, None)
    assert isinstance(lines, indexed_dataset.MMapIndexedDataset)  # fairseq-preprocess's default
    whole = fairseq_compat.read_mmap_tokens(lines, path)
    by_line = np.concatenate([lines[i].numpy() for i in range(len(lines))])
    assert whole is not None and np.array_equal(whole.astype(np.int64), by_line)


def test_line_by_line_fallback_gives_the_same_stream(tiny_bin, monkeypatch):
    from fairseq.data import Dictionary

    d = Dictionary.load(str(tiny_bin / "dict.txt"))
    fast = read_stream(str(tiny_bin / "valid"), d)
    monkeypatch.setattr("awd_fairseq.tasks.token_stream.read_mmap_tokens", lambda *a: None)
    slow = read_stream(str(tiny_bin / "valid"), d)
    assert torch.equal(fast, slow) and fast[0] == d.eos()


def test_iterator_kwargs_keep_only_what_fairseq_takes():
    assert fairseq_compat.epoch_iterator_kwargs(reuse_dataloader=False, no_such_option=1) == {"reuse_dataloader": False}


def _fp16_optimizer():
    from awd_fairseq.optim.nt_asgd import FairseqNTASGD, NTASGDConfig

    torch.manual_seed(0)
    params16 = [torch.randn(3, 4).half().requires_grad_(), torch.randn(5).half().requires_grad_()]
    cfg = OmegaConf.create({
        "optimizer": {"_name": "nt_asgd"},
        "common": {"fp16_no_flatten_grads": True, "bf16": False, "fp16_scale_window": 128, "fp16_init_scale": 4,
                   "fp16_scale_tolerance": 0.0, "threshold_loss_scale": None, "min_loss_scale": 1e-4},
        "optimization": {"update_freq": [1]},
    })
    fp32 = FP16Optimizer.build_fp32_params(cfg.optimizer, params16, flatten=False)
    inner = FairseqNTASGD(NTASGDConfig(lr=[0.1], best_checkpoint_metric="loss", maximize_best_checkpoint_metric=False,
                                       disable_validation=False, save_dir=".", restore_file="checkpoint_last.pt",
                                       finetune_from_model=None), fp32)
    return FP16Optimizer(cfg, params16, inner, fp32), params16, fp32


def test_fp16_copy_fallback_equals_fairseqs_own():
    optimizer, params16, fp32 = _fp16_optimizer()
    assert fairseq_compat.fp16_model_sync(optimizer) == optimizer._sync_fp32_params_to_fp16
    for sync in (optimizer._sync_fp32_params_to_fp16, lambda: fairseq_compat._copy_fp32_to_fp16(optimizer)):
        with torch.no_grad():
            for p in fp32:
                p.add_(torch.randn_like(p))
        sync()
        assert all(torch.equal(p16.detach(), p32.detach().half()) for p16, p32 in zip(params16, fp32))
