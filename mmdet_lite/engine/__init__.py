from .hooks import *  # noqa: F401,F403
from .amp import CPUAmpOptimWrapper, enable_amp  # noqa: F401
from .checkpoint import (CorruptCheckpointError, UntrustedCheckpointError,  # noqa: F401
                         allow_unsafe_checkpoint, load_local_checkpoint)
from .log_processor import LogProcessor  # noqa: F401
