"""BatchSyncRandomResize: multi-scale training at batch level, the same size on every rank."""
import random
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.dist import barrier, broadcast, get_dist_info
from mmengine.logging import MessageHub
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

from .batch_augment_utils import scale_sample_boxes_


@MODELS.register_module()
class BatchSyncRandomResize(nn.Module):
    """Resize whole batches to a random size that changes every ``interval`` iterations.

    The first batch keeps its size. After every iteration ``i`` with
    ``(i + 1) % interval == 0`` (the Runner's ``iter`` in the current ``MessageHub``), rank 0
    draws ``k`` uniformly in ``random_size_range / size_divisor`` (rounded) and the next size
    is ``(size_divisor * k, size_divisor * int(k * W / H))`` for the current batch's H and W;
    it is broadcast so that every rank of a distributed run uses the same size. A batch of
    another size is resized with bilinear interpolation, and its samples' ``img_shape``,
    ``pad_shape`` (scaled, truncated to ints), ``batch_input_shape`` and the boxes of
    ``gt_instances`` and ``ignored_instances`` (tensors or box objects) follow. As in
    mmdetection, masks, semantic maps and ``scale_factor`` are left as they are.

    Args:
        random_size_range (tuple[int, int]): Range of the random height, in pixels.
        interval (int): Draw a new size every ``interval`` iterations. Defaults to 10.
        size_divisor (int): The drawn sizes are multiples of it. Defaults to 32.
    """

    def __init__(self,
                 random_size_range: Tuple[int, int],
                 interval: int = 10,
                 size_divisor: int = 32) -> None:
        super().__init__()
        # Read once, as the distributed setup is done before models are built.
        self.rank, self.world_size = get_dist_info()
        self._input_size: Optional[Tuple[int, int]] = None
        self._random_size_range = (round(random_size_range[0] / size_divisor),
                                   round(random_size_range[1] / size_divisor))
        self._interval = interval
        self._size_divisor = size_divisor
        self._calls = 0  # the iteration count outside a Runner (no 'iter' in the hub)

    def forward(
        self, inputs: Tensor, data_samples: Optional[List[DetDataSample]]
    ) -> Tuple[Tensor, Optional[List[DetDataSample]]]:
        """Resize the batch to the current size, then maybe draw the next one.

        Args:
            inputs (Tensor): [B, C, H, W] batch.
            data_samples (list[DetDataSample], optional): B samples, edited in place.

        Returns:
            tuple: ``inputs`` [B, C, h, w] at the current size and ``data_samples``.
        """
        h, w = inputs.shape[-2:]
        if self._input_size is None:
            self._input_size = (h, w)
        scale_y = self._input_size[0] / h
        scale_x = self._input_size[1] / w
        if scale_x != 1 or scale_y != 1:
            inputs = F.interpolate(inputs, size=self._input_size, mode='bilinear',
                                   align_corners=False)
            for data_sample in data_samples or []:
                img_h, img_w = data_sample.img_shape[:2]
                pad_h, pad_w = data_sample.pad_shape[:2]
                data_sample.set_metainfo({
                    'img_shape': (int(img_h * scale_y), int(img_w * scale_x)),
                    'pad_shape': (int(pad_h * scale_y), int(pad_w * scale_x)),
                    'batch_input_shape': self._input_size
                })
                scale_sample_boxes_(data_sample, scale_x, scale_y)

        if (self._current_iter() + 1) % self._interval == 0:
            self._input_size = self._get_random_size(aspect_ratio=float(w / h),
                                                     device=inputs.device)
        self._calls += 1
        return inputs, data_samples

    def _current_iter(self) -> int:
        message_hub = MessageHub.get_current_instance()
        iteration = message_hub.get_info('iter')
        return self._calls if iteration is None else iteration

    def _get_random_size(self, aspect_ratio: float,
                         device: torch.device) -> Tuple[int, int]:
        """Draw (h, w) on rank 0 and broadcast it, so that all ranks resize alike."""
        size = torch.zeros(2, dtype=torch.long, device=device)
        if self.rank == 0:
            k = random.randint(*self._random_size_range)
            size[0] = self._size_divisor * k
            size[1] = self._size_divisor * int(aspect_ratio * k)
        barrier()
        broadcast(size, 0)
        return int(size[0].item()), int(size[1].item())
