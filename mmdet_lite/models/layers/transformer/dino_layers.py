"""DINO's layers: the contrastive denoising (CDN) query generator and its decoder.

What DINO changes from Deformable DETR's layers:

- ``CdnQueryGenerator`` (new): in training, noisy copies of the ground truth become extra
  decoder queries ("denoising queries") that learn to reconstruct their box and class. Each
  group holds a positive copy of every ground truth (small box noise: reconstruct it) and a
  negative copy (larger noise: predict "no object"). An attention mask keeps the groups and
  the matching queries from seeing each other's answers.
- ``DinoTransformerDecoder``: query positions come from the current reference boxes
  (``ref_point_head`` on their sine encoding) and every layer's refined box is returned
  before it is detached ("look forward twice": the loss of layer i also reaches the box
  prediction of layer i - 1).

Shapes: B images, G ground truths in the batch (``num_target_total``), M the most in one
image (``max_num_target``), K denoising groups, D = 2 * M * K denoising queries,
Q matching queries, C = ``embed_dims``.
"""
import warnings
from typing import Dict, Optional, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import bbox_xyxy_to_cxcywh, get_box_tensor
from mmdet_lite.utils import OptConfigType
from .deformable_detr_layers import DeformableDetrTransformerDecoder
from .utils import MLP, coordinate_to_encoding, inverse_sigmoid


class DinoTransformerDecoder(DeformableDetrTransformerDecoder):
    """DINO's decoder: query positions from the reference boxes, look-forward-twice.

    Arguments are those of ``DeformableDetrTransformerDecoder`` (``post_norm_cfg`` must be
    None); it adds ``ref_point_head`` (``MLP`` 2C -> C -> C) and the output ``norm``
    (LayerNorm, applied to every returned layer output).
    """

    def _init_layers(self) -> None:
        """The deformable layers, ``ref_point_head`` and ``norm``."""
        super()._init_layers()
        self.ref_point_head = MLP(self.embed_dims * 2, self.embed_dims, self.embed_dims, 2)
        self.norm = nn.LayerNorm(self.embed_dims)

    def forward(self, query: Tensor, value: Tensor, key_padding_mask: Tensor,
                self_attn_mask: Optional[Tensor], reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor, valid_ratios: Tensor,
                reg_branches: Optional[nn.ModuleList], **kwargs) -> Tuple[Tensor, Tensor]:
        """Decode the (denoising and matching) queries, refining their boxes per layer.

        Each layer's query positions are ``ref_point_head`` of the sine encoding of its
        input boxes. Layer i's box branch turns its output into logit offsets of the boxes
        (``inverse_sigmoid`` with eps 1e-3); the refined boxes are returned undetached
        ("look forward twice": layer i + 1's loss reaches layer i's box branch through the
        head) and passed on detached.

        Args:
            query (Tensor): [B, Q, C] (training: D denoising queries, then the matching).
            value (Tensor): The memory, [B, N, C].
            key_padding_mask (Tensor): [B, N] bool, True on padded memory.
            self_attn_mask (Tensor, optional): [Q, Q] bool, True where a query may not
                attend another (``CdnQueryGenerator.generate_dn_mask``); None in testing.
            reference_points (Tensor): [B, Q, 4] initial boxes, normalized (cx, cy, w, h).
            spatial_shapes (Tensor): [n, 2] (h_l, w_l).
            level_start_index (Tensor): [n].
            valid_ratios (Tensor): [B, n, 2].
            reg_branches (nn.ModuleList, optional): The head's box branches, one per layer.
            **kwargs: Passed to every layer.

        Returns:
            tuple[Tensor, Tensor]: With ``return_intermediate``: the normalized outputs
            [L, B, Q, C] and the references [L + 1, B, Q, 4] (the initial boxes, then each
            layer's refined ones). Otherwise the last layer's output [B, Q, C] (not
            normalized) and its (detached) references [B, Q, 4].
        """
        intermediate = []
        intermediate_reference_points = [reference_points]
        for layer_id, layer in enumerate(self.layers):
            level_references = self._level_references(reference_points, valid_ratios)
            # A box of 4 coordinates encodes to 4 * (C / 2) = 2C channels.
            query_sine_embed = coordinate_to_encoding(level_references[:, :, 0, :],
                                                      num_feats=self.embed_dims // 2)
            query_pos = self.ref_point_head(query_sine_embed)  # [B, Q, C]
            query = layer(query, query_pos=query_pos, value=value,
                          key_padding_mask=key_padding_mask, self_attn_mask=self_attn_mask,
                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                          valid_ratios=valid_ratios, reference_points=level_references,
                          **kwargs)
            new_reference_points = reference_points
            if reg_branches is not None:
                if reference_points.size(-1) != 4:
                    raise AssertionError('DinoTransformerDecoder: box refinement needs '
                                         'reference boxes [B, Q, 4], got '
                                         f'{tuple(reference_points.shape)}.')
                new_reference_points = (reg_branches[layer_id](query) + inverse_sigmoid(
                    reference_points, eps=1e-3)).sigmoid()
                reference_points = new_reference_points.detach()
            if self.return_intermediate:
                intermediate.append(self.norm(query))
                intermediate_reference_points.append(new_reference_points)
        if self.return_intermediate:
            return torch.stack(intermediate), torch.stack(intermediate_reference_points)
        return query, reference_points


class CdnQueryGenerator(BaseModule):
    """Builds DINO's contrastive denoising queries from a batch's ground truth.

    Every ground truth is copied into ``2 * num_groups`` queries: per group, a positive
    copy (corners moved by less than ``box_noise_scale / 2`` of the box size) and a
    negative copy (moved by between ``box_noise_scale / 2`` and ``box_noise_scale`` of it).
    Their content is the embedding of a label that is replaced by a random class with
    probability ``label_noise_scale / 2``; their reference box is the noisy box.

    Args:
        num_classes (int): Number of object classes (rows of ``label_embedding``).
        embed_dims (int): Channels of the label queries.
        num_matching_queries (int): Number of matching (object) queries, which follow the
            denoising queries in the decoder; sizes the attention mask.
        label_noise_scale (float): Twice the probability that a label is replaced by a
            random class. Defaults to 0.5.
        box_noise_scale (float): Corner noise in units of half the box width/height.
            Defaults to 1.0.
        group_cfg (dict, optional): ``dynamic`` (bool, default True): the number of groups
            is ``num_dn_queries // max_num_target`` (at least 1), so a batch has about
            ``num_dn_queries`` positive queries whatever its ground-truth count
            (``num_dn_queries`` defaults to 100, with a warning); when False, always
            ``num_groups`` groups (required).
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int,
                 num_matching_queries: int,
                 label_noise_scale: float = 0.5,
                 box_noise_scale: float = 1.0,
                 group_cfg: OptConfigType = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_matching_queries = num_matching_queries
        self.label_noise_scale = label_noise_scale
        self.box_noise_scale = box_noise_scale

        group_cfg = {} if group_cfg is None else group_cfg
        self.dynamic_dn_groups = group_cfg.get('dynamic', True)
        if self.dynamic_dn_groups:
            if 'num_dn_queries' not in group_cfg:
                warnings.warn('CdnQueryGenerator: group_cfg.num_dn_queries should be set '
                              'with dynamic dn groups; using 100.')
            self.num_dn_queries = group_cfg.get('num_dn_queries', 100)
            if not isinstance(self.num_dn_queries, int):
                raise AssertionError('CdnQueryGenerator: group_cfg.num_dn_queries must be '
                                     f'an int, got {self.num_dn_queries!r} '
                                     f'({type(self.num_dn_queries).__name__}).')
        else:
            if 'num_groups' not in group_cfg:
                raise AssertionError('CdnQueryGenerator: group_cfg.num_groups must be set '
                                     'with static dn groups (dynamic=False).')
            self.num_groups = group_cfg['num_groups']
            if not isinstance(self.num_groups, int):
                raise AssertionError('CdnQueryGenerator: group_cfg.num_groups must be an '
                                     f'int, got {self.num_groups!r} '
                                     f'({type(self.num_groups).__name__}).')
        # One row per class: the official DINO keeps an extra "unknown" row it never uses.
        self.label_embedding = nn.Embedding(self.num_classes, self.embed_dims)

    def forward(self, batch_data_samples: SampleList) -> Tuple[Tensor, Tensor, Tensor, Dict]:
        """Denoising queries, their attention mask and ``dn_meta`` for one batch.

        Args:
            batch_data_samples (list[DetDataSample]): ``gt_instances.bboxes`` [G_i, 4]
                (x1, y1, x2, y2) pixels (tensor or box object), ``gt_instances.labels``
                [G_i] and ``img_shape`` (h, w) of each image.

        Returns:
            tuple: ``dn_label_query`` [B, D, C]; ``dn_bbox_query`` [B, D, 4], the
            inverse-sigmoid of the noisy normalized (cx, cy, w, h) boxes; ``attn_mask``
            [D + Q, D + Q] bool (True: cannot attend); ``dn_meta``, a dict with
            ``num_denoising_queries`` (D) and ``num_denoising_groups`` (K). Padding slots
            of images with fewer than M ground truths are zero queries.
        """
        gt_labels_list, gt_bboxes_list = [], []
        for sample in batch_data_samples:
            img_h, img_w = sample.img_shape[:2]
            bboxes = get_box_tensor(sample.gt_instances.bboxes)
            factor = bboxes.new_tensor([img_w, img_h, img_w, img_h]).unsqueeze(0)
            gt_bboxes_list.append(bboxes / factor)  # normalized (x1, y1, x2, y2)
            gt_labels_list.append(sample.gt_instances.labels)
        gt_labels = torch.cat(gt_labels_list)  # [G]
        gt_bboxes = torch.cat(gt_bboxes_list)  # [G, 4]

        max_num_target = max(len(bboxes) for bboxes in gt_bboxes_list)
        num_groups = self.get_num_groups(max_num_target)

        dn_label_query = self.generate_dn_label_query(gt_labels, num_groups)  # [2KG, C]
        dn_bbox_query = self.generate_dn_bbox_query(gt_bboxes, num_groups)  # [2KG, 4]
        batch_idx = torch.cat([
            torch.full_like(labels.long(), i) for i, labels in enumerate(gt_labels_list)
        ])  # [G]: the image of each ground truth
        dn_label_query, dn_bbox_query = self.collate_dn_queries(
            dn_label_query, dn_bbox_query, batch_idx, len(batch_data_samples), num_groups)
        attn_mask = self.generate_dn_mask(max_num_target, num_groups,
                                          device=dn_label_query.device)
        dn_meta = dict(num_denoising_queries=int(max_num_target * 2 * num_groups),
                       num_denoising_groups=num_groups)
        return dn_label_query, dn_bbox_query, attn_mask, dn_meta

    def get_num_groups(self, max_num_target: int = None) -> int:
        """Number of denoising groups K of a batch (shared by its images).

        Args:
            max_num_target (int, optional): M, the most ground truths in one image; needed
                with dynamic groups.

        Returns:
            int: ``num_dn_queries // M`` (1 when M is 0) with dynamic groups, else
            ``num_groups``; at least 1.
        """
        if self.dynamic_dn_groups:
            if max_num_target is None:
                raise AssertionError('CdnQueryGenerator.get_num_groups: max_num_target must '
                                     'be given with dynamic dn groups.')
            num_groups = 1 if max_num_target == 0 else self.num_dn_queries // max_num_target
        else:
            num_groups = self.num_groups
        return int(max(num_groups, 1))

    def generate_dn_label_query(self, gt_labels: Tensor, num_groups: int) -> Tensor:
        """Label embeddings of the 2K copies of every ground truth, some labels randomized.

        Each copy draws ``p ~ U[0, 1)``; where ``p < label_noise_scale / 2`` its label is
        replaced by a class drawn uniformly from ``[0, num_classes)`` (possibly the same
        one, so fewer labels end up wrong than chosen).

        Args:
            gt_labels (Tensor): [G] labels of the batch, images concatenated.
            num_groups (int): K.

        Returns:
            Tensor: [2 * K * G, C]; copy j of ground truth g is row ``j * G + g``.
        """
        if not self.label_noise_scale > 0:
            raise AssertionError('CdnQueryGenerator: label_noise_scale must be > 0, got '
                                 f'{self.label_noise_scale}.')
        labels = gt_labels.repeat(2 * num_groups, 1).view(-1)  # [2KG]
        draws = torch.rand_like(labels.float())
        chosen = torch.nonzero(draws < (self.label_noise_scale * 0.5)).view(-1)
        new_labels = torch.randint_like(chosen, 0, self.num_classes)
        noisy_labels = labels.scatter(0, chosen, new_labels)
        return self.label_embedding(noisy_labels)

    def generate_dn_bbox_query(self, gt_bboxes: Tensor, num_groups: int) -> Tensor:
        """Noisy boxes of the 2K copies of every ground truth, as reference logits.

        Every corner coordinate moves by ``r * s * box_noise_scale / 2`` with ``s`` the box
        width (x) or height (y), a random sign and ``r ~ U[0, 1)`` for the positive copy,
        ``r ~ U[1, 2)`` for the negative one; the result is clamped to [0, 1].

        Args:
            gt_bboxes (Tensor): [G, 4] normalized (x1, y1, x2, y2).
            num_groups (int): K.

        Returns:
            Tensor: [2 * K * G, 4], ``inverse_sigmoid`` (eps 1e-3) of the noisy normalized
            (cx, cy, w, h). Rows ``2kG .. 2kG + G - 1`` are group k's positives, the next G
            rows its negatives.
        """
        if not self.box_noise_scale > 0:
            raise AssertionError('CdnQueryGenerator: box_noise_scale must be > 0, got '
                                 f'{self.box_noise_scale}.')
        num_gts = len(gt_bboxes)
        bboxes = gt_bboxes.repeat(2 * num_groups, 1)  # [2KG, 4]
        group_starts = 2 * num_gts * torch.arange(num_groups, device=gt_bboxes.device)
        positive_idx = (group_starts[:, None] +
                        torch.arange(num_gts, device=gt_bboxes.device)).flatten()
        negative_idx = positive_idx + num_gts

        sign = torch.randint_like(bboxes, low=0, high=2, dtype=torch.float32) * 2.0 - 1.0
        magnitude = torch.rand_like(bboxes)  # positives: [0, 1)
        magnitude[negative_idx] += 1.0  # negatives: [1, 2)
        noise = magnitude * sign

        whwh = bbox_xyxy_to_cxcywh(bboxes)[:, 2:].repeat(1, 2)  # (w, h, w, h)
        noisy = bboxes + noise * whwh * self.box_noise_scale / 2
        noisy = bbox_xyxy_to_cxcywh(noisy.clamp(min=0.0, max=1.0))
        return inverse_sigmoid(noisy, eps=1e-3)

    def collate_dn_queries(self, input_label_query: Tensor, input_bbox_query: Tensor,
                           batch_idx: Tensor, batch_size: int,
                           num_groups: int) -> Tuple[Tensor, Tensor]:
        """Put each image's denoising queries into its own row, padded to M per copy.

        Copy j (j < 2K) of an image's i-th ground truth goes to slot ``j * M + i``; slots of
        missing ground truths stay zero.

        Args:
            input_label_query (Tensor): [2 * K * G, C] (copy-major, see the generators).
            input_bbox_query (Tensor): [2 * K * G, 4].
            batch_idx (Tensor): [G] image index of each ground truth (images in order).
            batch_size (int): B.
            num_groups (int): K.

        Returns:
            tuple[Tensor, Tensor]: Label queries [B, D, C] and box queries [B, D, 4].
        """
        device = input_label_query.device
        num_target_list = [int((batch_idx == i).sum()) for i in range(batch_size)]
        max_num_target = max(num_target_list)
        num_denoising_queries = int(max_num_target * 2 * num_groups)

        slot_in_copy = torch.cat(
            [torch.arange(num, device=device) for num in num_target_list])  # [G]
        slots = torch.cat([slot_in_copy + max_num_target * j
                           for j in range(2 * num_groups)]).long()  # [2KG]
        images = batch_idx.repeat(2 * num_groups, 1).view(-1)  # [2KG]

        label_query = input_label_query.new_zeros(batch_size, num_denoising_queries,
                                                  self.embed_dims)
        bbox_query = input_bbox_query.new_zeros(batch_size, num_denoising_queries, 4)
        label_query[images, slots] = input_label_query
        bbox_query[images, slots] = input_bbox_query
        return label_query, bbox_query

    def generate_dn_mask(self, max_num_target: int, num_groups: int,
                         device: Union[torch.device, str]) -> Tensor:
        """Self-attention mask of the decoder: which queries may not see which.

        The D denoising queries come first, then the Q matching queries. A denoising group
        (2M consecutive queries) sees only itself and the matching queries; the matching
        queries see only each other, so neither learns from another group's ground truth.

        Args:
            max_num_target (int): M.
            num_groups (int): K.
            device (torch.device | str): Device of the mask.

        Returns:
            Tensor: [D + Q, D + Q] bool, True where row query cannot attend to column query.
        """
        num_denoising_queries = int(max_num_target * 2 * num_groups)
        num_queries_total = num_denoising_queries + self.num_matching_queries
        attn_mask = torch.zeros(num_queries_total, num_queries_total, device=device,
                                dtype=torch.bool)
        attn_mask[num_denoising_queries:, :num_denoising_queries] = True
        group_size = 2 * max_num_target
        for i in range(num_groups):
            rows = slice(group_size * i, group_size * (i + 1))
            attn_mask[rows, :group_size * i] = True
            attn_mask[rows, group_size * (i + 1):num_denoising_queries] = True
        return attn_mask
