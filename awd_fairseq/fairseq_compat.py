"""The few places where awd_fairseq relies on fairseq details that are not a documented API, each
isolated in one function with a fallback. tests/test_fairseq_compat.py asserts that the installed
fairseq still has what each function reads, so an upgrade that changes it fails loudly there
rather than quietly taking the fallback.

* `read_mmap_tokens`: a whole binarized split in one read, from fairseq's mmap file layout;
  fallback: the caller reads the split line by line through the dataset (slower, same tokens).
* `epoch_iterator_kwargs`: `EpochBatchIterator` options that only some fairseq versions take;
  fallback: the option is left out (those versions behave as asked anyway).
* `fp16_model_sync`: FP16Optimizer's fp32 -> fp16 parameter copy (a private method); fallback:
  the same copy through its public `fp16_params` / `fp32_params` attributes.
"""
import inspect
import logging
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from fairseq.data import indexed_dataset
from fairseq.data.iterators import EpochBatchIterator

logger = logging.getLogger(__name__)


def read_mmap_tokens(dataset, path: str) -> Optional[np.ndarray]:
    """All tokens of the split at `path` (.bin/.idx), in order, if it is in fairseq's mmap format
    (fairseq-preprocess's default), else None.

    The mmap .bin file holds every line's tokens back to back in index order
    (MMapIndexedDataset's writer), so the split's stream is the file itself, read with the
    dtype that its index header names.
    """
    if not isinstance(dataset, indexed_dataset.MMapIndexedDataset):
        return None
    index = getattr(indexed_dataset.MMapIndexedDataset, "Index", None)
    if index is None:
        logger.warning("this fairseq's MMapIndexedDataset has no Index class: reading %s line by line", path)
        return None
    dtype = index(indexed_dataset.index_file_path(path)).dtype
    tokens = np.memmap(indexed_dataset.data_file_path(path), dtype=dtype, mode="r")
    expected = int(np.sum(dataset.sizes, dtype=np.int64))
    if tokens.size != expected:
        logger.warning(
            "%s holds %d tokens but its index counts %d: reading it line by line", path, tokens.size, expected
        )
        return None
    return tokens


def epoch_iterator_kwargs(**wanted: Any) -> Dict[str, Any]:
    """The subset of `wanted` keyword arguments that this fairseq's EpochBatchIterator accepts
    (`reuse_dataloader` exists on fairseq's main branch, not in every 0.12 release)."""
    accepted = inspect.signature(EpochBatchIterator.__init__).parameters
    return {name: value for name, value in wanted.items() if name in accepted}


def fp16_model_sync(optimizer) -> Callable[[], None]:
    """A callable that copies a FP16Optimizer's fp32 master parameters into the fp16 model."""
    private = getattr(optimizer, "_sync_fp32_params_to_fp16", None)
    if callable(private):
        return private
    return lambda: _copy_fp32_to_fp16(optimizer)


@torch.no_grad()
def _copy_fp32_to_fp16(optimizer) -> None:
    fp16_params, fp32_params = optimizer.fp16_params, optimizer.fp32_params
    if getattr(optimizer, "has_flat_params", False):  # {device: one flat fp32 tensor}
        for device, flat in fp32_params.items():
            offset = 0
            for p in (p for p in fp16_params if p.device.index == device):
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
    else:
        for p, p32 in zip(fp16_params, fp32_params):
            if p.requires_grad:
                p.copy_(p32)
