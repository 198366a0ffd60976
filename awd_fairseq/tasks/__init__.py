from . import awd_language_modeling  # noqa: F401
from . import cache_pointer_lm  # noqa: F401
from . import dynamic_eval_lm  # noqa: F401
