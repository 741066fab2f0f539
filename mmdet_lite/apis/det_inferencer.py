"""DetInferencer: mmdetection 3.x's one-call inference on images, files and folders.

Example:
    >>> inferencer = DetInferencer('configs/shapes/faster-rcnn_r18_fpn_shapes.py',
    ...                            'work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth')
    >>> result = inferencer('data/shapes/val/', out_dir='outputs', no_save_pred=False)
    >>> result['predictions'][0]['bboxes']    # [[x1, y1, x2, y2], ...] original pixels

The model is built by :func:`~mmdet_lite.apis.init_detector` (weights loaded strictly,
weights-only) and the images go through the config's test pipeline as in
:func:`~mmdet_lite.apis.inference_detector`; this class adds mmdetection's input handling
(a folder, a list mixing paths and arrays), batching with a progress bar, drawing and the
``OUT_DIR/vis`` / ``OUT_DIR/preds`` files.
"""
import copy
import math
import os.path as osp
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import mmcv
import mmengine
import numpy as np
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.device import get_device
from mmengine.infer import BaseInferencer
from rich.progress import track
from torch import nn

from mmdet_lite.models.utils import (compile_detector, inference_context,
                                     optimize_for_inference)
from mmdet_lite.structures import DetDataSample

from .image_files import list_image_files
from .inference import (_build_pipeline, _prepare, get_test_pipeline_cfg, init_detector,
                        init_visualizer, replace_image_loader, test_collate_fn)
from .model_names import list_models as _list_model_names
from .model_names import model_config
from .prediction_json import predictions_to_json

InputType = Union[str, np.ndarray]
InputsType = Union[InputType, Sequence[InputType]]

# Both name our registries (mmdet_lite/registry.py reads the mmdet scope as ours).
SCOPES = ('mmdet', 'mmdet_lite')


class DetInferencer(BaseInferencer):
    """Detect objects in images given as paths, a folder or arrays; draw and save them.

    Args:
        model (str | Config | dict, optional): A config file, a loaded config, or a model
            name: a config's file name (``'rtmdet_tiny_8xb32-300e_coco'``) or an
            mmdetection metafile name/alias (``'rtmdet-t'``), see
            :mod:`mmdet_lite.apis.model_names`. None takes the config saved in
            ``weights``. Defaults to None.
        weights (str, optional): Checkpoint file. None leaves the weights random, with a
            warning: mmdetection would download the metafile's checkpoint for a model
            name, mmdet_lite never downloads. Defaults to None.
        device (str, optional): Device; None picks CUDA when available, else the CPU.
            Defaults to None.
        scope (str, optional): Registry scope, ``'mmdet'`` (mmdetection's default; here
            the same registries) or ``'mmdet_lite'``. Defaults to 'mmdet'.
        palette (str): Drawing palette ('coco', 'random', a colour name), or 'none' to
            take it from the config, else the checkpoint, else 'random'. Defaults to 'none'.
        show_progress (bool): Show a progress bar over the batches. Defaults to True.
        fast_path (bool): Predict on the CPU inference fast path: BN folded into the convs,
            channels-last, ``torch.inference_mode`` (the same detections within float
            noise; ``self.model`` then has no BN keys, so save weights from a model built
            with ``fast_path=False``). Defaults to True.
        compile (bool): Also ``torch.compile`` the backbone, neck and dense heads (the
            first call compiles, for minutes). Defaults to False.
    """

    preprocess_kwargs: set = set()
    forward_kwargs: set = set()
    visualize_kwargs: set = {'return_vis', 'show', 'wait_time', 'draw_pred', 'pred_score_thr',
                             'img_out_dir', 'no_save_vis'}
    postprocess_kwargs: set = {'print_result', 'pred_out_dir', 'return_datasamples',
                               'no_save_pred'}

    def __init__(self,
                 model: Optional[Union[str, Path, Config, dict]] = None,
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 scope: Optional[str] = 'mmdet',
                 palette: str = 'none',
                 show_progress: bool = True,
                 fast_path: bool = True,
                 compile: bool = False) -> None:
        # mmengine's BaseInferencer.__init__ is not called: it resolves model names through
        # mmdetection's metafiles and downloads their weights, and loads checkpoints
        # non-strictly. The same attributes are set here from init_detector.
        if scope is not None and scope not in SCOPES:
            raise ValueError(f'scope must be one of {SCOPES} (or None), got {scope!r}')
        self.scope = scope
        self.palette = palette
        self.show_progress = show_progress
        # counters naming the outputs of array inputs, across calls as in mmdetection
        self.num_visualized_imgs = 0
        self.num_predicted_imgs = 0

        cfg = model_config(model, weights)  # a path or a Config
        self.model = self._init_model(cfg, weights, device or get_device())
        self.cfg = self.model.cfg
        self.fast_path = fast_path
        if fast_path:
            optimize_for_inference(self.model)
        if compile:
            compile_detector(self.model)
        self.pipeline = self._init_pipeline(self.cfg)
        self.collate_fn = self._init_collate(self.cfg)
        self.visualizer = self._init_visualizer(self.cfg)

    def _init_model(self, cfg: Union[str, Config], weights: Optional[str],
                    device: str) -> nn.Module:
        """Build the detector in eval mode on ``device`` with :func:`init_detector`."""
        if weights is None:
            warnings.warn('DetInferencer: no weights given, so the model keeps its random '
                          'initial weights and its predictions mean nothing. mmdetection '
                          'would download the checkpoint its metafile names for a model '
                          'name; mmdet_lite never downloads: pass weights= a local '
                          'checkpoint file.')
        return init_detector(cfg, weights, device=device, palette=self.palette)

    def forward(self, inputs: Union[dict, tuple], **kwargs) -> list:
        """``model.test_step`` under ``torch.inference_mode`` on the fast path, else
        ``torch.no_grad`` (as mmengine's)."""
        with inference_context(self.fast_path):
            return self.model.test_step(inputs)

    def _init_pipeline(self, cfg: Config) -> Compose:
        """The test pipeline, starting with ``InferencerLoader`` (paths and arrays)."""
        pipeline_cfg = get_test_pipeline_cfg(cfg)
        # as mmdetection: inference results carry no img_id
        last = pipeline_cfg[-1]
        if 'meta_keys' in last:
            last['meta_keys'] = tuple(key for key in last['meta_keys'] if key != 'img_id')
        replace_image_loader(pipeline_cfg, 'InferencerLoader')
        return _build_pipeline(pipeline_cfg)

    def _init_collate(self, cfg: Config) -> Callable:
        """``test_dataloader.collate_fn`` of the config, else ``pseudo_collate``."""
        return test_collate_fn(cfg, self.scope)

    def _init_visualizer(self, cfg: Config):
        """The config's visualizer drawing with the model's classes and palette."""
        return init_visualizer(cfg, self.model.dataset_meta)

    @staticmethod
    def list_models(scope: Optional[str] = None, patterns: str = r'.*') -> List[str]:
        """The model names :class:`DetInferencer` accepts that match ``patterns``.

        Args:
            scope (str, optional): Ignored: every name is mmdet_lite's. Defaults to None.
            patterns (str): Regular expression matched at the start of each name.
                Defaults to '.*'.

        Returns:
            list[str]: The names, sorted.
        """
        import re
        return [name for name in _list_model_names() if re.match(patterns, name)]

    def _inputs_to_list(self, inputs: InputsType) -> list:
        """A list of inputs: a folder becomes its image files, one input a list of one."""
        if isinstance(inputs, Path):
            inputs = str(inputs)
        if isinstance(inputs, str) and osp.isdir(inputs):
            inputs = list_image_files(inputs)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        return [str(item) if isinstance(item, Path) else item for item in inputs]

    def preprocess(self, inputs: InputsType, batch_size: int = 1, **kwargs) -> Iterator:
        """Run the inputs through the test pipeline, ``batch_size`` at a time.

        Args:
            inputs (list): Paths, BGR arrays [H, W, 3] or dicts with ``img`` / ``img_path``.
            batch_size (int): Inputs per batch. Defaults to 1.

        Yields:
            list: ``[original_inputs, data]``: the batch's inputs as given and its collated
            ``dict(inputs=[...], data_samples=[...])`` for ``model.test_step``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
        yield from map(self.collate_fn, self._get_chunk_data(inputs, batch_size))

    def _get_chunk_data(self, inputs: Iterable, chunk_size: int) -> Iterator[list]:
        """Lists of up to ``chunk_size`` pairs (input as given, pipeline output)."""
        chunk = []
        for index, item in enumerate(inputs):
            if isinstance(item, dict):
                original = item['img'] if 'img' in item else item['img_path']
                chunk.append((original, self.pipeline(copy.deepcopy(item))))
            else:
                # _prepare names a bad input in its error ('image array #3', the path)
                chunk.append((item, _prepare(self.pipeline, item, index)))
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def __call__(self,
                 inputs: InputsType,
                 batch_size: int = 1,
                 return_vis: bool = False,
                 show: bool = False,
                 wait_time: int = 0,
                 no_save_vis: bool = False,
                 draw_pred: bool = True,
                 pred_score_thr: float = 0.3,
                 return_datasamples: bool = False,
                 print_result: bool = False,
                 no_save_pred: bool = True,
                 out_dir: str = '',
                 texts: Optional[Union[str, list]] = None,
                 stuff_texts: Optional[Union[str, list]] = None,
                 custom_entities: bool = False,
                 tokens_positive: Optional[Union[int, list]] = None,
                 **kwargs) -> dict:
        """Detect, draw and save.

        Args:
            inputs (str | np.ndarray | list): An image file, a folder (its image files), a
                BGR array [H, W, 3] in 0..255, or a list of files and arrays.
            batch_size (int): Images per forward pass. Defaults to 1.
            return_vis (bool): Return the drawings. Defaults to False.
            show (bool): Show each drawing in a window. Defaults to False.
            wait_time (int): Seconds a shown window stays. Defaults to 0.
            no_save_vis (bool): Do not write ``out_dir/vis/``. Defaults to False.
            draw_pred (bool): Draw the predictions. Defaults to True.
            pred_score_thr (float): Draw only predictions scoring above this; the returned
                and saved predictions are not thresholded. Defaults to 0.3.
            return_datasamples (bool): Return :class:`DetDataSample` instead of dicts (then
                nothing is written to ``preds/``). Defaults to False.
            print_result (bool): Print the predictions. Defaults to False.
            no_save_pred (bool): Do not write ``out_dir/preds/``. Defaults to True.
            out_dir (str): Output folder; '' writes nothing. Defaults to ''.
            texts, stuff_texts, custom_entities, tokens_positive: Text prompts of GLIP and
                Grounding DINO, which mmdet_lite does not have: only the defaults are
                accepted.
            **kwargs: Keys of ``visualize_kwargs`` / ``postprocess_kwargs``.

        Returns:
            dict: ``predictions``: one dict per image (:meth:`pred2dict`) or data sample;
            ``visualization``: the RGB drawings [H, W, 3] when any were made (``return_vis``,
            ``show``, or saving to ``out_dir/vis``), else ``[]``.
        """
        for name, value in (('texts', texts), ('stuff_texts', stuff_texts),
                            ('tokens_positive', tokens_positive)):
            if value is not None:
                raise ValueError(f'{name}={value!r}: text-prompted detectors (GLIP, Grounding '
                                 'DINO) are not supported by mmdet_lite; leave texts, '
                                 'stuff_texts and tokens_positive as None')
        del custom_entities  # used with texts only
        _, forward_kwargs, visualize_kwargs, postprocess_kwargs = \
            self._dispatch_kwargs(**kwargs)

        ori_inputs = self._inputs_to_list(inputs)
        batches = self.preprocess(ori_inputs, batch_size=batch_size)
        if self.show_progress:
            batches = track(batches, description='Inference',
                            total=math.ceil(len(ori_inputs) / batch_size))

        results_dict = {'predictions': [], 'visualization': []}
        for ori_imgs, data in batches:
            preds = self.forward(data, **forward_kwargs)
            visualization = self.visualize(
                ori_imgs, preds, return_vis=return_vis, show=show, wait_time=wait_time,
                draw_pred=draw_pred, pred_score_thr=pred_score_thr, no_save_vis=no_save_vis,
                img_out_dir=out_dir, **visualize_kwargs)
            results = self.postprocess(
                preds, visualization, return_datasamples=return_datasamples,
                print_result=print_result, no_save_pred=no_save_pred, pred_out_dir=out_dir,
                **postprocess_kwargs)
            results_dict['predictions'].extend(results['predictions'])
            if results['visualization'] is not None:
                results_dict['visualization'].extend(results['visualization'])
        return results_dict

    def visualize(self,
                  inputs: list,
                  preds: List[DetDataSample],
                  return_vis: bool = False,
                  show: bool = False,
                  wait_time: int = 0,
                  draw_pred: bool = True,
                  pred_score_thr: float = 0.3,
                  no_save_vis: bool = False,
                  img_out_dir: str = '',
                  **kwargs) -> Optional[List[np.ndarray]]:
        """Draw the predictions on the original images; show and/or save them.

        A file input ``IMG.ext`` is saved as ``img_out_dir/vis/IMG.ext``; an array input as
        ``img_out_dir/vis/NNNNNNNN.jpg``, numbered by the inputs drawn so far. As in
        mmdetection, an array is drawn on as given, without a BGR->RGB flip (a file is
        read and flipped to RGB).

        Args:
            inputs (list): The batch's inputs as given (paths or arrays).
            preds (list[DetDataSample]): Their predictions.
            return_vis (bool): Draw even when nothing is shown or saved. Defaults to False.
            show (bool): Show each drawing. Defaults to False.
            wait_time (int): Seconds a shown window stays. Defaults to 0.
            draw_pred (bool): Draw the predictions. Defaults to True.
            pred_score_thr (float): Draw predictions scoring above this. Defaults to 0.3.
            no_save_vis (bool): Do not save. Defaults to False.
            img_out_dir (str): Output folder; '' saves nothing. Defaults to ''.

        Returns:
            list[np.ndarray] | None: The RGB drawings [H, W, 3], or None when there was
            nothing to draw for (not shown, not saved, not asked for).
        """
        if no_save_vis:
            img_out_dir = ''
        if not show and img_out_dir == '' and not return_vis:
            return None
        if self.visualizer is None:
            raise ValueError('drawing needs a visualizer, and this inferencer has none')

        drawings = []
        for single_input, pred in zip(inputs, preds):
            if isinstance(single_input, str):
                img = mmcv.imfrombytes(mmengine.fileio.get(single_input))[:, :, ::-1]  # RGB
                img_name = osp.basename(single_input)
            elif isinstance(single_input, np.ndarray):
                img = single_input.copy()
                img_name = f'{self.num_visualized_imgs:08d}.jpg'
            else:
                raise ValueError(f'Unsupported input type: {type(single_input)}')
            out_file = osp.join(img_out_dir, 'vis', img_name) if img_out_dir else None
            self.visualizer.add_datasample(img_name, img, pred, show=show, wait_time=wait_time,
                                           draw_gt=False, draw_pred=draw_pred,
                                           pred_score_thr=pred_score_thr, out_file=out_file)
            drawings.append(self.visualizer.get_image())  # [H, W, 3] RGB
            self.num_visualized_imgs += 1
        return drawings

    def postprocess(self,
                    preds: List[DetDataSample],
                    visualization: Optional[List[np.ndarray]] = None,
                    return_datasamples: bool = False,
                    print_result: bool = False,
                    no_save_pred: bool = False,
                    pred_out_dir: str = '',
                    **kwargs) -> Dict:
        """Turn predictions into dicts (saving them as JSON) and pack the results.

        Args:
            preds (list[DetDataSample]): Predictions of a batch.
            visualization (list[np.ndarray], optional): Their drawings. Defaults to None.
            return_datasamples (bool): Keep the data samples instead of dicts; nothing is
                saved then (with a warning if ``pred_out_dir`` is set). Defaults to False.
            print_result (bool): Print the predictions. Defaults to False.
            no_save_pred (bool): Do not save. Defaults to False.
            pred_out_dir (str): Output folder; '' saves nothing. Defaults to ''.

        Returns:
            dict: ``predictions`` (list) and ``visualization`` (as given).
        """
        if no_save_pred:
            pred_out_dir = ''
        if return_datasamples:
            predictions = preds
            if pred_out_dir:
                warnings.warn('Currently does not support saving datasample when '
                              'return_datasamples is set to True. Prediction results are '
                              'not saved!')
        else:
            predictions = [self.pred2dict(pred, pred_out_dir) for pred in preds]
        result_dict = {'predictions': predictions}
        if print_result:
            print(result_dict)  # before the drawings are added, as in mmdetection
        result_dict['visualization'] = visualization
        return result_dict

    def pred2dict(self, data_sample: DetDataSample, pred_out_dir: str = '') -> Dict:
        """The predictions of one image as JSON-ready lists (all detections, not
        thresholded; keys: :func:`~.prediction_json.predictions_to_json`), saved as
        ``pred_out_dir/preds/IMG.json`` for an input file ``IMG.ext``, else
        ``pred_out_dir/preds/N.json`` numbered by the array inputs saved so far.

        Args:
            data_sample (DetDataSample): Predictions of one image.
            pred_out_dir (str): Output folder; '' saves nothing. Defaults to ''.

        Returns:
            dict: The predictions.
        """
        out_json_path = None
        if pred_out_dir:
            # mmdetection 3.3 checks only that the key exists and then fails on the None
            # path that array inputs get; they take its numbered name here
            img_path = data_sample.metainfo.get('img_path')
            if img_path is not None:
                stem = osp.splitext(osp.basename(img_path))[0]
            else:
                stem = str(self.num_predicted_imgs)
                self.num_predicted_imgs += 1
            out_json_path = osp.join(pred_out_dir, 'preds', f'{stem}.json')

        result = predictions_to_json(data_sample)
        if out_json_path is not None:
            mmengine.dump(result, out_json_path)
        return result
