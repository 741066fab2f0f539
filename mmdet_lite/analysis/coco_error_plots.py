"""The figures of the COCO error analysis: stacked PR-curve bands, AP bars, area statistics.

The curves come from :func:`mmdet_lite.analysis.coco_error_analysis.error_breakdown`: ``ps``
of shape [7, R, K, A, 1] (error types, recall thresholds, categories, area ranges, 1), one
row per :data:`ERROR_TYPES`. Each function writes PNG files into ``out_dir`` (Agg backend,
no display needed), named as mmdetection names them.
"""
import os
import os.path as osp
from typing import Dict

import numpy as np
from pycocotools.cocoeval import COCOeval

ERROR_TYPES = ('C75', 'C50', 'Loc', 'Sim', 'Oth', 'BG', 'FN')
AREA_NAMES = ('allarea', 'small', 'medium', 'large')
# Fill colours of the bands between curves, one per error type (RGB in [0, 1]); the two
# IoU curves C75 and C50 are left white, as in the usual COCO analysis figures.
_BAND_COLOURS = ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.31, 0.51, 0.74), (0.75, 0.31, 0.30),
                 (0.36, 0.90, 0.38), (0.50, 0.39, 0.64), (1.0, 0.6, 0.0))



def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out_dir: str, title: str) -> None:
    # a category name may hold a path separator; the file name must not
    fig.savefig(osp.join(out_dir, title.replace(os.sep, '_') + '.png'))


def makeplot(rs: np.ndarray, ps: np.ndarray, out_dir: str, class_name: str,
             iou_type: str) -> None:
    """Draw the stacked PR curves of one category (or all), one figure per area group.

    Args:
        rs (np.ndarray): Recall thresholds [R].
        ps (np.ndarray): [7, R, A, 1] for one category, or [7, R, K, A, 1] for all (the
            curves are then averaged over the categories).
        out_dir (str): Folder of ``<iou_type>-<class_name>-<area>.png``.
        class_name (str): Category name, or ``'allclass'``.
        iou_type (str): ``'bbox'`` or ``'segm'``.
    """
    plt = _pyplot()
    for area_index, area_name in enumerate(AREA_NAMES):
        area_ps = ps[..., area_index, 0]  # [7, R] or [7, R, K]
        aps = area_ps.reshape(len(ERROR_TYPES), -1).mean(axis=1)
        curves = area_ps.mean(axis=2) if area_ps.ndim == 3 else area_ps  # [7, R]
        below = np.zeros_like(rs, dtype=float)
        title = f'{iou_type}-{class_name}-{area_name}'
        fig = plt.figure()
        ax = fig.add_subplot(111)
        # each band spans from the previous (stricter) curve to this one: the AP gained
        # by forgiving this error type
        for error_type, curve, ap, colour in zip(ERROR_TYPES, curves, aps, _BAND_COLOURS):
            ax.plot(rs, curve, color=(0, 0, 0), linewidth=0.5)
            ax.fill_between(rs, below, curve, color=colour, label=f'[{ap:.3f}]{error_type}')
            below = curve
        ax.set_xlabel('recall')
        ax.set_ylabel('precision')
        ax.set_xlim(0, 1.0)
        ax.set_ylim(0, 1.0)
        ax.set_title(title)
        ax.legend()
        _save(fig, out_dir, title)
        plt.close(fig)


def _label_bars(ax, bars) -> None:
    """Write each bar's height above it: AP in percent, counts as they are."""
    for bar in bars:
        height = bar.get_height()
        text = f'{height * 100:2.0f}' if 0 < height <= 1 else f'{height:2.0f}'
        ax.annotate(text, xy=(bar.get_x() + bar.get_width() / 2, height), xytext=(0, 3),
                    textcoords='offset points', ha='center', va='bottom',
                    fontsize='x-small')


def makebarplot(rs: np.ndarray, ps: np.ndarray, out_dir: str, class_name: str,
                iou_type: str) -> None:
    """Bar plot of the AP of each error type (FN left out: always 1) per area group.

    Args: as :func:`makeplot`; writes ``<iou_type>-<class_name>-ap bar plot.png``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots()
    x = np.arange(len(AREA_NAMES))
    group_width = 0.60
    bar_width = group_width / len(ERROR_TYPES)
    title = f'{iou_type}-{class_name}-ap bar plot'
    all_bars = []
    for i, error_type in enumerate(ERROR_TYPES[:-1]):
        type_ps = ps[i, ..., 0]  # [R, A] or [R, K, A]
        aps = type_ps.reshape(-1, len(AREA_NAMES)).mean(axis=0)
        offset = -group_width / 2 + (i + 1) * bar_width
        all_bars.append(ax.bar(x + offset, aps, bar_width, label=error_type))
    ax.set_ylabel('Mean Average Precision (mAP)')
    ax.set_title(title)
    ax.set_xticks(x)
    ax.set_xticklabels(AREA_NAMES)
    ax.legend()
    for bars in all_bars:
        _label_bars(ax, bars)
    _save(fig, out_dir, title)
    plt.close(fig)


def get_gt_area_group_numbers(coco_eval: COCOeval) -> Dict[str, int]:
    """Number of (non-ignored) ground truths in each area group of an evaluated COCOeval.

    Returns:
        dict[str, int]: ``{'all': n, 'small': n, 'medium': n, 'large': n}``.
    """
    labels = coco_eval.params.areaRngLbl
    label_of_range = {tuple(rng): label
                      for rng, label in zip(coco_eval.params.areaRng, labels)}
    counts = dict.fromkeys(labels, 0)
    for eval_img in coco_eval.evalImgs:
        if eval_img:
            label = label_of_range[tuple(eval_img['aRng'])]
            counts[label] += int(np.sum(np.logical_not(eval_img['gtIgnore'])))
    return counts


def make_gt_area_group_numbers_plot(coco_eval: COCOeval, out_dir: str,
                                    verbose: bool = True) -> None:
    """Bar plot ``number of annotations per area group.png``."""
    counts = get_gt_area_group_numbers(coco_eval)
    if verbose:
        print('number of annotations per area group:', counts)
    plt = _pyplot()
    fig, ax = plt.subplots()
    title = 'number of annotations per area group'
    bars = ax.bar(np.arange(len(counts)), list(counts.values()), 0.60)
    ax.set_ylabel('Number of annotations')
    ax.set_title(title)
    ax.set_xticks(np.arange(len(counts)))
    ax.set_xticklabels(list(counts))
    _label_bars(ax, bars)
    fig.tight_layout()
    _save(fig, out_dir, title)
    plt.close(fig)


def make_gt_area_histogram_plot(coco_eval: COCOeval, out_dir: str) -> None:
    """Histogram of the square roots of all ground-truth areas,
    ``gt annotation areas histogram plot.png``."""
    plt = _pyplot()
    areas = [ann['area'] for ann in coco_eval.cocoGt.anns.values()]
    title = 'gt annotation areas histogram plot'
    fig, ax = plt.subplots()
    ax.hist(np.sqrt(areas), bins=100)
    ax.set_xlabel('Squareroot Area')
    ax.set_ylabel('Number of annotations')
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, out_dir, title)
    plt.close(fig)
