"""The report's charts as PNG files, drawn with matplotlib's Agg backend (no display needed).

Each function writes one figure and returns its path; pyplot is imported inside them, after
selecting Agg, so importing this module costs nothing and works headless.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .class_eval import ClassEval
from mmdet_lite.analysis.training_log import TrainingLog

DPI = 100
MAX_LEGEND_CLASSES = 20  # more lines than this and a legend hides the plot


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # files only
    import matplotlib.pyplot as plt
    return plt


def plot_class_ap(class_eval: ClassEval, path: str) -> str:
    """Horizontal bars of each class's AP@[.5:.95] (dark) over its AP@0.5 (light), the
    best class on top; classes without ground truth are left out.

    Returns:
        str: ``path``.
    """
    plt = _pyplot()
    keep = [k for k in range(len(class_eval.classes)) if not np.isnan(class_eval.ap[k])]
    keep.sort(key=lambda k: class_eval.ap[k])
    names = [class_eval.classes[k] for k in keep]
    height = max(2.8, 0.32 * len(keep) + 1.5)
    fig, ax = plt.subplots(figsize=(6, height))
    ys = np.arange(len(keep))
    ax.barh(ys, class_eval.ap50[keep], color='#9ecae1', label='AP@0.5')
    ax.barh(ys, class_eval.ap[keep], color='#2171b5', label='AP@[.5:.95]')
    for y, k in zip(ys, keep):
        ax.text(class_eval.ap[k] + 0.01, y, f'{class_eval.ap[k]:.3f}', va='center',
                fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels(names)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel('AP')
    ax.set_title(f'{class_eval.iou_type} AP per class', pad=24)
    ax.legend(loc='lower center', bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8,
              frameon=False)
    ax.grid(True, axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_pr_curves(class_eval: ClassEval, path: str) -> str:
    """Precision against recall per class, one panel per IoU of ``pr_curves``; the mean over
    the classes with ground truth as a thick black line.

    Returns:
        str: ``path``.
    """
    plt = _pyplot()
    ious = sorted(class_eval.pr_curves)
    fig, axes = plt.subplots(1, len(ious), figsize=(5.2 * len(ious), 4.4), squeeze=False)
    recall = class_eval.recall_thrs
    cmap = plt.get_cmap('tab20' if len(class_eval.classes) > 10 else 'tab10')
    for ax, iou in zip(axes[0], ious):
        curves = class_eval.pr_curves[iou]  # [K, R]
        with_gt = [k for k in range(len(curves)) if (curves[k] > -1).all()]
        for k in with_gt:
            ax.plot(recall, curves[k], color=cmap(k % cmap.N), linewidth=1.2,
                    label=class_eval.classes[k])
        if with_gt:
            ax.plot(recall, curves[with_gt].mean(0), color='black', linewidth=2.5,
                    label='mean')
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel('recall')
        ax.set_ylabel('precision')
        ax.set_title(f'{class_eval.iou_type} precision-recall at IoU {iou:g}')
        ax.grid(True, alpha=0.3)
        if len(with_gt) <= MAX_LEGEND_CLASSES:
            ax.legend(loc='lower left', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _plot_series(ax, series: Dict[str, Tuple[List[int], List[float]]],
                 bold: Sequence[str] = (), marker=None) -> None:
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, linewidth=2.2 if name in bold else 1.0, marker=marker, markersize=4,
                label=name)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def plot_training_curves(log: TrainingLog, path: str) -> str:
    """Losses against the iteration (left) and the validation mAPs against the epoch or
    iteration (right; left out when the training never validated).

    Returns:
        str: ``path``.
    """
    plt = _pyplot()
    metrics = log.metric_curves()
    fig, axes = plt.subplots(1, 2 if metrics else 1, figsize=(11 if metrics else 6, 4),
                             squeeze=False)
    _plot_series(axes[0, 0], log.loss_curves(), bold=('loss', ))
    axes[0, 0].set_xlabel('iter')
    axes[0, 0].set_title('training losses')
    if metrics:
        _plot_series(axes[0, 1], metrics, marker='o')
        axes[0, 1].set_xlabel('epoch' if log.by_epoch else 'iter')
        axes[0, 1].set_title('validation')
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
