"""A binarized split read as one token stream, as salesforce/awd-lstm-lm data.py `Corpus`
tokenizes a file: every line's words followed by `<eos>`, in file order, one long tensor.

fairseq-preprocess --only-source gives each line its closing `</s>`; one more `</s>` goes in
front, so that the first real token is scored too (it follows a line break, as every other
line's first token does). bptt_dataset.py lays the stream out as contiguous streams.
"""
import logging
import os

import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, data_utils

from ..fairseq_compat import read_mmap_tokens
from . import input_checks

logger = logging.getLogger(__name__)


class TokenStreamDataset(FairseqDataset):
    """A split as one 1-D token stream: `</s>` followed by every line of the split in order."""

    def __init__(self, tokens: torch.Tensor):
        super().__init__()
        self.tokens = tokens  # (len,) int64

    def __getitem__(self, index):
        return self.tokens[index]

    def __len__(self):
        return self.tokens.numel()


def read_stream(path: str, dictionary: Dictionary) -> torch.Tensor:
    """(1 + tokens of the split,) int64: `</s>`, then every line of `path`.bin/.idx in order."""
    lines = data_utils.load_indexed_dataset(path, dictionary)
    if lines is None:
        raise FileNotFoundError(
            f"no binarized data at {path}.bin/.idx: run fairseq-preprocess --only-source "
            "(or scripts/prepare_data.py) and point the data argument at its --destdir"
        )
    head = torch.tensor([dictionary.eos()], dtype=torch.long)
    whole = read_mmap_tokens(lines, path)  # the whole split in one read
    if whole is not None:
        body = torch.from_numpy(whole.astype(np.int64))
    elif len(lines):
        body = torch.cat([lines[i].long() for i in range(len(lines))])
    else:
        body = head[:0]
    return torch.cat([head, body])


def load_dictionary(data: str) -> Dictionary:
    """The dictionary of a data directory (the first of `data`'s os.pathsep-separated paths)."""
    if not data:
        raise ValueError("the task needs the data directory (fairseq-preprocess --destdir) as its first argument")
    path = data.split(os.pathsep)[0]
    dict_path = os.path.join(path, "dict.txt")
    if not os.path.exists(dict_path):
        raise FileNotFoundError(f"{dict_path} not found: is {path} a fairseq-preprocess output directory?")
    dictionary = Dictionary.load(dict_path)
    logger.info("dictionary: %d types (%s)", len(dictionary), dict_path)
    return dictionary


def load_split(data: str, split: str, dictionary: Dictionary, epoch: int = 1) -> TokenStreamDataset:
    """`split` of the data directory for `epoch` (fairseq's round-robin over os.pathsep-separated paths)."""
    paths = data.split(os.pathsep)
    path = paths[(epoch - 1) % len(paths)]
    input_checks.check_split(path, split)
    tokens = read_stream(os.path.join(path, split), dictionary)
    logger.info("%s %s: %d tokens (with the leading </s>)", path, split, tokens.numel())
    return TokenStreamDataset(tokens)
