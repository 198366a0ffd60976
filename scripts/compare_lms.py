"""Train awd_lstm, qrnn, awd_lstm_mos, fairseq's transformer_lm and fairseq's lstm_lm on one
data-bin within the same budget each (updates, training minutes or training tokens), score them
with fairseq-eval-lm on valid and test, plain, with the cache pointer and with dynamic evaluation
(each tuned on valid), and write a Markdown table and validation plots.

    python scripts/compare_lms.py data-bin/ptb --out compare/ptb --budget-minutes 20 --cpu

Rerunning with the same --out reuses every finished step. See docs/comparison.md.
"""
import argparse
from pathlib import Path

from awd_fairseq.tools.cli import setup_logging
from awd_fairseq.tools.compare.budget import Budget
from awd_fairseq.tools.compare.pipeline import Comparison, DynevalSearch, run
from awd_fairseq.tools.compare.specs import MODELS, SIZES


def floats(text):
    return [float(x) for x in text.split(",")] if text else None


def budget(args) -> Budget:
    given = [(kind, value) for kind, value in (("updates", args.budget_updates), ("minutes", args.budget_minutes),
                                               ("tokens", args.budget_tokens)) if value is not None]
    if len(given) != 1:
        raise SystemExit("give one budget per model: --budget-minutes M, --budget-tokens N or --budget-updates N")
    return Budget(*given[0])


def main(args) -> dict:
    dyneval = None if args.no_dyneval else DynevalSearch(floats(args.dyneval_etas), floats(args.dyneval_lambdas),
                                                        args.dyneval_search_segments, args.dyneval_stats_segments)
    comparison = Comparison(
        data=args.data, out=Path(args.out), budget=budget(args), models=args.models.split(","), size=args.size,
        awd_recipe=args.awd_recipe, qrnn_recipe=args.qrnn_recipe, mos_recipe=args.mos_recipe,
        mogrifier_recipe=args.mogrifier_recipe,
        char_level=args.char_level, pointer=not args.no_pointer, pointer_window=args.pointer_window, dyneval=dyneval,
        dyneval_models=args.dyneval_models.split(",") if args.dyneval_models else None,
        calibration_updates=args.calibration_updates, cpu=args.cpu, log_interval=args.log_interval,
        valid_every_updates=args.valid_every_updates, tensorboard=args.tensorboard, progress=not args.no_progress,
    )
    result = run(comparison)
    print(result["table"] + "\n" + "\n".join(result["notes"]))
    for path in result["plots"]:
        print(f"plot: {path}")
    if result["problems"]:
        raise SystemExit("scored-token counts differ between runs: " + "; ".join(result["problems"]))
    return result


def cli_main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="fairseq-preprocess output (scripts/prepare_data.py), e.g. data-bin/ptb")
    p.add_argument("--out", required=True, help="output folder: logs, checkpoints, table.md, plots")
    p.add_argument("--budget-minutes", type=float, help="training minutes per model (validation excluded)")
    p.add_argument("--budget-tokens", type=float, help="training tokens per model")
    p.add_argument("--budget-updates", type=int, help="training updates per model")
    p.add_argument("--calibration-updates", type=int, default=30,
                   help="updates of the run that measures each model's speed (minutes and tokens budgets)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    p.add_argument("--size", default="recipe", choices=sorted(SIZES),
                   help="model sizes: recipe (the published PTB ones), small (~5M parameters), tiny (tests)")
    p.add_argument("--awd-recipe", default="ptb_awd_lstm", help="awd_fairseq/config recipe for awd_lstm")
    p.add_argument("--qrnn-recipe", default="ptb_qrnn", help="awd_fairseq/config recipe for qrnn")
    p.add_argument("--mos-recipe", default="ptb_awd_lstm_mos", help="awd_fairseq/config recipe for awd_lstm_mos")
    p.add_argument("--mogrifier-recipe", default="ptb_mogrifier", help="awd_fairseq/config recipe for mogrifier_lstm")
    p.add_argument("--char-level", action="store_true", help="character data: report bits per character")
    p.add_argument("--no-pointer", action="store_true", help="skip the cache-pointer columns")
    p.add_argument("--pointer-window", type=int, default=500, help="cache size (PTB recipe: 500; WT2: 3785)")
    p.add_argument("--no-dyneval", action="store_true", help="skip the dynamic-evaluation columns")
    p.add_argument("--dyneval-models", default="",
                   help="comma-separated models that get the dynamic-evaluation columns (default: every one that can)")
    p.add_argument("--dyneval-search-segments", type=int, default=2000,
                   help="tune dynamic evaluation on the first N segments of valid (0: all of it)")
    p.add_argument("--dyneval-etas", help="comma-separated eta grid (default: the reference's, scaled)")
    p.add_argument("--dyneval-lambdas", help="comma-separated lambda grid (default: the reference's, scaled)")
    p.add_argument("--dyneval-stats-segments", type=int, default=0,
                   help="training segments for the gradient statistics (0: the whole training split)")
    p.add_argument("--valid-every-updates", type=int, default=0, help="validate every N updates (0: every epoch)")
    p.add_argument("--log-interval", type=int, default=50, help="fairseq-train --log-interval")
    p.add_argument("--tensorboard", action="store_true", help="also write --tensorboard-logdir <out>/<model>/tensorboard")
    p.add_argument("--cpu", action="store_true", help="train and score on the CPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    setup_logging()
    main(p.parse_args())


if __name__ == "__main__":
    cli_main()
