from . import awd_lstm  # noqa: F401
from . import qrnn  # noqa: F401
from . import awd_lstm_mos  # noqa: F401
from . import mogrifier_lstm  # noqa: F401
