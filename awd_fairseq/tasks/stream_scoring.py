"""The base of the fairseq-eval-lm tasks that score a split as ONE stream with components around
the model (the cache pointer, dynamic evaluation): the data, the checkpoint's model wrapped in a
`StreamScorer` (models/stream_scorer.py), and the windows. Its subclasses say which components
the scorer gets (`components`), how long a window is (`window_length`) and what happens before a
stream starts (`start_stream`). Not for training: fairseq-train uses awd_language_modeling.
"""
import logging
from dataclasses import dataclass, field
from typing import List, Optional

from fairseq.data import Dictionary
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask

from ..models.stream_scorer import StreamScorer
from .eval_windows import check_eval_lm_call, fixed_window_batches, scored_windows
from .token_stream import load_dictionary, load_split

logger = logging.getLogger(__name__)

@dataclass
class StreamScoringConfig(FairseqDataclass):
    data: Optional[str] = field(
        default=None, metadata={"help": "fairseq-preprocess --only-source output (dict.txt, <split>.bin/.idx)"}
    )
    stream_context: int = field(
        default=0,
        metadata={"help": "models without recurrent state (transformer_lm): tokens of the stream before each window "
                  "fed as context (the window + this must fit the model's max positions)"},
    )


class StreamScoringTask(FairseqTask):
    name = "stream scoring"  # the registered name, for messages

    def __init__(self, cfg: StreamScoringConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.scorers: List[StreamScorer] = []  # one per checkpoint in --path

    @classmethod
    def setup_task(cls, cfg: StreamScoringConfig, **kwargs):
        return cls(cfg, load_dictionary(cfg.data))

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        self.datasets[split] = load_split(self.cfg.data, split, self.dictionary, epoch)

    def max_positions(self):
        return None

    # -- what a subclass decides -----------------------------------------------------------

    def components(self) -> dict:
        """StreamScorer's keyword arguments besides the model and the context."""
        return {}

    def window_length(self) -> int:
        raise NotImplementedError

    window_flag = "--bptt"  # the option that sets window_length, for messages

    def start_stream(self, scorer: StreamScorer) -> None:
        """Before each split is scored (after the weights are loaded)."""

    # -- fairseq's hooks ---------------------------------------------------------------------

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        scorer = StreamScorer(model, context=self.cfg.stream_context, **self.components())
        if not scorer.carries_state:
            logger.info("%s: each window sees the %d tokens before it as context (--stream-context)",
                        type(model).__name__, scorer.context)
        self.scorers.append(scorer)
        return scorer

    def eval_lm_dataloader(
        self, dataset, max_tokens=None, batch_size=None, max_positions=None, num_shards=1, shard_id=0,
        num_workers=1, data_buffer_size=10, context_window=0,
    ):
        check_eval_lm_call(self.name, context_window, num_shards, batch_size, "it reads the split as one stream")
        for scorer in self.scorers:
            scorer.reset()
            self.start_stream(scorer)
        return scored_windows(fixed_window_batches(dataset.tokens, 1, self.window_length(), self.window_flag))

    def train_step(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} is for evaluation (fairseq-eval-lm): train with awd_language_modeling")

    def valid_step(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} is for evaluation (fairseq-eval-lm), not fairseq-validate")
