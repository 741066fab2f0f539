"""DetectionTransformer: the base of the DETR family (DETR; next Deformable DETR, DINO, ...).

One iteration, top to bottom. B images padded to [H, W]; C = embed_dims; Q = num_queries;
L = decoder layers; the neck gives n levels [B, C, h_l, w_l]; N = sum_l(h_l * w_l) feature
positions. DETR R-50: one level (the last map), N = H/32 * W/32, C = 256, Q = 100, L = 6::

    loss / predict / _forward(batch_inputs [B, 3, H, W], batch_data_samples)
    1. extract_feat          backbone + neck -> img_feats: n levels [B, C, h_l, w_l]
    2. forward_transformer(img_feats, batch_data_samples)
       a. pre_transformer    flatten_feats(levels, batch_data_samples[, level_embed]):
                               padding_masks: metas -> n x [B, h_l, w_l], True on padding
                               positional_encoding(mask) [B, C, h_l, w_l] (+ level_embed[l])
                               flattened to [B, h_l * w_l, ...], concatenated over levels
                             -> encoder inputs: feat [B, N, C], feat_mask [B, N],
                                feat_pos [B, N, C]; multi-level also spatial_shapes [n, 2],
                                level_start_index [n], valid_ratios [B, n, 2]
                             -> decoder inputs: memory_mask [B, N] (DETR: memory_pos too)
       b. forward_encoder    -> memory [B, N, C] (multi-level: + memory_mask, spatial_shapes)
       c. pre_decoder        -> decoder inputs: query [B, Q, C], memory, and query_pos
                                [B, Q, C] and/or reference_points [B, Q, 2 or 4]
                             -> head inputs: {} (two-stage: enc_outputs_class/coord;
                                DINO: dn_meta)
       d. forward_decoder    -> head inputs: hidden_states [L, B, Q, C] (+ references)
    3. loss:     bbox_head.loss(**head_inputs, batch_data_samples) -> dict of losses
       predict:  bbox_head.predict(**head_inputs, batch_data_samples, rescale)
                 -> per image InstanceData: bboxes [K, 4], scores [K], labels [K]
       _forward: bbox_head.forward(**head_inputs) -> class logits [L, B, Q, cls_out_channels],
                 boxes [L, B, Q, 4] (sigmoid cx, cy, w, h)

Each step returns dicts of keyword arguments for the next ones; the step names are
mmdetection's, so a plugin that overrides one of them keeps working.

What a new member writes (one file each):

- ``detectors/<member>.py``: a subclass registered in ``MODELS`` with ``_init_layers``
  (positional encoding, encoder, decoder, query embedding, level embedding ...), an
  ``init_weights`` extension for its own parameters, and the four steps. Its
  ``pre_transformer`` calls ``flatten_feats`` (DETR: the last level; Deformable DETR: all
  levels with ``level_embed``). Members over another member override less: DINO (over
  Deformable DETR) writes ``pre_decoder``, ``forward_decoder`` and sets
  ``pre_decoder_needs_data_samples``; Conditional DETR and DAB-DETR (over DETR) write
  ``_init_layers``, ``pre_decoder`` and ``forward_decoder``.
- ``dense_heads/<member>_head.py``: a ``DETRHead`` subclass with its branches
  (``_init_layers``), ``forward`` (e.g. taking ``references``), ``loss``/``predict`` taking
  the extra head inputs, and ``loss_by_feat`` when it adds losses (encoder, denoising).
  Matching, targets, per-layer losses and decoding are ``DETRHead``'s.
- ``layers/transformer/<member>_layers.py``: its encoder and decoder, built from
  ``transformer/bricks.py`` and the helpers of ``transformer/utils.py``.
"""
import copy
from abc import ABCMeta, abstractmethod
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import OptSampleList, SampleList
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from ..layers.transformer import nchw_to_nlc
from .base import BaseDetector


@MODELS.register_module()
class DetectionTransformer(BaseDetector, metaclass=ABCMeta):
    """Base class of detection transformers: the loop above; members write the steps.

    Args:
        backbone (dict): Backbone config.
        neck (dict, optional): Neck config (e.g. ChannelMapper to ``embed_dims``).
        encoder (dict): Transformer encoder arguments, used by ``_init_layers``.
        decoder (dict): Transformer decoder arguments, used by ``_init_layers``.
        bbox_head (dict): Head config; it also receives ``train_cfg``/``test_cfg``.
        positional_encoding (dict): Positional encoding arguments; its ``num_feats`` must be
            half of the encoder's ``embed_dims``.
        num_queries (int): Number of object queries. Defaults to 100.
        train_cfg (dict, optional): Training config of the head (its assigner).
        test_cfg (dict, optional): Testing config of the head (``max_per_img``).
        data_preprocessor (dict, optional): Batch normalization/padding.
        init_cfg (dict, optional): Initialization config.
    """

    #: DINO builds denoising queries from the ground truth in ``pre_decoder``: a member that
    #: sets this gets ``batch_data_samples`` there as a keyword argument.
    pre_decoder_needs_data_samples: bool = False

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
        configs = dict(bbox_head=bbox_head, encoder=encoder, decoder=decoder,
                       positional_encoding=positional_encoding)
        for name, cfg in configs.items():
            if cfg is None:
                raise ValueError(f'{type(self).__name__} needs a {name} config.')
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
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise ValueError(f'{type(self).__name__}: positional_encoding.num_feats '
                             f'({num_feats}) must be half of the transformer embed_dims '
                             f'({self.embed_dims}).')

    @abstractmethod
    def _init_layers(self) -> None:
        """Build ``positional_encoding``, ``encoder``, ``decoder`` (replacing their configs),
        set ``embed_dims`` and build the member's own layers (query embedding, ...)."""

    def init_weights(self) -> None:
        """Default init, then Xavier-uniform on every encoder/decoder weight matrix."""
        super().init_weights()
        for coder in (self.encoder, self.decoder):
            for param in coder.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone then neck: [B, 3, H, W] -> n levels [B, C, h_l, w_l]."""
        x = self.backbone(batch_inputs)  # DETR: ([B, 2048, H/32, W/32], )
        if self.with_neck:
            x = self.neck(x)  # DETR: ([B, 256, H/32, W/32], )
        return x

    def forward_transformer(self, img_feats: Tuple[Tensor, ...],
                            batch_data_samples: OptSampleList = None) -> Dict:
        """Run the four steps and collect the head's inputs (step 2 above).

        Args:
            img_feats (tuple[Tensor]): Neck outputs, each [B, C, h_l, w_l].
            batch_data_samples (list[DetDataSample], optional): Metas (``img_shape``,
                ``batch_input_shape``) for the padding masks; None means no padding.

        Returns:
            dict: Keyword arguments of the head, at least ``hidden_states``.
        """
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, batch_data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        if self.pre_decoder_needs_data_samples:
            encoder_outputs['batch_data_samples'] = batch_data_samples
        decoder_extra, head_inputs = self.pre_decoder(**encoder_outputs)
        decoder_inputs.update(decoder_extra)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every decoder layer (see the head)."""
        img_feats = self.extract_feat(batch_inputs)
        head_inputs = self.forward_transformer(img_feats, batch_data_samples)
        return self.bbox_head.loss(**head_inputs, batch_data_samples=batch_data_samples)

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detections as ``pred_instances`` (original-image pixels when ``rescale``)."""
        img_feats = self.extract_feat(batch_inputs)
        head_inputs = self.forward_transformer(img_feats, batch_data_samples)
        results = self.bbox_head.predict(**head_inputs, rescale=rescale,
                                         batch_data_samples=batch_data_samples)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> tuple:
        """Raw head outputs: class logits and boxes of every decoder layer."""
        img_feats = self.extract_feat(batch_inputs)
        head_inputs = self.forward_transformer(img_feats, batch_data_samples)
        return self.bbox_head.forward(**head_inputs)

    # Shared by the members' pre_transformer.

    def padding_masks(self, mlvl_feats: Sequence[Tensor],
                      batch_data_samples: OptSampleList) -> List[Tensor]:
        """True where a feature position lies in an image's padding, for every level.

        The image-size mask [B, H, W] (``batch_input_shape``, each ``img_shape`` valid) is
        resized to each level with nearest-neighbour interpolation.

        Args:
            mlvl_feats (Sequence[Tensor]): n levels [B, C, h_l, w_l] (only shapes are used).
            batch_data_samples (list[DetDataSample], optional): None means no padding.

        Returns:
            list[Tensor]: n masks [B, h_l, w_l], bool.
        """
        batch_size = mlvl_feats[0].size(0)
        if batch_data_samples is None:
            return [feat.new_zeros((batch_size, *feat.shape[-2:]), dtype=torch.bool)
                    for feat in mlvl_feats]
        if len(batch_data_samples) != batch_size:
            raise ValueError(f'{type(self).__name__}: got {len(batch_data_samples)} data '
                             f'samples for a batch of {batch_size} images.')
        if 'batch_input_shape' not in batch_data_samples[0].metainfo:
            raise KeyError(f'{type(self).__name__} needs "batch_input_shape" in the data '
                           'samples\' metainfo (set by DetDataPreprocessor) to build the '
                           'padding masks.')
        input_h, input_w = batch_data_samples[0].batch_input_shape
        masks = mlvl_feats[0].new_ones((batch_size, input_h, input_w))  # [B, H, W], 1 = pad
        for i, data_sample in enumerate(batch_data_samples):
            img_h, img_w = data_sample.img_shape[:2]
            masks[i, :img_h, :img_w] = 0
        return [  # [B, 1, h_l, w_l] -> [B, h_l, w_l]
            F.interpolate(masks[:, None], size=feat.shape[-2:])[:, 0].to(torch.bool)
            for feat in mlvl_feats
        ]

    def flatten_feats(self, mlvl_feats: Sequence[Tensor], batch_data_samples: OptSampleList,
                      level_embed: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Padding masks, positional encodings and features of all levels as one sequence.

        Args:
            mlvl_feats (Sequence[Tensor]): n levels [B, C, h_l, w_l].
            batch_data_samples (list[DetDataSample], optional): See ``padding_masks``.
            level_embed (Tensor, optional): [n, C], added to each level's encoding.

        Returns:
            dict: ``feat`` [B, N, C], ``feat_mask`` [B, N] (True on padding), ``feat_pos``
            [B, N, C], ``spatial_shapes`` [n, 2] (h_l, w_l), ``level_start_index`` [n] and
            ``valid_ratios`` [B, n, 2] (valid w, h fraction), N = sum_l(h_l * w_l).
        """
        masks = self.padding_masks(mlvl_feats, batch_data_samples)
        feats, poses, flat_masks = [], [], []
        for lvl, (feat, mask) in enumerate(zip(mlvl_feats, masks)):
            pos = nchw_to_nlc(self.positional_encoding(mask))  # [B, h_l * w_l, C]
            if level_embed is not None:
                pos = pos + level_embed[lvl].view(1, 1, -1)
            feats.append(nchw_to_nlc(feat))  # [B, h_l * w_l, C]
            poses.append(pos)
            flat_masks.append(mask.flatten(1))  # [B, h_l * w_l]
        if len(feats) == 1:  # DETR: keep the views, no copy
            feat, feat_mask, feat_pos = feats[0], flat_masks[0], poses[0]
        else:
            feat, feat_mask, feat_pos = (torch.cat(seqs, 1)
                                         for seqs in (feats, flat_masks, poses))
        spatial_shapes = torch.as_tensor([f.shape[-2:] for f in mlvl_feats], dtype=torch.long,
                                         device=feat.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1, )),
                                       spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.get_valid_ratio(m) for m in masks], 1)
        return dict(feat=feat, feat_mask=feat_mask, feat_pos=feat_pos,
                    spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                    valid_ratios=valid_ratios.to(feat.dtype))

    @staticmethod
    def get_valid_ratio(mask: Tensor) -> Tensor:
        """Valid fraction of a level's width and height, per image.

        Args:
            mask (Tensor): [B, h, w] bool, True on padding (padding is bottom/right).

        Returns:
            Tensor: [B, 2] as (valid_w / w, valid_h / h).
        """
        _, height, width = mask.shape
        valid_h = torch.sum(~mask[:, :, 0], 1)
        valid_w = torch.sum(~mask[:, 0, :], 1)
        return torch.stack([valid_w.float() / width, valid_h.float() / height], -1)

    # The four steps; the diagram above gives their inputs and outputs.

    @abstractmethod
    def pre_transformer(self, img_feats: Tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Flatten features, masks and positional encodings (``flatten_feats``).

        Returns:
            tuple[dict, dict]: Inputs of ``forward_encoder`` (``feat``, ``feat_mask``,
            ``feat_pos`` ...) and part of those of ``forward_decoder`` (``memory_mask`` ...).
        """

    @abstractmethod
    def forward_encoder(self, feat: Tensor, feat_mask: Tensor, feat_pos: Tensor,
                        **kwargs) -> Dict:
        """Encode the [B, N, C] sequence; returns a dict with ``memory`` [B, N, C]."""

    @abstractmethod
    def pre_decoder(self, memory: Tensor, **kwargs) -> Tuple[Dict, Dict]:
        """Prepare the queries; returns (decoder inputs, head inputs)."""

    @abstractmethod
    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        **kwargs) -> Dict:
        """Decode the queries; returns a dict with ``hidden_states`` [L, B, Q, C]."""
