"""fairseq-eval-lm's command line for scripts that take its arguments (scripts/pointer_search.py,
scripts/bench/bench_pointer.py): its parser with `--task awd_cache_pointer` as the default, and the
checkpoint loading fairseq_cli/eval_lm.py does, returning the task's CachePointerLM wrappers."""
import torch


def eval_lm_parser(description: str):
    """fairseq-eval-lm's parser, the default task `awd_cache_pointer`; add a script's own flags to it."""
    from fairseq import options

    parser = options.get_eval_lm_parser(default_task="awd_cache_pointer")
    parser.description = description
    return parser


def parse_eval_lm_args(parser, argv=None):
    """fairseq's `parse_args_and_arch` (the chosen task's and model's flags added)."""
    from fairseq import options

    return options.parse_args_and_arch(parser, argv)


def load_eval_lm_models(args):
    """Load the checkpoint(s) of parsed fairseq-eval-lm arguments as fairseq-eval-lm does.
    Returns (task, models); on CUDA unless --cpu or none is available."""
    from fairseq import checkpoint_utils, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [cfg.common_eval.path], arg_overrides=eval(cfg.common_eval.model_overrides), task=task
    )
    if torch.cuda.is_available() and not cfg.common.cpu:
        models = [m.cuda() for m in models]
    return task, models
