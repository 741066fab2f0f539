"""The COCO evaluation engine behind ``CocoMetric``: pycocotools (default) or the
``faster-coco-eval`` package (a C++ ``COCOeval`` with the same numbers, much faster on large
sets). mmdetection 3.3 has no such choice; ``CocoMetric(eval_backend=...)`` adds it."""
import contextlib
import io
from typing import List, Optional

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..functional.coco_utils import quiet_coco

EVAL_BACKENDS = ('pycocotools', 'faster-coco-eval')


class EvalBackendError(ValueError, AssertionError):
    """Unknown ``eval_backend``."""


def check_eval_backend(backend: str) -> None:
    """Raise unless ``backend`` is known and importable.

    Raises:
        EvalBackendError: ``backend`` is not one of :data:`EVAL_BACKENDS`.
        ImportError: ``'faster-coco-eval'`` is selected but not installed.
    """
    if backend not in EVAL_BACKENDS:
        raise EvalBackendError(f'CocoMetric: eval_backend must be one of {EVAL_BACKENDS}, '
                               f'got {backend!r}')
    if backend == 'faster-coco-eval':
        try:
            import faster_coco_eval  # noqa: F401
        except ImportError as err:
            raise ImportError("CocoMetric(eval_backend='faster-coco-eval') needs the "
                              'faster-coco-eval package: pip install faster-coco-eval') from err


def build_coco_eval(backend: str, coco_gt: COCO, detections: Optional[List[dict]],
                    iou_type: str):
    """A COCOeval object of ``backend`` for ground truth ``coco_gt`` and ``detections``.

    Args:
        backend (str): One of :data:`EVAL_BACKENDS`.
        coco_gt (COCO): Ground truth as a pycocotools index (its ``dataset`` dict is reused
            by the other backend).
        detections (list[dict], optional): COCO result entries; empty or None scores
            against no detections at all (``loadRes`` cannot take an empty list).
        iou_type (str): ``'bbox'`` or ``'segm'``.

    Returns:
        A ``COCOeval``-like object (``params``, ``evaluate``, ``accumulate``,
        ``summarize``, ``stats``, ``eval['precision']``).
    """
    empty = dict(images=coco_gt.dataset.get('images', []),
                 categories=coco_gt.dataset.get('categories', []), annotations=[])
    if backend == 'pycocotools':
        if detections:
            with contextlib.redirect_stdout(io.StringIO()):
                coco_dt = coco_gt.loadRes(detections)
        else:
            coco_dt = quiet_coco(empty)
        return COCOeval(coco_gt, coco_dt, iou_type)
    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval import COCOeval_faster
    fast_gt = FasterCOCO(coco_gt.dataset, use_deepcopy=True)
    fast_dt = fast_gt.loadRes(detections) if detections else FasterCOCO(empty)
    # print_function=print: summarize() goes to stdout, which CocoMetric captures and logs
    return COCOeval_faster(fast_gt, fast_dt, iou_type, print_function=print)
