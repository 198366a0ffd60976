from . import awd_lstm  # noqa: F401
