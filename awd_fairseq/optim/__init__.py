from . import awd_adam, awd_when, nt_asgd  # noqa: F401  (registration side effects)
from . import averaged_adam  # noqa: F401  (registration side effects)
