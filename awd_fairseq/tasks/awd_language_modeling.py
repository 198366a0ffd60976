"""`awd_language_modeling`: language modelling on contiguous streams with truncated BPTT, as
salesforce/awd-lstm-lm main.py trains and evaluates (Merity et al. 2017, sec. 4.1 and 5).

The task is the list of fairseq hooks below; each job has its own home:

* a split is one token stream (token_stream.py), read as `--batch-size` contiguous streams per
  rank for training, `--eval-batch-size` (10) in all for validation (shared by the ranks, so
  the validation loss does not depend on their number) and `--test-batch-size` (1) for
  fairseq-eval-lm, like the original's batch_size / eval_batch_size / test_batch_size, and cut
  into windows (bptt_dataset.py): variable lengths in training (bptt_schedule.py), `--bptt` long
  in evaluation, the last window of a split shorter;
* the recurrent state is carried from window to window by a `StreamState`
  (modules/stream_state.py, which says who creates, carries, detaches, resets and saves it): the
  task's, per split, in fairseq-train (split_streams.py), the iterator's in fairseq-eval-lm
  (eval_windows.py);
* the learning rate of an update is scaled by seq_len / bptt (window_lr.py);
* under --amp the gradients are unscaled once, not twice as fairseq's AMPOptimizer does (optim/amp.py);
* NT-ASGD swaps the averaged weights in for validation and checkpoints (nt_asgd_hooks.py);
* a NaN / inf training loss is logged with its window and update (non_finite_loss.py);
  checkpoint copies are made atomic (atomic_checkpoints.py);
* generation and sentence scoring (fairseq-interactive, the hub interface) use lm_inference.py.
"""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.data import Dictionary
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

from ..optim.amp import unscale_once
from ..atomic_checkpoints import install as install_atomic_checkpoint_copies
from .bptt_dataset import shared_columns, window_batch_iterator
from .bptt_schedule import fixed_windows, variable_windows
from . import input_checks
from .eval_windows import check_eval_lm_call, fixed_window_batches, scored_windows
from .lm_inference import LMInferenceMixin
from .non_finite_loss import NonFiniteLossReport
from .nt_asgd_hooks import NTASGDTaskHooks
from .split_streams import SplitStreams, carries_stream_state
from .token_stream import TokenStreamDataset, load_dictionary, load_split, read_stream
from .window_lr import WindowLrScale

logger = logging.getLogger(__name__)

__all__ = ["AWDLanguageModelingConfig", "AWDLanguageModelingTask", "TokenStreamDataset", "read_stream"]


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
    # read only by input_checks.py: fairseq options this task decides instead, or refuses on the CPU
    batch_size: Optional[int] = II("dataset.batch_size")
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")
    amp: bool = II("common.amp")
    cpu: bool = II("common.cpu")


@register_task("awd_language_modeling", dataclass=AWDLanguageModelingConfig)
class AWDLanguageModelingTask(LMInferenceMixin, FairseqTask):
    def __init__(self, cfg: AWDLanguageModelingConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.streams = SplitStreams(cfg.train_subset)
        self.lr_scale = WindowLrScale(cfg.bptt)
        self.nt_asgd = NTASGDTaskHooks()
        self.non_finite = NonFiniteLossReport()
        self.models_carry_state = True  # set by build_model: False for stateless models (transformer_lm)

    @classmethod
    def setup_task(cls, cfg: AWDLanguageModelingConfig, **kwargs):
        install_atomic_checkpoint_copies()
        input_checks.check_task_config(cfg)
        return cls(cfg, load_dictionary(cfg.data))

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self.models_carry_state = carries_stream_state(model)
        if not self.models_carry_state:
            logger.warning("%s does not carry recurrent state: every window starts afresh", type(model).__name__)
        return model

    def build_criterion(self, cfg, from_checkpoint=False):
        input_checks.check_training_precision(self.cfg)  # fairseq-train only: before its Trainer
        return super().build_criterion(cfg, from_checkpoint)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        self.datasets[split] = load_split(self.cfg.data, split, self.dictionary, epoch)

    def max_positions(self):
        return None

    # -- batching: windows of contiguous streams ---------------------------------------------

    def window_iterator(self, dataset: TokenStreamDataset, streams: int, train: bool, **kwargs):
        """fairseq's EpochBatchIterator over `dataset`'s windows, `streams` columns per rank;
        `kwargs` go to bptt_dataset.window_batch_iterator (rank, world_size, seed, ...)."""
        bptt = self.cfg.bptt
        if train and not self.cfg.fixed_bptt:
            seed, max_extra = kwargs.get("seed", 1), self.cfg.bptt_max_extra

            def schedule(rows, epoch):
                return variable_windows(rows, bptt, seed, epoch, max_extra)

        else:

            def schedule(rows, epoch):
                return fixed_windows(rows, bptt)

        return window_batch_iterator(dataset.tokens, streams, bptt, schedule, **kwargs)

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
        train = dataset is self.datasets.get(self.cfg.train_subset)
        input_checks.check_valid_batch_size(self.cfg, max_sentences, train)
        if train:
            if not max_sentences:
                raise ValueError(
                    "awd_language_modeling needs --batch-size: the number of contiguous streams "
                    "(the original's --batch_size); --max-tokens is not used"
                )
            streams = max_sentences
            # which columns this process reads: checked before a checkpointed state is restored
            self.streams.set_train_layout(streams, num_shards, shard_id)
            placement = {"rank": shard_id, "world_size": num_shards}
        else:
            # the ranks share one process's --eval-batch-size columns and fairseq sums their losses:
            # validation scores the same tokens, from the same states, however many ranks there are
            streams = self.cfg.eval_batch_size
            placement = {"columns": shared_columns(streams, shard_id, num_shards)}
        return self.window_iterator(
            dataset, streams, train, seed=seed, num_workers=num_workers, epoch=epoch, buffer_size=data_buffer_size,
            **placement,
        )

    def eval_lm_dataloader(
        self, dataset, max_tokens=None, batch_size=None, max_positions=None, num_shards=1, shard_id=0,
        num_workers=1, data_buffer_size=10, context_window=0,
    ):
        check_eval_lm_call("awd_language_modeling", context_window, num_shards, batch_size,
                           f"it scores --test-batch-size streams (now {self.cfg.test_batch_size}); pass "
                           f"--test-batch-size {batch_size} instead")
        batches = fixed_window_batches(dataset.tokens, self.cfg.test_batch_size, self.cfg.bptt)
        if not self.models_carry_state:  # e.g. fairseq's transformer_lm: no state to carry
            return batches
        # the iterator owns this pass's state; the decoder scores the targets alone (tasks/scoring.py)
        return scored_windows(batches)

    # -- steps -------------------------------------------------------------------------------

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        unscale_once(optimizer)  # --amp: fairseq's AMPOptimizer unscales twice (optim/amp.py)
        self.nt_asgd.before_train_step(optimizer)
        if self.cfg.reset_state_every_window:
            result = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad, **kwargs)
        else:
            with self.streams.attached(sample, model, self.cfg.train_subset):
                result = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad, **kwargs)
        self.non_finite.after_train_step(result[0], sample, update_num)
        self.lr_scale.add(sample)
        return result

    def optimizer_step(self, optimizer, model, update_num):
        with self.lr_scale.applied(optimizer):
            super().optimizer_step(optimizer, model, update_num)

    def begin_valid_epoch(self, epoch, model):
        super().begin_valid_epoch(epoch, model)
        self.nt_asgd.begin_validation(epoch)

    def valid_step(self, sample, model, criterion):
        # fairseq-train validates every subset in its own pass; a pass starts at offset 0 (zeros)
        with self.streams.attached(sample, model, "valid"):
            return super().valid_step(sample, model, criterion)

    def post_validate(self, model, stats, agg):
        self.nt_asgd.end_validation(stats, agg)

    # -- checkpointed state: the training stream, so a mid-epoch resume carries on -----------

    def get_checkpoint_dict(self):
        saved = self.streams.checkpoint_dict()
        return {type(self).__name__: saved} if saved else {}

    def set_checkpoint_dict(self, state):
        self.streams.load_checkpoint_dict(state)
