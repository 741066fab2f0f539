"""Check that every head's ``num_classes`` matches the dataset's class list."""
import re
from typing import Iterable, List, Mapping, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from ...registry import HOOKS

# Sub-configs that never hold a detection head (a classification backbone may have its own
# num_classes) or only hold hyper-parameters.
_SKIPPED_KEYS = ('backbone', 'data_preprocessor', 'train_cfg', 'test_cfg', 'init_cfg')


def _cfg_num_classes(cfg: object, key: str) -> Iterable[Tuple[str, int]]:
    """Yield ``(config key, num_classes)`` for every ``num_classes`` in a model config."""
    if isinstance(cfg, Mapping):
        if isinstance(cfg.get('num_classes'), int):
            yield key, cfg['num_classes']
        for name, value in cfg.items():
            if name not in _SKIPPED_KEYS:
                yield from _cfg_num_classes(value, f'{key}.{name}')
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            yield from _cfg_num_classes(value, f'{key}[{i}]')


def _module_num_classes(model: nn.Module) -> Iterable[Tuple[str, int]]:
    """Yield ``(config key, num_classes)`` for every built submodule with ``num_classes``."""
    for name, module in model.named_modules():
        if not name or name.split('.')[0] in _SKIPPED_KEYS:
            continue
        if isinstance(getattr(module, 'num_classes', None), int):
            # 'roi_head.bbox_head.0' (a ModuleList item) is 'roi_head.bbox_head[0]' in configs
            yield 'model.' + re.sub(r'\.(\d+)(?=\.|$)', r'[\1]', name), module.num_classes


def _check(entries: Iterable[Tuple[str, int]], classes: Optional[Tuple[str, ...]],
           dataset_name: str) -> None:
    if classes is None:
        print_log(f"{dataset_name} has no metainfo['classes']; cannot check num_classes of "
                  'the heads', logger='current', level=30)
        return
    if isinstance(classes, str):
        raise TypeError(f"metainfo['classes'] of {dataset_name} must be a tuple of names, got "
                        f'the str {classes!r}; for one class write ({classes!r},)')
    mismatches: List[str] = []
    for key, num_classes in entries:
        if key.endswith('rpn_head') and num_classes == 1:
            continue  # the RPN is class-agnostic: object vs. background
        if num_classes != len(classes):
            mismatches.append(f'{key}.num_classes={num_classes}')
    if mismatches:
        raise ValueError(
            f"{dataset_name} has {len(classes)} classes (metainfo['classes']={tuple(classes)})"
            f" but the model has {', '.join(mismatches)}. Set "
            f"{' and '.join(m.split('=')[0] for m in mismatches)} to {len(classes)} in the "
            'config: num_classes counts object classes only, without background.')


def check_num_classes(model_cfg: Mapping, dataset_meta: Mapping,
                      dataset_name: str = 'The dataset') -> None:
    """Check a model config against a dataset's class list before anything is built.

    Every ``num_classes`` in ``model_cfg`` (``bbox_head``, ``roi_head.bbox_head``,
    ``roi_head.mask_head`` ...; the backbone is not searched) must equal
    ``len(dataset_meta['classes'])``; an RPN head with ``num_classes=1`` is class-agnostic
    and skipped.

    Args:
        model_cfg (Mapping): The ``model`` config dict.
        dataset_meta (Mapping): Dataset metainfo with ``classes``.
        dataset_name (str): Name used in the error message.

    Raises:
        ValueError: A head's num_classes differs; the message names both numbers and the
            config keys to change, e.g. ``model.roi_head.bbox_head.num_classes``.
    """
    _check(_cfg_num_classes(model_cfg, 'model'), dataset_meta.get('classes'), dataset_name)


@HOOKS.register_module()
class NumClassCheckHook(Hook):
    """Fail early when a head's ``num_classes`` does not match ``dataset.metainfo['classes']``.

    Runs before each train and val epoch on the built model (see :func:`check_num_classes`
    for the rules) and raises ``ValueError`` naming both numbers and the config keys.
    """

    def _check_model(self, runner, dataset) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        _check(_module_num_classes(model), dataset.metainfo.get('classes'),
               type(dataset).__name__)

    def before_train_epoch(self, runner) -> None:
        """Check the model against the training dataset."""
        self._check_model(runner, runner.train_dataloader.dataset)

    def before_val_epoch(self, runner) -> None:
        """Check the model against the validation dataset."""
        self._check_model(runner, runner.val_dataloader.dataset)
