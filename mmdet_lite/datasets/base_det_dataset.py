"""Base class of the detection datasets: mmengine's ``BaseDataset`` plus detection extras."""
import os.path as osp
import warnings
from typing import List, Mapping, Optional

from mmengine.dataset import BaseDataset
from mmengine.fileio import load
from mmengine.utils import is_abs

from ..registry import DATASETS, TRANSFORMS


@DATASETS.register_module()
class BaseDetDataset(BaseDataset):
    """Detection dataset base: proposals, storage backends and class-list checks.

    Subclasses implement ``load_data_list`` returning one dict per image with ``img_path``,
    ``img_id``, ``height``, ``width`` and ``instances`` (dicts with ``bbox`` (x1, y1, x2, y2),
    ``bbox_label``, ``ignore_flag`` and optionally ``mask``). Lazy init, ``indices`` and
    serialization of the data list come from mmengine's ``BaseDataset``.

    Args:
        *args: Positional arguments of ``mmengine.dataset.BaseDataset`` (``ann_file`` ...).
        seg_map_suffix (str): Suffix of semantic segmentation maps, used when
            ``data_prefix`` has a ``seg`` entry. Defaults to ``'.png'``.
        proposal_file (str, optional): Pickle/json of precomputed proposals, a mapping
            from ``'<image folder>/<file name>'`` to the proposals of that image. A relative
            path is joined to ``data_root``. Defaults to None.
        file_client_args (dict, optional): Deprecated name of ``backend_args`` (mmdet 2.x
            configs); used as ``backend_args`` with a warning. Defaults to None.
        backend_args (dict, optional): Arguments of the mmengine file backend that reads
            annotation and proposal files, e.g. ``dict(backend='local')``. Defaults to None.
        return_classes (bool): Whether ``get_data_info`` adds the class names under
            ``'text'`` (for text-prompted detectors). Defaults to False.
        **kwargs: Keyword arguments of ``mmengine.dataset.BaseDataset`` (``data_root``,
            ``data_prefix``, ``metainfo``, ``filter_cfg``, ``test_mode``, ``lazy_init``,
            ``serialize_data``, ``indices``, ``max_refetch``, ``pipeline``: transform configs
            are built from mmdet_lite's ``TRANSFORMS`` registry).
    """

    def __init__(self,
                 *args,
                 seg_map_suffix: str = '.png',
                 proposal_file: Optional[str] = None,
                 file_client_args: Optional[dict] = None,
                 backend_args: Optional[dict] = None,
                 return_classes: bool = False,
                 **kwargs) -> None:
        if file_client_args is not None:
            if backend_args is not None:
                raise ValueError('Give only backend_args: file_client_args is its deprecated '
                                 f'name, got both ({file_client_args} and {backend_args})')
            warnings.warn('file_client_args is deprecated, use backend_args instead',
                          DeprecationWarning)
            backend_args = file_client_args
        self.seg_map_suffix = seg_map_suffix
        self.proposal_file = proposal_file
        self.backend_args = backend_args
        self.return_classes = return_classes
        # Build transform configs from our registry: mmengine's Compose would look them up
        # in its root registry, which finds mmcv's LoadAnnotations instead of ours unless a
        # default scope is set.
        if kwargs.get('pipeline'):
            kwargs['pipeline'] = [TRANSFORMS.build(t) if isinstance(t, dict) else t
                                  for t in kwargs['pipeline']]
        super().__init__(*args, **kwargs)

    @classmethod
    def _load_metainfo(cls, metainfo: Optional[Mapping] = None) -> dict:
        """mmengine's metainfo merge, plus a check that ``classes`` is a tuple of str.

        Runs before the annotations load, so ``classes='cat'`` (a str, which would become
        three one-letter classes) fails at once with the fix.
        """
        merged = super()._load_metainfo(metainfo)
        classes = merged.get('classes')
        if isinstance(classes, str):
            raise TypeError(f"metainfo['classes'] of {cls.__name__} must be a tuple of class "
                            f"names, got the str {classes!r}; for a single class add a "
                            f"trailing comma: classes=({classes!r},)")
        if classes is not None and not all(isinstance(name, str) for name in classes):
            raise TypeError(f"metainfo['classes'] of {cls.__name__} must be a tuple of str, "
                            f'got {classes!r}')
        return merged

    def full_init(self) -> None:
        """Load, attach proposals, filter, slice and serialize the data list once.

        mmengine's ``full_init`` with one extra step: proposals from ``proposal_file`` are
        attached before filtering, while the data list still matches the proposal file.
        """
        if self._fully_initialized:
            return
        self.data_list = self.load_data_list()
        if self.proposal_file is not None:
            self.load_proposals()
        self.data_list = self.filter_data()
        if self._indices is not None:
            self.data_list = self._get_unserialized_subset(self._indices)
        if self.serialize_data:
            self.data_bytes, self.data_address = self._serialize_data()
        self._fully_initialized = True

    def load_proposals(self) -> None:
        """Attach ``data_info['proposals']`` from ``proposal_file``.

        The file maps ``'<image folder>/<file name>'`` (last two parts of ``img_path``) to
        that image's proposals, as written by mmdetection.
        """
        if not is_abs(self.proposal_file) and self.data_root:
            self.proposal_file = osp.join(self.data_root, self.proposal_file)
        try:
            proposals = load(self.proposal_file, backend_args=self.backend_args)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"proposal_file '{self.proposal_file}' does not exist") from err
        for data_info in self.data_list:
            folder, file_name = osp.split(data_info['img_path'])
            key = osp.join(osp.basename(folder), file_name)
            if key not in proposals:
                raise KeyError(f"proposal_file '{self.proposal_file}' has no entry '{key}' "
                               f"for image '{data_info['img_path']}'")
            data_info['proposals'] = proposals[key]

    def get_data_info(self, idx: int) -> dict:
        """The ``idx``-th data info (a copy), with ``'text'`` when ``return_classes``."""
        data_info = super().get_data_info(idx)
        if self.return_classes:
            data_info['text'] = self.metainfo['classes']
        return data_info

    def get_cat_ids(self, idx: int) -> List[int]:
        """Labels (``0..C-1``) of all instances of the ``idx``-th image, for class-aware
        samplers such as ``ClassBalancedDataset``."""
        return [instance['bbox_label'] for instance in self.get_data_info(idx)['instances']]
