"""Does a checkpoint fit a model? One key comparison for ``init_detector`` and ``tools/test.py``.

mmengine's Runner loads ``load_from`` with ``strict=False``: keys the checkpoint lacks and
tensors of another shape are skipped with a log warning, and the model runs on with those
weights as initialised (random). Testing Mask R-CNN weights in a RetinaNet config then
"works" and reports mAP 0. :func:`weights_fit` lists what does not match and
:func:`check_weights_fit` turns that into one ``ValueError``.

It needs no datasets, models or evaluation.
"""
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

from mmengine.hooks import Hook

from mmdet_lite.registry import HOOKS

# Buffers a checkpoint may lack without changing the model's outputs: BatchNorm's counter
# (absent from checkpoints of old torch versions) only matters with momentum=None.
HARMLESS_MISSING_SUFFIXES = ('num_batches_tracked', )
MAX_LISTED = 5


class WeightsFit(NamedTuple):
    """Keys of a model's state dict that a checkpoint does not match."""
    missing: List[str]  # in the model, not in the checkpoint
    unexpected: List[str]  # in the checkpoint, not in the model
    wrong_shape: List[str]  # 'key: checkpoint (shape), model (shape)'
    num_model_keys: int

    def problems(self, allow_unexpected: bool = False) -> List[str]:
        """``'missing keys (N): a, b ...'``-style descriptions, first few keys of each."""
        groups = [('missing keys', self.missing)]
        if not allow_unexpected:
            groups.append(('unexpected keys', self.unexpected))
        groups.append(('shape mismatches', self.wrong_shape))
        found = []
        for what, keys in groups:
            if keys:
                more = ' ...' if len(keys) > MAX_LISTED else ''
                found.append(f'{what} ({len(keys)}): {", ".join(keys[:MAX_LISTED])}{more}')
        return found


def strip_module_prefix(state_dict: Mapping) -> Dict:
    """Drop the ``module.`` prefix of weights saved from a DDP-wrapped model (as mmengine's
    ``load_checkpoint`` does with its default ``revise_keys``)."""
    if not any(str(key).startswith('module.') for key in state_dict):
        return dict(state_dict)
    return {key[len('module.'):] if key.startswith('module.') else key: value
            for key, value in state_dict.items()}


def _shape(value) -> Optional[tuple]:
    shape = getattr(value, 'shape', None)
    return None if shape is None else tuple(shape)


def weights_fit(model_state: Mapping, checkpoint_state: Mapping,
                ignore_missing: Sequence[str] = ()) -> WeightsFit:
    """Compare a model's ``state_dict()`` with a checkpoint's.

    Args:
        model_state (Mapping): ``model.state_dict()``.
        checkpoint_state (Mapping): The checkpoint's state dict (``module.`` prefixes are
            stripped here).
        ignore_missing (Sequence[str]): Key suffixes not reported when missing, e.g.
            :data:`HARMLESS_MISSING_SUFFIXES`.

    Returns:
        WeightsFit: Missing, unexpected and mis-shaped keys, in the model's key order.
    """
    checkpoint_state = strip_module_prefix(checkpoint_state)
    missing = [key for key in model_state if key not in checkpoint_state
               and not any(key.endswith(suffix) for suffix in ignore_missing)]
    unexpected = [key for key in checkpoint_state if key not in model_state]
    wrong_shape = []
    for key, own in model_state.items():
        if key in checkpoint_state:
            theirs, mine = _shape(checkpoint_state[key]), _shape(own)
            if theirs != mine:
                wrong_shape.append(f'{key}: checkpoint {theirs}, model {mine}')
    return WeightsFit(missing, unexpected, wrong_shape, len(model_state))


def check_weights_fit(model_state: Mapping, checkpoint_state: Mapping, checkpoint: str,
                      allow_unexpected: bool = False, ignore_missing: Sequence[str] = (),
                      hint: str = '') -> WeightsFit:
    """Raise ``ValueError`` unless ``checkpoint_state`` fits ``model_state``.

    Args:
        model_state, checkpoint_state (Mapping): As for :func:`weights_fit`.
        checkpoint (str): The checkpoint's file name, for the message.
        allow_unexpected (bool): Accept keys the model does not have (they are not used,
            so they cannot change its outputs: e.g. Mask R-CNN weights in Faster R-CNN).
        ignore_missing (Sequence[str]): Key suffixes that may be missing.
        hint (str): Appended to the message, e.g. how to load anyway.

    Returns:
        WeightsFit: The comparison, when it passes.

    Raises:
        ValueError: Some key is missing or has another shape (or is unexpected, unless
            ``allow_unexpected``); lists the first few of each kind.
    """
    fit = weights_fit(model_state, checkpoint_state, ignore_missing)
    problems = fit.problems(allow_unexpected)
    if problems:
        message = (f'checkpoint {checkpoint} does not fit the model built from the config; '
                   f'{"; ".join(problems)}')
        raise ValueError(f'{message}; {hint}' if hint else message)
    return fit


@HOOKS.register_module()
class WeightsFitCheckHook(Hook):
    """Refuse a loaded checkpoint that does not fit the model (``tools/test.py``).

    mmengine's ``Runner.load_checkpoint`` (called by ``load_or_resume`` with
    ``strict=False``) calls ``after_load_checkpoint`` with the checkpoint before it copies
    the weights into the model. This hook compares the keys there and raises
    ``ValueError`` when any model key is missing (BatchNorm's ``num_batches_tracked``
    aside) or has another shape. Keys only the checkpoint has are accepted: the model never
    uses them (e.g. Mask R-CNN weights in a Faster R-CNN config), and mmengine logs them.

    Args:
        checkpoint (str): The file's name, for the message. Defaults to
            ``'the checkpoint'``.
        hint (str): Appended to the error message, e.g. how to load anyway.
    """

    priority = 'LOWEST'  # after hooks that rewrite the checkpoint (EMAHook)

    def __init__(self, checkpoint: str = 'the checkpoint', hint: str = '') -> None:
        self.checkpoint = checkpoint
        self.hint = hint

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.model import BaseTTAModel, is_model_wrapper
        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint,
                                                                       dict) else None
        if not isinstance(state, Mapping):
            raise ValueError(f'checkpoint {self.checkpoint} holds no state dict (expected a dict of '
                             "tensors or a dict with a 'state_dict' key)")
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if isinstance(model, BaseTTAModel):
            # mmengine loads the checkpoint into the detector a TTA model wraps (--tta)
            model = model.module
        check_weights_fit(model.state_dict(), state, self.checkpoint, allow_unexpected=True,
                          ignore_missing=HARMLESS_MISSING_SUFFIXES, hint=self.hint)
