from . import nt_asgd  # noqa: F401
