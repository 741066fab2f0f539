"""DetectionTransformer: the flow shared by DETR-like detectors.

::

    extract_feat -> pre_transformer -> forward_encoder -> pre_decoder -> forward_decoder
                 -> bbox_head (loss / predict)

Each step returns dicts of keyword arguments for the next ones, so a subclass (DETR,
Deformable DETR, ...) only redefines the steps that differ.
"""
import copy
from abc import ABCMeta, abstractmethod
from typing import Dict, Tuple

from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import OptSampleList, SampleList
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .base import BaseDetector


@MODELS.register_module()
class DetectionTransformer(BaseDetector, metaclass=ABCMeta):
    """Base class of detection transformers.

    Args:
        backbone (dict): Backbone config.
        neck (dict, optional): Neck config (e.g. ChannelMapper to ``embed_dims``).
        encoder (dict, optional): Transformer encoder arguments, used by ``_init_layers``.
        decoder (dict, optional): Transformer decoder arguments, used by ``_init_layers``.
        bbox_head (dict, optional): Head config; it also receives ``train_cfg``/``test_cfg``.
        positional_encoding (dict, optional): Positional encoding arguments.
        num_queries (int): Number of object queries. Defaults to 100.
        train_cfg (dict, optional): Training config of the head (its assigner).
        test_cfg (dict, optional): Testing config of the head (``max_per_img``).
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 encoder: OptConfigType = None,
                 decoder: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 positional_encoding: OptConfigType = None,
                 num_queries: int = 100,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if bbox_head is None:
            raise ValueError(f'{type(self).__name__} needs a bbox_head config.')
        bbox_head = copy.deepcopy(bbox_head)
        bbox_head.update(train_cfg=train_cfg, test_cfg=test_cfg)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        # Kept as configs here; _init_layers replaces them with the built modules.
        self.encoder = encoder
        self.decoder = decoder
        self.positional_encoding = positional_encoding
        self.num_queries = num_queries

        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        self.bbox_head = MODELS.build(bbox_head)
        self._init_layers()

    @abstractmethod
    def _init_layers(self) -> None:
        """Build the layers other than backbone, neck and bbox_head."""

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone then neck.

        Args:
            inputs (Tensor): [B, 3, H, W].

        Returns:
            tuple[Tensor]: For DETR one map, [B, embed_dims, H/32, W/32].
        """
        x = self.backbone(inputs)  # DETR: ([B, 2048, H/32, W/32], )
        if self.with_neck:
            x = self.neck(x)  # DETR: ([B, 256, H/32, W/32], )
        return x

    def forward_transformer(self, img_feats: Tuple[Tensor, ...],
                            batch_data_samples: OptSampleList = None) -> Dict:
        """Run the four transformer steps and collect the head's inputs.

        Args:
            img_feats (tuple[Tensor]): Neck outputs, each [B, C, H_l, W_l].
            batch_data_samples (list[DetDataSample], optional): Metas (``img_shape``,
                ``batch_input_shape``) for the padding masks.

        Returns:
            dict: Keyword arguments of the head, at least ``hidden_states``.
        """
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, batch_data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        decoder_extra, head_inputs = self.pre_decoder(**encoder_outputs)
        decoder_inputs.update(decoder_extra)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every decoder layer (see the head)."""
        img_feats = self.extract_feat(inputs)
        head_inputs = self.forward_transformer(img_feats, data_samples)
        return self.bbox_head.loss(**head_inputs, batch_data_samples=data_samples)

    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detections as ``pred_instances`` (original-image pixels when ``rescale``)."""
        img_feats = self.extract_feat(inputs)
        head_inputs = self.forward_transformer(img_feats, data_samples)
        results = self.bbox_head.predict(**head_inputs, rescale=rescale,
                                         batch_data_samples=data_samples)
        return self.add_pred_to_datasample(data_samples, results)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> tuple:
        """Raw head outputs: class logits and boxes of every decoder layer."""
        img_feats = self.extract_feat(inputs)
        head_inputs = self.forward_transformer(img_feats, data_samples)
        return self.bbox_head.forward(**head_inputs)

    @abstractmethod
    def pre_transformer(self, img_feats: Tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Flatten features, build padding masks and positional encodings.

        Returns:
            tuple[dict, dict]: Inputs of ``forward_encoder`` and (part of) those of
            ``forward_decoder``.
        """

    @abstractmethod
    def forward_encoder(self, feat: Tensor, feat_mask: Tensor, feat_pos: Tensor,
                        **kwargs) -> Dict:
        """Encode the features; returns a dict with ``memory`` [B, N, C]."""

    @abstractmethod
    def pre_decoder(self, memory: Tensor, **kwargs) -> Tuple[Dict, Dict]:
        """Prepare the queries; returns (decoder inputs, head inputs)."""

    @abstractmethod
    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        **kwargs) -> Dict:
        """Decode the queries; returns a dict with ``hidden_states``."""
