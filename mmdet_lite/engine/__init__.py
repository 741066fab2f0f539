from .hooks import *  # noqa: F401,F403
from .amp import CPUAmpOptimWrapper, enable_amp  # noqa: F401
from .checkpoint import (CorruptCheckpointError, UntrustedCheckpointError,  # noqa: F401
                         allow_unsafe_checkpoint, load_local_checkpoint)
from .log_processor import LogProcessor  # noqa: F401
from .runner import EpochBasedTrainLoop, IterBasedTrainLoop  # noqa: F401
from .optim_wrappers import (AmpOptimWrapper, NonFiniteGuardMixin,  # noqa: F401
                             OptimWrapper)
from .reset_optimizer import ResetOptimizerRunner, fast_forward_param_schedulers  # noqa: F401

# Parameter schedulers (mmdetection's QuadraticWarmup*).
from .schedulers import *  # noqa: F401,F403,E402
