"""`awd_language_modeling`: language modelling on contiguous streams with truncated BPTT, as
salesforce/awd-lstm-lm main.py trains and evaluates (Merity et al. 2017, sec. 4.1 and 5).

* a split is one token stream (bptt_dataset.py), read as `--batch-size` contiguous streams per
  rank for training, `--eval-batch-size` (10) for validation and `--test-batch-size` (1) for
  fairseq-eval-lm, like the original's batch_size / eval_batch_size / test_batch_size;
* training windows have variable length (bptt_schedule.py), evaluation windows are `--bptt` long;
* the recurrent state is carried from window to window by one `StreamState` per split, reset at
  offset 0 (every epoch and every validation pass start from zeros);
* the learning rate of an update is scaled by seq_len / bptt, as the original does. It is done
  at the optimizer step rather than on the loss so that it stays exact under `--clip-norm`
  (clipping a scaled gradient is not scaling a clipped one) and under weight decay.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, data_utils, iterators
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

from ..modules.stream_state import StreamState
from ..optim.nt_asgd import nt_asgd_inside
from .bptt_dataset import BPTTWindowDataset
from .bptt_schedule import fixed_windows, variable_windows
from .lm_inference import LMInferenceMixin

logger = logging.getLogger(__name__)


@dataclass
class AWDLanguageModelingConfig(FairseqDataclass):
    data: Optional[str] = field(
        default=None, metadata={"help": "fairseq-preprocess --only-source output (dict.txt, <split>.bin/.idx)"}
    )
    bptt: int = field(default=70, metadata={"help": "BPTT window length (the mean, in training)"})
    fixed_bptt: bool = field(
        default=False, metadata={"help": "train on fixed --bptt windows instead of the original's variable lengths"}
    )
    bptt_max_extra: Optional[int] = field(
        default=None,
        metadata={"help": "cap training windows at bptt + this (the original's commented-out cap used 10)"},
    )
    eval_batch_size: int = field(default=10, metadata={"help": "streams for validation during training"})
    test_batch_size: int = field(default=1, metadata={"help": "streams for fairseq-eval-lm"})
    reset_state_every_window: bool = field(
        default=False,
        metadata={"help": "ablation: start every training window from a zero state (evaluation always carries it)"},
    )
    seed: int = II("common.seed")
    train_subset: str = II("dataset.train_subset")


class TokenStreamDataset(FairseqDataset):
    """A split as one 1-D token stream: `</s>` followed by every line of the split in order."""

    def __init__(self, tokens: torch.Tensor):
        super().__init__()
        self.tokens = tokens

    def __getitem__(self, index):
        return self.tokens[index]

    def __len__(self):
        return self.tokens.numel()


def read_stream(path: str, dictionary: Dictionary) -> torch.Tensor:
    lines = data_utils.load_indexed_dataset(path, dictionary)
    if lines is None:
        raise FileNotFoundError(
            f"no binarized data at {path}.bin/.idx: run fairseq-preprocess --only-source "
            "(or scripts/prepare_data.py) and point the data argument at its --destdir"
        )
    head = torch.tensor([dictionary.eos()], dtype=torch.long)
    buffer = getattr(lines, "_bin_buffer", None)  # mmap datasets: the whole split in one read
    if buffer is not None and len(buffer):
        body = torch.from_numpy(np.frombuffer(buffer, dtype=lines._index.dtype).astype(np.int64))
    else:
        body = torch.cat([lines[i].long() for i in range(len(lines))]) if len(lines) else head[:0]
    return torch.cat([head, body])


class StatefulWindowIterator:
    """Feeds fairseq-eval-lm's scorer one window at a time with the stream state attached."""

    def __init__(self, batches, state: StreamState):
        self.batches, self.state = batches, state
        self.n = getattr(batches, "n", 0)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for sample in self.batches:
            start, end = sample["window"].tolist()
            self.state.seek(start)
            sample["net_input"]["stream_state"] = self.state
            yield sample  # the consumer runs the model here
            self.state.commit(end)


@register_task("awd_language_modeling", dataclass=AWDLanguageModelingConfig)
class AWDLanguageModelingTask(LMInferenceMixin, FairseqTask):
    def __init__(self, cfg: AWDLanguageModelingConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.streams = {}  # split -> StreamState
        self._lr_scales = []  # seq_len / bptt of the windows of the current update
        self._nt_asgd = None  # the NT-ASGD optimizer seen at the last train step (see _use_raw_weights)
        self._train_layout = None  # streams / ranks of the training iterator (see get_batch_iterator)
        self._models_carry_state = True  # set by build_model: False for stateless models (transformer_lm)

    @classmethod
    def setup_task(cls, cfg: AWDLanguageModelingConfig, **kwargs):
        if not cfg.data:
            raise ValueError("awd_language_modeling needs the data directory (fairseq-preprocess --destdir)")
        path = cfg.data.split(os.pathsep)[0]
        dict_path = os.path.join(path, "dict.txt")
        if not os.path.exists(dict_path):
            raise FileNotFoundError(f"{dict_path} not found: is {path} a fairseq-preprocess output directory?")
        dictionary = Dictionary.load(dict_path)
        logger.info("dictionary: %d types (%s)", len(dictionary), dict_path)
        return cls(cfg, dictionary)

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self._models_carry_state = getattr(model.decoder, "supports_stream_state", False)
        if not self._models_carry_state:
            logger.warning("%s does not carry recurrent state: every window starts afresh", type(model).__name__)
        return model

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        paths = self.cfg.data.split(os.pathsep)
        path = paths[(epoch - 1) % len(paths)]
        tokens = read_stream(os.path.join(path, split), self.dictionary)
        logger.info("%s %s: %d tokens (with the leading </s>)", path, split, tokens.numel())
        self.datasets[split] = TokenStreamDataset(tokens)

    # -- batching ------------------------------------------------------------------------

    def _streams_for(self, dataset, max_sentences) -> int:
        split = next((k for k, v in self.datasets.items() if v is dataset), None)
        if split == self.cfg.train_subset:
            if not max_sentences:
                raise ValueError(
                    "awd_language_modeling needs --batch-size: the number of contiguous streams "
                    "(the original's --batch_size); --max-tokens is not used"
                )
            return max_sentences
        return self.cfg.eval_batch_size

    def _window_iterator(self, dataset, streams, train, seed, num_shards, shard_id, num_workers, epoch, buffer_size):
        windows_ds = BPTTWindowDataset(dataset.tokens, streams, rank=shard_id, world_size=num_shards, bptt=self.cfg.bptt)
        if windows_ds.num_rows - 1 < self.cfg.bptt:
            raise ValueError(
                f"the split has {dataset.tokens.numel()} tokens: as {streams * num_shards} streams of "
                f"{windows_ds.num_rows} it is shorter than one window (--bptt {self.cfg.bptt}); lower "
                "--bptt or the batch size (--batch-size / --eval-batch-size / --test-batch-size)"
            )
        rows, bptt = windows_ds.num_rows, self.cfg.bptt
        if train and not self.cfg.fixed_bptt:
            max_extra = self.cfg.bptt_max_extra

            def batches(_dataset, ep):
                return [[w] for w in variable_windows(rows, bptt, seed, ep, max_extra)]

        else:
            fixed = [[w] for w in fixed_windows(rows, bptt)]

            def batches(_dataset, ep):
                return fixed

        extra = {}
        if "reuse_dataloader" in iterators.EpochBatchIterator.__init__.__code__.co_varnames:
            extra["reuse_dataloader"] = False  # a fresh loader per epoch: the windows change
        return iterators.EpochBatchIterator(
            dataset=windows_ds,
            collate_fn=windows_ds.collater,
            batch_sampler=batches,
            seed=seed,
            num_shards=1,  # each rank reads its own columns of the stream (see bptt_dataset.py)
            shard_id=0,
            num_workers=num_workers,
            epoch=epoch,
            buffer_size=buffer_size,
            disable_shuffling=True,  # windows must come in stream order
            **extra,
        )

    def get_batch_iterator(
        self, dataset, max_tokens=None, max_sentences=None, max_positions=None, ignore_invalid_inputs=False,
        required_batch_size_multiple=1, seed=1, num_shards=1, shard_id=0, num_workers=0, epoch=1,
        data_buffer_size=0, disable_iterator_cache=False, **kwargs,
    ):
        if not isinstance(dataset, TokenStreamDataset):  # sentences: generation and scoring (lm_inference.py)
            return super().get_batch_iterator(
                dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                required_batch_size_multiple, seed, num_shards, shard_id, num_workers, epoch,
                data_buffer_size, disable_iterator_cache, **kwargs,
            )
        streams = self._streams_for(dataset, max_sentences)
        train = dataset is self.datasets.get(self.cfg.train_subset)
        if train:  # which columns of the stream this process reads: checked before a state is restored
            self._train_layout = {"streams": int(streams), "world_size": int(num_shards), "rank": int(shard_id)}
        return self._window_iterator(
            dataset, streams, train, seed, num_shards, shard_id, num_workers, epoch, data_buffer_size
        )

    def eval_lm_dataloader(
        self, dataset, max_tokens=None, batch_size=None, max_positions=None, num_shards=1, shard_id=0,
        num_workers=1, data_buffer_size=10, context_window=0,
    ):
        if context_window > 0:
            raise ValueError("--context-window does not apply: awd_language_modeling carries the state instead")
        if num_shards > 1:
            raise ValueError("fairseq-eval-lm with awd_language_modeling runs on one process (the stream is sequential)")
        itr = self._window_iterator(
            dataset, self.cfg.test_batch_size, False, self.cfg.seed, 1, 0, num_workers, 1, data_buffer_size
        )
        batches = itr.next_epoch_itr(shuffle=False)
        if not self._models_carry_state:  # e.g. fairseq's transformer_lm: no state to carry
            return batches
        return StatefulWindowIterator(batches, StreamState())

    # -- steps ---------------------------------------------------------------------------

    def _stream(self, split: str) -> StreamState:
        if split not in self.streams:
            self.streams[split] = StreamState()
        return self.streams[split]

    def _attach_state(self, sample, model, split: str):
        if not getattr(model.decoder, "supports_stream_state", False) or "window" not in sample:
            return None
        state = self._stream(split)
        state.seek(int(sample["window"][0]))
        sample["net_input"]["stream_state"] = state
        return state

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        self._use_raw_weights(optimizer)
        state = None
        if not self.cfg.reset_state_every_window:
            state = self._attach_state(sample, model, self.cfg.train_subset)
        result = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad, **kwargs)
        if state is not None:
            state.commit(int(sample["window"][1]))
        self._lr_scales.append(sample.get("lr_scale", 1.0))
        return result

    def valid_step(self, sample, model, criterion):
        state = self._attach_state(sample, model, "valid")
        result = super().valid_step(sample, model, criterion)
        if state is not None:
            state.commit(int(sample["window"][1]))
        return result

    def optimizer_step(self, optimizer, model, update_num):
        scale = float(np.mean(self._lr_scales)) if self._lr_scales else 1.0
        self._lr_scales = []
        if scale == 1.0:
            return super().optimizer_step(optimizer, model, update_num)
        lr = optimizer.get_lr()
        optimizer.set_lr(lr * scale)
        try:
            super().optimizer_step(optimizer, model, update_num)
        finally:
            optimizer.set_lr(lr)

    # -- NT-ASGD (awd_fairseq/optim/nt_asgd.py): validation and the checkpoints written after it
    # -- see the averaged weights, training the raw iterate; no-ops for other optimizers

    def _use_raw_weights(self, optimizer):
        self._nt_asgd = nt_asgd_inside(optimizer)
        if self._nt_asgd is not None:
            self._nt_asgd.begin_train_step()

    def begin_valid_epoch(self, epoch, model):
        super().begin_valid_epoch(epoch, model)
        if self._nt_asgd is not None:
            self._nt_asgd.begin_validation(epoch)

    def post_validate(self, model, stats, agg):
        if self._nt_asgd is not None:
            self._nt_asgd.end_validation(stats)

    # -- checkpointed state: the training stream's state, so a mid-epoch resume carries on --
    # fairseq-train restores, together with the epoch iterator's position (and only then: not
    # under --reset-dataloader), the dict a task returns from `get_checkpoint_dict`, by handing it
    # to `set_checkpoint_dict` (fairseq's main branch, checkpoint_utils.save/load_checkpoint).
    # `task.state_dict()`, which fairseq also saves, is only read back by model loading (eval-lm),
    # so the stream stays out of it. On a fairseq without these hooks a mid-epoch resume starts
    # the state from zeros (StreamState warns).
    # Only the saving process (rank 0) calls get_checkpoint_dict, so a checkpoint holds rank 0's
    # columns: a resumed run restores them where the layout (streams, ranks, rank) is the same,
    # and the other ranks, or a run with another --batch-size, start from zeros.

    def get_checkpoint_dict(self):
        train = self.streams.get(self.cfg.train_subset)
        saved = train.state_dict() if train is not None else {}
        if not saved or self._train_layout is None:
            return {}
        # the resumed run starts at the last committed offset: the older history is not needed
        last = max(saved)
        hidden = saved[last]
        hidden = None if hidden is None else {n: t.detach().cpu() for n, t in hidden.items()}
        return {type(self).__name__: {"train_stream": {int(last): hidden}, "layout": dict(self._train_layout)}}

    def set_checkpoint_dict(self, state):
        if state.get("train_stream") is None:
            return
        layout = self._train_layout
        if state.get("layout") != layout:
            logger.warning(
                "the checkpoint's recurrent state is for stream layout %s, this process reads %s: "
                "the resumed epoch starts it from zeros", state.get("layout"), layout,
            )
            return
        self._stream(self.cfg.train_subset).load_state_dict(state["train_stream"])

    def max_positions(self):
        return None
