"""Reproduce one of the original README's experiments end to end: train, fine-tune, the cache
pointer and dynamic evaluation with the published settings, each scored on valid and test and
printed beside the published figures, then a table. Rerunning the command resumes a run killed
at any point (finished steps are skipped, a killed training continues from its checkpoint_last.pt).

    python scripts/reproduce.py ptb_awd_lstm data-bin/ptb --save-dir runs/ptb_awd_lstm
    python scripts/reproduce.py ptb_awd_lstm data-bin/ptb --save-dir runs/smoke --max-epoch-scale 0.01 \\
        --override common.cpu=true --scoring-flag=--cpu                          # a shortened schedule
"""
import argparse
import json
import logging

from awd_fairseq.tools import reproduce
from awd_fairseq.tools.cli import setup_logging
from awd_fairseq.tools.recipes import RECIPES

logger = logging.getLogger("scripts.reproduce")


def main(args) -> None:
    recipe = RECIPES[args.recipe]
    stages = args.stages.split(",") if args.stages else None
    results = reproduce.run(recipe, args.data, args.save_dir, overrides=args.override,
                            epoch_scale=args.max_epoch_scale, stages=stages, scoring=args.scoring_flag)
    print(reproduce.table(recipe, results, reproduce.is_char_level(recipe)))
    (args.save_dir / "results.json").write_text(json.dumps(reproduce.as_dicts(results), indent=1))


def cli_main() -> None:
    from pathlib import Path

    setup_logging()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", choices=sorted(RECIPES), help="the experiment (docs/recipes.md)")
    p.add_argument("data", help="its fairseq-preprocess output, e.g. data-bin/ptb (scripts/prepare_data.py)")
    p.add_argument("--save-dir", type=Path, required=True, help="checkpoints, logs and results.json of the run")
    p.add_argument("--max-epoch-scale", type=float, default=1.0,
                   help="run this fraction of the schedule (epochs and --when milestones, each at least 1)")
    p.add_argument("--stages", default="", help="stop after the last of these (train,finetune,pointer,dyneval)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="hydra override for the training stages, e.g. --override common.cpu=true (repeatable)")
    p.add_argument("--scoring-flag", action="append", default=[], metavar="FLAG",
                   help="extra fairseq-eval-lm flag for every scoring step, e.g. --scoring-flag=--cpu (repeatable)")
    main(p.parse_args())


if __name__ == "__main__":
    cli_main()
