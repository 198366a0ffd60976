from . import awd_split_cross_entropy  # noqa: F401
