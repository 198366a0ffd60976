"""awd_fairseq: AWD-LSTM and QRNN language models (Merity, Keskar and Socher, arXiv 1708.02182 and
1803.08240; salesforce/awd-lstm-lm) as a fairseq plugin (`--user-dir awd_fairseq`).

Every registering module is imported here explicitly: when this package is imported before
`--user-dir` is processed (tests, scripts, a pip install), fairseq does not auto-import the
sub-packages.
"""
from . import checkpoint_compat  # noqa: F401  (torch may load checkpoints holding argparse.Namespace)
from . import criterions, models, optim, tasks  # noqa: F401  (registration side effects)
