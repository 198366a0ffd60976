"""Dynamic evaluation with the fused update (modules/dynamic_eval.py) against a restatement of
benkrause/dynamic-evaluation's per-parameter update loop, on the same checkpoint and split, in
the same run: perplexity of each (they must agree to 1e-4, relative), the time spent in the
update and the whole evaluation's time, and their ratios. Takes fairseq-eval-lm's arguments:

    python scripts/bench/bench_dyneval.py data-bin/ptb --path checkpoints/ptb/checkpoint_best.pt \\
        --gen-subset valid --dyneval-bptt 5 --bench-segments 2000 --rounds 2

The two run alternately (`--rounds` times each) so that a change in the machine's load affects
both; the ratios are of the medians.
"""
import itertools
import logging
import statistics
import time

import torch

from awd_fairseq.modules.dynamic_eval import DynamicEvalUpdate
from awd_fairseq.tools import dyneval_tuning
from awd_fairseq.tools.cli import setup_logging
from awd_fairseq.tools.eval_lm_cli import eval_lm_parser, parse_eval_lm_args

logger = logging.getLogger("bench_dyneval")


class ReferenceLoopUpdate(DynamicEvalUpdate):
    """dynamiceval.py's `evaluate()` update, one parameter at a time:

        dW = lamb * decrate * (data0 - data) - lr * grad / (MS + epsilon);  data += dW

    with decrate clipped at 1 / lamb beforehand (as its numpy clip does)."""

    def configure(self, lr, lambdah, epsilon=None):
        super().configure(lr, lambdah, epsilon)
        clip = 1.0 / self.lambdah if self.lambdah > 0 else float("inf")
        self.clipped = [d.clamp(max=clip) for d in self.decrate]

    @torch.no_grad()
    def step(self, grads):
        for p, p0, ms, decrate, g in zip(self.params, self.theta0, self.ms, self.clipped, grads):
            g = torch.zeros_like(p) if g is None else g
            dW = self.lambdah * decrate * (p0 - p) - self.lr * g / (ms + self.epsilon)
            p += dW


class Timed:
    """Wraps an update's step() and adds up the seconds spent in it."""

    def __init__(self, update, cuda):
        self.update, self.cuda, self.seconds = update, cuda, 0.0
        self.params = update.params

    def step(self, grads):
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        self.update.step(grads)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start

    def reset(self):
        self.update.reset()


def run(task, model, split, update, segments, cuda):
    from fairseq_cli.eval_lm import eval_lm

    model.update = update
    # configures `update`, weights back to theta_0; no loader worker (a run cut short would leave it alive)
    batches = task.eval_lm_dataloader(task.dataset(split), num_workers=0)
    timed = Timed(update, cuda)
    model.update = timed
    if segments > 0:
        batches = itertools.islice(batches, segments)
    start = time.perf_counter()
    ppl = eval_lm([model], task.source_dictionary, batches)["perplexity"]
    return ppl, timed.seconds, time.perf_counter() - start


def main(args):
    task, model = dyneval_tuning.load_args(args)
    cuda = next(model.parameters()).is_cuda
    split = args.gen_subset
    task.load_dataset(split)
    task.start_stream(model)  # gradient statistics, theta_0
    fused = model.update
    params, ms = fused.params, fused.ms
    loop = ReferenceLoopUpdate(params, ms, fused.lr, fused.lambdah, fused.epsilon)
    results = {"fused": [], "loop": []}
    for _ in range(args.rounds):
        for name, update in (("fused", fused), ("loop", loop)):
            results[name].append(run(task, model, split, update, args.bench_segments, cuda))
            logger.info("%s: ppl %.6f, update %.2fs, evaluation %.2fs", name, *results[name][-1])
    fused.reset()
    ppl = {k: v[0][0] for k, v in results.items()}
    upd = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    total = {k: statistics.median(r[2] for r in v) for k, v in results.items()}
    rel = abs(ppl["fused"] - ppl["loop"]) / ppl["loop"]
    print(f"{split}, {args.bench_segments or 'all'} segments of {task.cfg.dyneval_bptt}, {sum(p.numel() for p in params):,} "
          f"parameters in {len(params)} tensors, {'cuda' if cuda else 'cpu'}, {torch.get_num_threads()} threads")
    print(f"perplexity fused {ppl['fused']:.6f} loop {ppl['loop']:.6f} (relative difference {rel:.1e})")
    print(f"update time   fused {upd['fused']:.2f}s loop {upd['loop']:.2f}s -> {upd['loop'] / upd['fused']:.2f}x")
    print(f"evaluation    fused {total['fused']:.2f}s loop {total['loop']:.2f}s -> {total['loop'] / total['fused']:.2f}x")
    if rel > 1e-4:
        raise SystemExit(f"the two updates disagree: relative perplexity difference {rel:.1e} > 1e-4")
    return ppl, upd, total


def cli_main():
    parser = eval_lm_parser(__doc__.splitlines()[0], default_task="awd_dynamic_eval")
    parser.add_argument("--bench-segments", type=int, default=0, help="segments of the split to run (0: all)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each update, alternating")
    setup_logging()
    main(parse_eval_lm_args(parser))


if __name__ == "__main__":
    cli_main()
