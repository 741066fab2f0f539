from .hooks import *  # noqa: F401,F403
from .amp import CPUAmpOptimWrapper, enable_amp  # noqa: F401
from .checkpoint import (UntrustedCheckpointError, load_local_checkpoint,  # noqa: F401
                         trust_checkpoints)
from .log_processor import LogProcessor  # noqa: F401
