"""The criterion's logged metrics: base-2 loss, and perplexity as 2 ** loss, inf once it overflows."""
import math

from fairseq import metrics

from awd_fairseq.criterions.awd_split_cross_entropy import AWDSplitCrossEntropyCriterion


def _logged(loss_nats: float, ntokens: int):
    with metrics.aggregate() as agg:
        AWDSplitCrossEntropyCriterion.reduce_metrics([{"loss": loss_nats, "ntokens": ntokens}])
        return agg.get_smoothed_values()


def test_loss_in_bits_and_perplexity():
    values = _logged(ntokens=10, loss_nats=10 * 3.0 * math.log(2))
    assert values["loss"] == 3.0 and values["ppl"] == 8.0


def test_a_diverged_loss_logs_infinite_perplexity_instead_of_raising():
    values = _logged(ntokens=1, loss_nats=1e6)  # 2 ** 1.44e6 overflows a float
    assert math.isinf(values["ppl"])
