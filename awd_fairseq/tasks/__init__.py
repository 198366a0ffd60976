from . import awd_language_modeling  # noqa: F401
