"""Generation and sentence scoring for `awd_language_modeling` (fairseq-interactive, the hub
interface's `sample()` / `score()`), mixed into the task class; and `sample_tokens`, the original
generate.py's word-by-word sampler on fairseq's incremental state (scripts/generate.py).

A sentence `w_1 .. w_n` (as `Dictionary.encode_line` gives it, `</s>` last) becomes

    source  </s> w_1 ... w_n          the leading </s> is the context every line starts from,
    target  w_1  ... w_n  </s>        as each line of a split follows a </s> in the stream

so `score()` returns n + 1 log-probabilities, the closing `</s>` included, the same tokens
fairseq-eval-lm counts for that line inside a split; generation continues the prefix `w_1 .. w_n`
until the model writes `</s>` (or the length limit).

fairseq's `language_modeling` builds this dataset with `TokenBlockDataset`, whose "eos" break
mode calls `np.compat`, removed in numpy 2; `SentenceDataset` below needs neither.
"""
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils
from fairseq.sequence_scorer import SequenceScorer
from torch import Tensor

from .scoring import scores_targets, with_targets_in_input


class SentenceDataset(FairseqDataset):
    """Independent sentences as (source, target) pairs, padded on the right when batched."""

    def __init__(self, sentences: Sequence[Tensor], eos: int, pad: int):
        super().__init__()
        self.eos, self.pad = eos, pad
        self.sentences = [s[:-1] if s.numel() and s[-1] == eos else s for s in sentences]
        self.sizes = np.array([s.numel() + 1 for s in self.sentences], dtype=np.int64)

    def __getitem__(self, index: int):
        words = self.sentences[index].long()
        eos = words.new_full((1,), self.eos)
        return {"id": index, "source": torch.cat([eos, words]), "target": torch.cat([words, eos])}

    def __len__(self) -> int:
        return len(self.sentences)

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def num_tokens_vec(self, indices):
        return self.sizes[indices]

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    def ordered_indices(self):
        return np.argsort(self.sizes, kind="mergesort")  # similar lengths share a batch

    def collater(self, items: List[dict]):
        if not items:
            return {}
        src = data_utils.collate_tokens([it["source"] for it in items], self.pad)  # (B, T)
        return {
            "id": torch.tensor([it["id"] for it in items]),
            "nsentences": len(items),
            "ntokens": sum(it["target"].numel() for it in items),
            "net_input": {"src_tokens": src, "src_lengths": torch.tensor([it["source"].numel() for it in items])},
            "target": data_utils.collate_tokens([it["target"] for it in items], self.pad),  # (B, T)
        }


class LMInferenceMixin:
    """`build_dataset_for_inference` / `inference_step` for a task with `source_dictionary`."""

    def build_dataset_for_inference(self, src_tokens, src_lengths, **kwargs):
        if kwargs.get("constraints") is not None:
            raise NotImplementedError("constrained decoding is not supported for language models")
        return SentenceDataset(src_tokens, eos=self.source_dictionary.eos(), pad=self.source_dictionary.pad())

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        if constraints is not None:
            raise NotImplementedError("constrained decoding is not supported for language models")
        eos = self.source_dictionary.eos()
        if isinstance(generator, SequenceScorer) and scores_targets(models):  # hub score(): targets only
            with_targets_in_input(sample)
        with torch.no_grad():
            src = sample["net_input"]["src_tokens"]  # (B, T), every row starts with </s>
            if prefix_tokens is None and src.size(1) > 1:
                # SequenceGenerator starts from `bos_token` and forces these, one step each
                prefix_tokens = src[:, 1:]
            return generator.generate(models, sample, prefix_tokens=prefix_tokens, bos_token=eos)


@torch.no_grad()
def sample_tokens(
    model,
    num_tokens: int,
    temperature: float = 1.0,
    prime: Optional[Tensor] = None,
    start: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> Iterator[int]:
    """Yield `num_tokens` token ids sampled one step at a time with the decoder's incremental state.

    Like awd-lstm-lm generate.py, the stream does not stop at `</s>`: it is a word like any other.
    The original computes `exp(logits / temperature)`, which overflows to inf (and multinomial then
    fails) at low temperature; here the distribution is `softmax(log_probs / temperature)`, which
    subtracts the maximum first, and `temperature == 0` is the greedy limit (argmax).

    Args:
        model: a fairseq language model whose decoder keeps its recurrent state in
            `incremental_state` and then reads only the newest token (as RecurrentLMDecoder does),
            so each step costs one token whatever the length of the stream.
        prime: (T,) tokens to read first (the context); defaults to `[start]`.
        start: the first input token when there is no `prime` (the dictionary's `</s>` if None).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    model.eval()
    device = next(model.parameters()).device
    if prime is None or prime.numel() == 0:
        prime = torch.tensor([model.decoder.dictionary.eos() if start is None else start])
    tokens = prime.view(1, -1).long().to(device)  # (1, T): the context, read in one call
    incremental_state = {}
    for _ in range(num_tokens):
        net_output = model.decoder(tokens, incremental_state=incremental_state)
        lprobs = model.get_normalized_probs(net_output, log_probs=True)[0, -1].float()  # (V,)
        if temperature == 0:
            token = int(lprobs.argmax())
        else:
            probs = torch.softmax(lprobs / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        yield token
        tokens = torch.tensor([[token]], device=device)  # the state holds the rest
