from . import awd_when, nt_asgd  # noqa: F401  (registration side effects)
