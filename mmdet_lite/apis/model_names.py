"""Model names for :class:`~mmdet_lite.apis.DetInferencer`: a short name -> a config file.

``DetInferencer('rtmdet_tiny_8xb32-300e_coco')`` and ``DetInferencer('rtmdet-t')`` both mean
``configs/rtmdet/rtmdet_tiny_8xb32-300e_coco.py``. A name is looked up, case-insensitively, as

1. a model ``Name`` or ``Alias`` of mmdetection 3.3's metafiles (``configs/*/metafile.yml``),
   kept in :data:`METAFILE_NAMES` for the configs mmdet_lite ships. mmdetection resolves
   names only this way; its metafile names sometimes differ from the file names
   (``yolox_s_8x8_300e_coco`` is ``yolox_s_8xb8-300e_coco.py``);
2. the file name, without ``.py``, of any config under ``configs/`` (``_base_`` folders
   excluded), which also covers our own configs such as ``faster-rcnn_r18_fpn_shapes``.

``configs/`` is the folder beside the ``mmdet_lite`` package (a source checkout or an editable
install), else ``mmdet_lite/.mim/configs`` (where a packaged install would put it), as
mmengine's inferencers look for mmdetection's. Nothing is ever downloaded: mmdetection also
takes the checkpoint URL from the metafile, mmdet_lite leaves the weights to the caller.
"""
import copy
import difflib
import os
import os.path as osp
from pathlib import Path
from typing import Dict, List, Optional, Union

from mmengine.config import Config

import mmdet_lite
from mmdet_lite.engine.checkpoint import load_local_checkpoint

# mmdetection 3.3 metafile names that differ from their config's file name, and every
# ``Alias``, for the configs we ship (path relative to configs/). Generated once from
# mmdet/.mim/configs/*/metafile.yml: for each model whose ``Config`` exists here, its
# lower-cased ``Name`` (when it is not the file name) and ``Alias`` entries.
METAFILE_NAMES: Dict[str, str] = {
    'faster-rcnn_r50_fpn_dconv_c3-c5_1x_coco': 'dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py',
    'mask-rcnn_r50_fpn_dconv_c3-c5_1x_coco': 'dcn/mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py',
    'faster-rcnn_r50_fpn_mdconv_c3-c5_1x_coco':
    'dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py',
    'faster-rcnn_r50_fpn_mdconv_c3-c5_group4_1x_coco':
    'dcnv2/faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco.py',
    'mask-rcnn_r50_fpn_mdconv_c3-c5_1x_coco': 'dcnv2/mask-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py',
    'faster-rcnn_r50_fpn_attention_1111_1x_coco':
    'empirical_attention/faster-rcnn_r50-attn1111_fpn_1x_coco.py',
    'faster-rcnn_r50_fpn_attention_0010_1x_coco':
    'empirical_attention/faster-rcnn_r50-attn0010_fpn_1x_coco.py',
    'faster-rcnn_r50_fpn_attention_1111_dcn_1x_coco':
    'empirical_attention/faster-rcnn_r50-attn1111-dcn_fpn_1x_coco.py',
    'faster-rcnn_r50_fpn_attention_0010_dcn_1x_coco':
    'empirical_attention/faster-rcnn_r50-attn0010-dcn_fpn_1x_coco.py',
    'faster-rcnn_r50-caffe-c4_1x_coco': 'faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py',
    'faster-rcnn_r50_fpn_mstrain_3x_coco': 'faster_rcnn/faster-rcnn_r50_fpn_ms-3x_coco.py',
    'mask-rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco': 'gcnet/mask-rcnn_r50-gcb-r16-c3-c5_fpn_1x_coco.py',
    'mask-rcnn_r50_fpn_r4_gcb_c3-c5_1x_coco': 'gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py',
    'mask-rcnn_r50_fpn_mstrain-poly_3x_coco': 'mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py',
    'paa_r50_fpn_mstrain_3x_coco': 'paa/paa_r50_fpn_ms-3x_coco.py',
    'paa_r101_fpn_mstrain_3x_coco': 'paa/paa_r101_fpn_ms-3x_coco.py',
    'rtmdet-t': 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
    'rtmdet-s': 'rtmdet/rtmdet_s_8xb32-300e_coco.py',
    'rtmdet-m': 'rtmdet/rtmdet_m_8xb32-300e_coco.py',
    'rtmdet-l': 'rtmdet/rtmdet_l_8xb32-300e_coco.py',
    'rtmdet-x': 'rtmdet/rtmdet_x_8xb32-300e_coco.py',
    'rtmdet-ins-t': 'rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py',
    'rtmdet-ins-s': 'rtmdet/rtmdet-ins_s_8xb32-300e_coco.py',
    'rtmdet-ins-m': 'rtmdet/rtmdet-ins_m_8xb32-300e_coco.py',
    'rtmdet-ins-l': 'rtmdet/rtmdet-ins_l_8xb32-300e_coco.py',
    'rtmdet-ins-x': 'rtmdet/rtmdet-ins_x_8xb16-300e_coco.py',
    'yolov3_d53_320_273e_coco': 'yolo/yolov3_d53_8xb8-320-273e_coco.py',
    'yolov3_d53_mstrain-416_273e_coco': 'yolo/yolov3_d53_8xb8-ms-416-273e_coco.py',
    'yolov3_d53_mstrain-608_273e_coco': 'yolo/yolov3_d53_8xb8-ms-608-273e_coco.py',
    'yolov3_d53_fp16_mstrain-608_273e_coco': 'yolo/yolov3_d53_8xb8-amp-ms-608-273e_coco.py',
    'yolof_r50_c5_8x8_1x_coco': 'yolof/yolof_r50-c5_8xb8-1x_coco.py',
    'yolox_s_8x8_300e_coco': 'yolox/yolox_s_8xb8-300e_coco.py',
    'yolox_l_8x8_300e_coco': 'yolox/yolox_l_8xb8-300e_coco.py',
    'yolox_x_8x8_300e_coco': 'yolox/yolox_x_8xb8-300e_coco.py',
    'yolox_tiny_8x8_300e_coco': 'yolox/yolox_tiny_8xb8-300e_coco.py',
}


def configs_dir() -> Optional[str]:
    """The ``configs/`` folder shipped with mmdet_lite, or None if there is none.

    Returns:
        str | None: ``<repo>/configs`` beside the package, else ``mmdet_lite/.mim/configs``.
    """
    package_dir = osp.dirname(osp.abspath(mmdet_lite.__file__))
    for candidate in (osp.join(osp.dirname(package_dir), 'configs'),
                      osp.join(package_dir, '.mim', 'configs')):
        if osp.isdir(candidate):
            return candidate
    return None


def _config_files(root: str) -> Dict[str, List[str]]:
    """Lower-cased file name (no ``.py``) -> the config files of that name under ``root``."""
    found: Dict[str, List[str]] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d != '_base_')  # partial configs
        for name in sorted(files):
            if name.endswith('.py'):
                found.setdefault(name[:-3].lower(), []).append(osp.join(folder, name))
    return found


def list_models() -> List[str]:
    """Every name :func:`resolve_model_name` accepts, sorted.

    Returns:
        list[str]: Config file names (without ``.py``) and mmdetection metafile names and
        aliases of the configs we ship.
    """
    root = configs_dir()
    if root is None:
        return []
    names = set(_config_files(root))
    names.update(name for name, path in METAFILE_NAMES.items()
                 if osp.isfile(osp.join(root, path)))
    return sorted(names)


def resolve_model_name(name: str) -> str:
    """The config file a model name (or a config path) stands for.

    Args:
        name (str): A config file path, a config file name without ``.py``
            (``'faster-rcnn_r50_fpn_1x_coco'``) or an mmdetection metafile name or alias
            (``'rtmdet-t'``), in any letter case.

    Returns:
        str: Path of the config file.

    Raises:
        FileNotFoundError: ``name`` looks like a path (ends with ``.py`` or has a folder
            separator) and no such file exists, or no ``configs/`` folder is installed.
        ValueError: ``name`` is no known model name; the message lists close matches.
    """
    if osp.isfile(name):
        return name
    if name.endswith('.py') or os.sep in name or '/' in name:
        raise FileNotFoundError(f'config file not found: {name}')
    root = configs_dir()
    if root is None:
        raise FileNotFoundError(
            f'model name {name!r} needs the configs/ folder of mmdet_lite, which was found '
            'neither beside the mmdet_lite package nor in mmdet_lite/.mim/configs; pass the '
            'path of a config file instead')
    key = name.lower()
    if key in METAFILE_NAMES and osp.isfile(osp.join(root, METAFILE_NAMES[key])):
        return osp.join(root, METAFILE_NAMES[key])
    files = _config_files(root).get(key, [])
    if len(files) == 1:
        return files[0]
    if len(files) > 1:
        raise ValueError(f'model name {name!r} is ambiguous: several configs have that name '
                         f'({", ".join(files)}); pass the path of one of them')
    close = difflib.get_close_matches(key, list_models(), n=5, cutoff=0.6)
    hint = (f'close matches: {", ".join(close)}' if close else
            'mmdet_lite.apis.model_names.list_models() lists the known names')
    raise ValueError(f'unknown model {name!r}: not a config file, nor the name of a config '
                     f'under {root} or an mmdetection metafile name/alias of one; {hint}')


def config_from_checkpoint(weights: str) -> Config:
    """The config a Runner saved in a checkpoint (its message hub, else its ``meta``).

    Args:
        weights (str): Checkpoint file, read weights-only.

    Returns:
        Config: The training config.

    Raises:
        ValueError: The checkpoint holds no config text.
    """
    ckpt = load_local_checkpoint(weights, map_location='cpu')
    cfg_text = None
    if isinstance(ckpt, dict):
        # mmengine keeps it in both places; the message hub first, as mmengine reads it
        runtime_info = (ckpt.get('message_hub') or {}).get('runtime_info') or {}
        cfg_text = runtime_info.get('cfg') or (ckpt.get('meta') or {}).get('cfg')
    if not isinstance(cfg_text, str):
        raise ValueError(f'checkpoint {weights} holds no config (looked for '
                         "message_hub.runtime_info.cfg and meta.cfg, which mmengine's Runner "
                         'saves); pass the config as model=')
    return Config.fromstring(cfg_text, file_format='.py')


def model_config(model, weights: Optional[str] = None) -> Union[str, Config]:
    """A config file path or a Config from any ``model`` argument ``DetInferencer`` takes.

    Args:
        model (str | Path | Config | dict | None): A config file, a model name or alias
            (:func:`resolve_model_name`), a Config or a config dict; None takes the config
            saved in ``weights``.
        weights (str, optional): The checkpoint, for ``model=None``.

    Returns:
        str | Config: What ``init_detector`` accepts.
    """
    if isinstance(model, (str, Path)):
        return resolve_model_name(str(model))
    if isinstance(model, Config):
        return model
    if isinstance(model, dict):  # also ConfigDict
        return Config(copy.deepcopy(dict(model)))
    if model is None:
        if weights is None:
            raise ValueError('model and weights are both None: give a config (model=) or '
                             'a checkpoint that holds its config (weights=)')
        return config_from_checkpoint(weights)
    raise TypeError('model must be a config file, a model name, a Config or a dict, got '
                    f'{type(model).__name__}')
