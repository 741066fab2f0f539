"""Models: importing this package registers every model component into ``MODELS``/``TASK_UTILS``."""
import mmcv.cnn  # noqa: F401  (registers ConvModule, norm layers and mmcv plugins)

from . import (backbones, data_preprocessors, dense_heads, detectors, layers,  # noqa: F401
               losses, necks, roi_heads, task_modules)
from . import utils  # noqa: F401,E402

# Test-time augmentation (DetTTAModel, merge_aug_* helpers).
from .test_time_augs import *  # noqa: F401,F403,E402
