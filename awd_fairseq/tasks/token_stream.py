"""A binarized split read as one token stream, as salesforce/awd-lstm-lm data.py `Corpus`
tokenizes a file: every line's words followed by `<eos>`, in file order, one long tensor.

fairseq-preprocess --only-source gives each line its closing `</s>`; one more `</s>` goes in
front, so that the first real token is scored too (it follows a line break, as every other
line's first token does). bptt_dataset.py lays the stream out as contiguous streams.
"""
import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, data_utils

from ..fairseq_compat import read_mmap_tokens


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
