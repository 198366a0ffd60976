"""awd_fairseq: AWD-LSTM and QRNN language models (Merity, Keskar and Socher, arXiv 1708.02182 and
1803.08240; salesforce/awd-lstm-lm) as a fairseq plugin (`--user-dir awd_fairseq`).

Every registering module is imported here explicitly: when this package is imported before
`--user-dir` is processed (tests, scripts, a pip install), fairseq does not auto-import the
sub-packages. The one process-wide change the import makes is below, by name.
"""
from . import criterions, models, optim, tasks  # noqa: F401  (registration side effects)
from .checkpoint_compat import allow_namespace_in_checkpoints

# fairseq's loaders call torch.load with weights_only=True (torch >= 2.6): let them read the
# argparse.Namespace that fairseq's --optimizer sgd and pre-hydra checkpoints hold
allow_namespace_in_checkpoints()
