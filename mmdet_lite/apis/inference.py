"""Run a detector on images: build it from a config + checkpoint, then predict.

Example:
    >>> model = init_detector('configs/shapes/faster-rcnn_r18_fpn_shapes.py',
    ...                       'work_dirs/faster-rcnn_r18_fpn_shapes/epoch_6.pth')
    >>> result = inference_detector(model, 'demo.jpg')   # a DetDataSample
    >>> result.pred_instances.bboxes                     # [N, 4] original-image pixels
"""
import copy
import itertools
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import FUNCTIONS, init_default_scope
from torch import nn

from mmdet_lite.apis.config_loading import read_config_file
from mmdet_lite.engine.checkpoint import load_local_checkpoint
from mmdet_lite.engine.weights_fit import check_weights_fit, strip_module_prefix
from mmdet_lite.registry import DATASETS, MODELS, TRANSFORMS, VISUALIZERS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

ImageType = Union[str, Path, np.ndarray]
ImagesType = Union[ImageType, Sequence[ImageType]]

_PALETTE_NONE = 'none'  # init_detector's "no override" value, as in mmdetection
_visualizer_ids = itertools.count()


def _load_config(config: Union[str, Path, Config]) -> Config:
    if isinstance(config, (str, Path)):
        # missing file / syntax errors (naming the file and line) as in the tools
        return read_config_file(str(config))
    if isinstance(config, Config):
        return copy.deepcopy(config)  # the caller's config stays as it was
    raise TypeError(f'config must be a file path or a Config, got {type(config).__name__}')


def _test_dataset_cfg(cfg: Config) -> Optional[dict]:
    """The innermost dataset config of ``cfg.test_dataloader`` (through dataset wrappers)."""
    dataset = cfg.get('test_dataloader', {}).get('dataset')
    while dataset is not None and 'pipeline' not in dataset and 'type' in dataset:
        if 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset ...
            dataset = dataset['dataset']
        elif dataset.get('datasets'):  # ConcatDataset
            dataset = dataset['datasets'][0]
        else:
            break
    return dataset


def _dataset_meta_from_config(cfg: Config) -> dict:
    """``classes``/``palette`` of the test dataset: its class's METAINFO + config metainfo.

    The dataset is not built, since building may read or generate its annotation files.
    """
    dataset = _test_dataset_cfg(cfg) or {}
    meta = {}
    if isinstance(dataset.get('type'), str) and dataset['type'] in DATASETS:
        meta.update(copy.deepcopy(getattr(DATASETS.get(dataset['type']), 'METAINFO', {})))
    meta.update(copy.deepcopy(dict(dataset.get('metainfo') or {})))
    return {key: meta[key] for key in ('classes', 'palette') if key in meta}


def _load_weights(model: nn.Module, checkpoint: str) -> dict:
    """Load ``checkpoint``'s ``state_dict`` into ``model``, requiring every key to match.

    The file is read by :func:`mmdet_lite.engine.checkpoint.load_local_checkpoint`, i.e.
    ``torch.load(..., weights_only=True)`` with an allow-list of exactly what mmengine's
    Runner checkpoints add beside tensors (message-hub ``HistoryBuffer`` objects, numpy
    arrays, dtypes and scalars); only ``state_dict`` and ``meta`` are used here.

    Returns:
        dict: The whole checkpoint.
    """
    ckpt = load_local_checkpoint(checkpoint, map_location='cpu')
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f'checkpoint {checkpoint} holds no state dict (expected a dict of '
                         f"tensors or a dict with a 'state_dict' key)")
    state_dict = strip_module_prefix(state_dict)  # saved from a DDP wrapper
    # every key must match: missing, unexpected and mis-shaped keys are all refused
    check_weights_fit(model.state_dict(), state_dict, checkpoint)
    model.load_state_dict(state_dict, strict=True)
    return ckpt


def init_detector(config: Union[str, Path, Config],
                  checkpoint: Optional[str] = None,
                  device: str = 'cpu',
                  cfg_options: Optional[dict] = None,
                  palette: str = _PALETTE_NONE) -> nn.Module:
    """Build a detector from a config, load its weights and prepare it for inference.

    Class names and palette go to ``model.dataset_meta``: classes from the checkpoint's
    ``meta.dataset_meta`` (as saved by the Runner), else from the config's test dataset
    (its ``metainfo`` over its class's ``METAINFO``, e.g. ``ShapesDataset.METAINFO``);
    the palette from ``palette`` if given, else the config's, else the checkpoint's, else
    ``'random'``.

    Args:
        config (str | Path | Config): Config file or loaded config.
        checkpoint (str, optional): Checkpoint file; without one the weights stay as
            initialised when built (random). Defaults to None.
        device (str): Device to put the model on. Defaults to 'cpu'.
        cfg_options (dict, optional): Overrides merged into the config, e.g.
            ``{'model.test_cfg.rcnn.score_thr': 0.5}``. Defaults to None.
        palette (str): Drawing palette: 'random', 'coco', a colour name, or 'none' to take
            it from the config/checkpoint. Defaults to 'none'.

    Returns:
        nn.Module: The detector in eval mode, with ``cfg`` and ``dataset_meta`` set.
    """
    cfg = _load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'the config has no `model` entry: {config}')
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be like 'cpu' or 'cuda:0', got {device!r}") from err
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {device} was asked for but CUDA is not available')

    # mmengine builds some parts (the data preprocessor) from its root registry, which finds
    # ours only through the default scope
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope') or 'mmdet_lite')
    model = revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN needs a process group
    checkpoint_meta = {}
    if checkpoint is not None:
        ckpt = _load_weights(model, str(checkpoint))
        checkpoint_meta = ckpt.get('meta') or {}

    ckpt_dataset_meta = {k.lower(): v for k, v in
                         (checkpoint_meta.get('dataset_meta') or {}).items()}
    if 'classes' not in ckpt_dataset_meta and 'CLASSES' in checkpoint_meta:  # mmdet 2.x
        ckpt_dataset_meta['classes'] = checkpoint_meta['CLASSES']
    config_meta = _dataset_meta_from_config(cfg)
    dataset_meta = dict(ckpt_dataset_meta) if 'classes' in ckpt_dataset_meta else \
        dict(config_meta)
    if 'classes' not in dataset_meta:
        warnings.warn('init_detector: no class names in the checkpoint meta nor in the '
                      "config's test dataset; labels will be shown as numbers")
    if palette != _PALETTE_NONE:
        dataset_meta['palette'] = palette
    elif 'palette' in config_meta:
        dataset_meta['palette'] = config_meta['palette']
    dataset_meta.setdefault('palette', 'random')

    model.cfg = cfg
    model.dataset_meta = dataset_meta
    model.to(device)
    model.eval()
    return model


def init_visualizer(cfg: Config, dataset_meta: dict):
    """The config's visualizer (``DetLocalVisualizer`` if it has none) for drawing to files.

    Storage backends are dropped (drawings are written with ``out_file``) and the instance
    gets a name of its own, so several can exist in one process.

    Args:
        cfg (Config): Config, possibly with a ``visualizer`` entry.
        dataset_meta (dict): ``classes`` and ``palette`` to draw with.

    Returns:
        DetLocalVisualizer: The visualizer.
    """
    vis_cfg = dict(cfg.get('visualizer') or dict(type='DetLocalVisualizer'))
    vis_cfg.update(vis_backends=None, save_dir=None,
                   name=f'{vis_cfg.get("name", "visualizer")}_{next(_visualizer_ids)}')
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = dataset_meta
    return visualizer


def get_test_pipeline_cfg(cfg: Config, from_ndarray: bool = False) -> List[dict]:
    """The config's test pipeline for inference: annotation loading removed.

    Args:
        cfg (Config): Config with ``test_dataloader.dataset.pipeline`` (possibly inside a
            dataset wrapper).
        from_ndarray (bool): Replace ``LoadImageFromFile`` with ``LoadImageFromNDArray``,
            for images given as arrays. Defaults to False.

    Returns:
        list[dict]: Transform configs.
    """
    dataset = _test_dataset_cfg(cfg)
    if dataset is None or 'pipeline' not in dataset:
        raise KeyError('the config has no test_dataloader.dataset.pipeline to build the '
                       'inference pipeline from; pass test_pipeline= explicitly')
    pipeline = [copy.deepcopy(dict(step)) for step in dataset['pipeline']
                if not _type_name(step).endswith('LoadAnnotations')]
    if from_ndarray:
        replace_image_loader(pipeline, 'LoadImageFromNDArray')
    return pipeline


def test_collate_fn(cfg: Config, scope: Optional[str] = 'mmdet') -> Callable:
    """The config's ``test_dataloader.collate_fn`` (a name, ``dict(type=...)`` or a
    callable), else mmengine's ``pseudo_collate``.

    Args:
        cfg (Config): A whole config.
        scope (str, optional): Registry scope to look the name up in. Defaults to 'mmdet'.

    Returns:
        callable: The collate function.
    """
    collate_cfg = (cfg.get('test_dataloader') or {}).get('collate_fn')
    if collate_cfg is None:
        return pseudo_collate
    name = collate_cfg.get('type') if isinstance(collate_cfg, dict) else collate_cfg
    if callable(name):
        return name
    with FUNCTIONS.switch_scope_and_registry(scope) as registry:
        collate_fn = registry.get(name)
    if collate_fn is None:
        raise KeyError(f'test_dataloader.collate_fn: {name!r} is not a registered '
                       'function (e.g. pseudo_collate, default_collate)')
    return collate_fn


def replace_image_loader(pipeline: List[dict], loader: str) -> None:
    """Make the first ``LoadImageFromFile`` step of ``pipeline`` (in place) a ``loader``.

    Its other arguments (``backend_args``, ``to_float32`` ...) are kept.

    Args:
        pipeline (list[dict]): Transform configs, e.g. from :func:`get_test_pipeline_cfg`.
        loader (str): Registered type of the new step: ``'LoadImageFromNDArray'`` for
            arrays, ``'InferencerLoader'`` for paths and arrays alike.

    Raises:
        ValueError: The pipeline has no ``LoadImageFromFile`` step.
    """
    loaders = [step for step in pipeline if _type_name(step) == 'LoadImageFromFile']
    if not loaders:
        raise ValueError('the test pipeline (test_dataloader.dataset.pipeline) has no '
                         f'LoadImageFromFile step to replace with {loader}')
    loaders[0]['type'] = loader


def _type_name(step: dict) -> str:
    """A transform config's type without its scope ('mmdet.Resize' -> 'Resize')."""
    type_ = step.get('type', '')
    return type_.split('.')[-1] if isinstance(type_, str) else getattr(type_, '__name__', '')


def _build_pipeline(pipeline: Union[Compose, Sequence]) -> Compose:
    if isinstance(pipeline, Compose):
        return pipeline
    # our registry (not mmengine's root) so no default scope needs to be set
    return Compose([TRANSFORMS.build(step) if isinstance(step, dict) else step
                    for step in pipeline])


def _check_value_range(img: np.ndarray, name: str) -> None:
    """Refuse a float image whose values all lie in 0..1.

    The detectors (as mmdetection's) take BGR pixel values in 0..255 and normalise them
    with the data preprocessor's 0..255 mean/std: a 0..1 image would reach the network
    as nearly black and silently lose every detection. It is not rescaled here, since a
    float image in 0..255 that happens to be dark must stay as it is.
    """
    if img.size == 0 or not np.issubdtype(img.dtype, np.floating):
        return
    low, high = float(np.nanmin(img)), float(np.nanmax(img))
    if high <= 1.0:
        raise ValueError(f'{name} is a {img.dtype} array with values in [{low:g}, {high:g}]: '
                         'it looks like an image scaled to 0..1, but the detector expects '
                         'BGR pixel values in 0..255; pass a uint8 array in 0..255, or '
                         'multiply the array by 255')


def _prepare(pipeline: Compose, img: ImageType, index: int) -> dict:
    """Run one image through the pipeline.

    A missing or undecodable file is reported, with its path, by the pipeline's
    ``LoadImageFromFile`` (FileNotFoundError / ValueError); so is an image with a side
    under 2 pixels, by it or ``LoadImageFromNDArray`` ('image array #i'). A float array
    in 0..1 is refused (:func:`_check_value_range`).
    """
    if isinstance(img, np.ndarray):
        results, name = dict(img=img, img_id=index), f'image array #{index}'
        _check_value_range(img, name)
    elif isinstance(img, (str, Path)):
        results, name = dict(img_path=str(img), img_id=index), str(img)
    else:
        raise TypeError('images must be file paths or np.ndarray (BGR [H, W, 3]), got '
                        f'{type(img).__name__}')
    data = pipeline(results)
    if data is None:
        raise ValueError(f'the test pipeline dropped {name} (a transform returned None)')
    return data


def inference_detector(model: nn.Module,
                       imgs: ImagesType,
                       test_pipeline: Optional[Union[Compose, Sequence[dict]]] = None,
                       batch_size: int = 1) -> Union[DetDataSample, List[DetDataSample]]:
    """Detect objects in one image or a list of images.

    Args:
        model (nn.Module): Detector from :func:`init_detector` (needs ``model.cfg`` unless
            ``test_pipeline`` is given).
        imgs (str | Path | np.ndarray | Sequence): Image file(s) or BGR array(s) [H, W, 3]
            with values in 0..255 (uint8; a float array in 0..1 is refused), each side at
            least 2 pixels.
        test_pipeline (Compose | list[dict], optional): Transforms turning
            ``dict(img_path=...)`` (or ``dict(img=...)``) into packed inputs; by default the
            config's test pipeline (:func:`get_test_pipeline_cfg`). Defaults to None.
        batch_size (int): Images per forward pass; images of one batch are padded to a
            common size. Defaults to 1.

    Returns:
        DetDataSample | list[DetDataSample]: One per image (a list if ``imgs`` is one), with
        ``pred_instances`` (``bboxes`` [N, 4] in original-image pixels, ``scores`` [N],
        ``labels`` [N], ``masks`` [N, H, W] for instance segmentation).
    """
    is_batch = isinstance(imgs, (list, tuple))
    images = list(imgs) if is_batch else [imgs]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')

    pipelines = {}  # one per input kind: file paths and arrays load differently
    if test_pipeline is not None:
        pipelines[False] = pipelines[True] = _build_pipeline(test_pipeline)
    elif getattr(model, 'cfg', None) is None:
        raise ValueError('model has no `cfg`: build it with init_detector, or pass '
                         'test_pipeline=')

    results = []
    for start in range(0, len(images), batch_size):
        batch = dict(inputs=[], data_samples=[])
        for index in range(start, min(start + batch_size, len(images))):
            from_ndarray = isinstance(images[index], np.ndarray)
            if from_ndarray not in pipelines:
                pipelines[from_ndarray] = _build_pipeline(
                    get_test_pipeline_cfg(model.cfg, from_ndarray=from_ndarray))
            data = _prepare(pipelines[from_ndarray], images[index], index)
            batch['inputs'].append(data['inputs'])  # uint8 [3, h, w]
            batch['data_samples'].append(data['data_samples'])
        with torch.no_grad():
            results.extend(model.test_step(batch))
    return results if is_batch else results[0]
