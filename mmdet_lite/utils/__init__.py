"""The ground floor: shared type aliases and module registration.

Everything in mmdet_lite may import this package, so nothing here imports the rest of
mmdet_lite at module level. The one exception, by design, is :func:`register_all_modules`,
the registration entry point: it imports every package inside the function, when called,
as mmdetection's ``mmdet.utils.register_all_modules`` does.
"""
from .dist_utils import reduce_mean
from .mmdet_alias import (MmdetAliasError, disable_mmdet_import_alias,
                          enable_mmdet_import_alias, mmdet_import_alias_enabled,
                          real_mmdet_installed)
from .setup_env import register_all_modules
from .typing_utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                           OptInstanceList, OptMultiConfig, RangeType)

__all__ = [
    'register_all_modules', 'enable_mmdet_import_alias', 'disable_mmdet_import_alias',
    'mmdet_import_alias_enabled', 'real_mmdet_installed', 'MmdetAliasError', 'ConfigType',
    'OptConfigType', 'MultiConfig', 'OptMultiConfig', 'InstanceList', 'OptInstanceList',
    'RangeType', 'reduce_mean'
]

# sliced inference on large images (demo/large_image_demo.py)
from .large_image import (LargeImageArgumentError, get_slice_bboxes,  # noqa: E402
                          merge_results_by_nms, shift_predictions)

__all__ += ['get_slice_bboxes', 'shift_predictions', 'merge_results_by_nms',
            'LargeImageArgumentError']
