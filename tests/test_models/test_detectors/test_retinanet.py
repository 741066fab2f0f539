"""RetinaNet: mmdetection-compatible weights and configs, the three forward modes, training."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData

from mmdet_lite.models.detectors import RetinaNet, SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
COCO_CONFIG = CONFIGS / 'retinanet' / 'retinanet_r50_fpn_1x_coco.py'
SHAPES_CONFIG = CONFIGS / 'shapes' / 'retinanet_r18_fpn_shapes.py'

# mmengine's BaseModel builds the data_preprocessor through the root registry, which finds
# DetDataPreprocessor only with mmdet_lite as the default scope.
register_all_modules()


# ----------------------------------------------------------------------------- helpers


def mmdet_retinanet_r50_shapes() -> dict:
    """Keys and shapes of mmdetection 3.3's retinanet_r50_fpn_1x_coco state_dict.

    Written from the architecture, not from our model: a ResNet-50 (bottleneck blocks
    3, 4, 6, 3; BN with running stats), an FPN on C3-C5 whose P6 conv reads C5 (2048
    channels), and a head of 4 + 4 ConvModules with 9 anchors x 80 classes.
    """
    shapes = {}

    def conv(name, c_out, c_in, k, bias=False):
        shapes[f'{name}.weight'] = (c_out, c_in, k, k)
        if bias:
            shapes[f'{name}.bias'] = (c_out, )

    def bn(name, c):
        for param in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{name}.{param}'] = (c, )
        shapes[f'{name}.num_batches_tracked'] = ()

    conv('backbone.conv1', 64, 3, 7)
    bn('backbone.bn1', 64)
    in_c = 64
    for stage, (num_blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
        for block in range(num_blocks):
            prefix = f'backbone.layer{stage}.{block}'
            conv(f'{prefix}.conv1', planes, in_c, 1)
            bn(f'{prefix}.bn1', planes)
            conv(f'{prefix}.conv2', planes, planes, 3)
            bn(f'{prefix}.bn2', planes)
            conv(f'{prefix}.conv3', planes * 4, planes, 1)
            bn(f'{prefix}.bn3', planes * 4)
            if block == 0:  # the first block changes channels (and stride): a projection
                conv(f'{prefix}.downsample.0', planes * 4, in_c, 1)
                bn(f'{prefix}.downsample.1', planes * 4)
            in_c = planes * 4

    for i, c_in in enumerate((512, 1024, 2048)):  # start_level=1: C3, C4, C5
        conv(f'neck.lateral_convs.{i}.conv', 256, c_in, 1, bias=True)
    for i, c_in in enumerate((256, 256, 256, 2048, 256)):  # P3-P5, P6 on C5, P7 on P6
        conv(f'neck.fpn_convs.{i}.conv', 256, c_in, 3, bias=True)

    for tower in ('cls_convs', 'reg_convs'):
        for i in range(4):
            conv(f'bbox_head.{tower}.{i}.conv', 256, 256, 3, bias=True)
    conv('bbox_head.retina_cls', 9 * 80, 256, 3, bias=True)
    conv('bbox_head.retina_reg', 9 * 4, 256, 3, bias=True)
    return shapes


def tiny_retinanet() -> RetinaNet:
    """RetinaNet from the COCO config, shrunk: ResNet-18 with 16 base channels, 32-channel
    neck and head, 2 convs per tower, 3 classes, every score kept at test time."""
    cfg = Config.fromfile(str(COCO_CONFIG)).model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2)
    cfg.test_cfg.score_thr = 0.0
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def make_sample(bboxes, labels, img_shape=(64, 64), ori_shape=None,
                scale_factor=(1.0, 1.0)) -> DetDataSample:
    sample = DetDataSample(metainfo=dict(
        img_shape=img_shape, ori_shape=ori_shape or img_shape, scale_factor=scale_factor))
    sample.gt_instances = InstanceData(
        bboxes=torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.as_tensor(labels, dtype=torch.long))
    return sample


def make_batch():
    """Two 64x64 images with painted boxes (so there is something to learn)."""
    images = torch.full((2, 3, 64, 64), 40, dtype=torch.uint8)
    images[0, :, 8:40, 8:40] = 220
    images[1, 1, 24:60, 4:36] = 250
    data_samples = [make_sample([[8, 8, 40, 40]], [0]), make_sample([[4, 24, 36, 60]], [2])]
    return dict(inputs=list(images), data_samples=data_samples)


def preprocess(model, data, training=False):
    data = model.data_preprocessor(copy.deepcopy(data), training)
    return data['inputs'], data['data_samples']


def total(losses: dict) -> torch.Tensor:
    return sum(sum(v) if isinstance(v, list) else v for v in losses.values())


# ----------------------------------------------------------------------------- weights / configs


def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(Config.fromfile(str(COCO_CONFIG)).model)
    expected = mmdet_retinanet_r50_shapes()
    assert len(expected) == 354
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected

    # So a checkpoint with mmdetection's layout loads strictly, values and all.
    checkpoint = {'meta': {'mmdet_version': '3.3.0'},
                  'state_dict': {k: torch.rand(shape) if shape else torch.tensor(7)
                                 for k, shape in expected.items()}}
    model.load_state_dict(checkpoint['state_dict'], strict=True)
    assert torch.equal(model.bbox_head.retina_cls.weight,
                       checkpoint['state_dict']['bbox_head.retina_cls.weight'])
    assert model.backbone.bn1.num_batches_tracked.item() == 7


def test_coco_config_has_mmdetection_values():
    cfg = Config.fromfile(str(COCO_CONFIG))
    assert cfg.model.type == 'RetinaNet'
    assert cfg.model.neck == dict(type='FPN', in_channels=[256, 512, 1024, 2048],
                                  out_channels=256, start_level=1,
                                  add_extra_convs='on_input', num_outs=5)
    head = cfg.model.bbox_head
    assert head.loss_cls == dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                                 loss_weight=1.0)
    assert head.loss_bbox == dict(type='L1Loss', loss_weight=1.0)
    assert cfg.model.train_cfg.assigner == dict(type='MaxIoUAssigner', pos_iou_thr=0.5,
                                                neg_iou_thr=0.4, min_pos_iou=0,
                                                ignore_iof_thr=-1)
    assert cfg.model.train_cfg.sampler == dict(type='PseudoSampler')
    assert cfg.model.train_cfg.allowed_border == -1 and cfg.model.train_cfg.pos_weight == -1
    assert cfg.model.test_cfg == dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                                      nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.01, momentum=0.9,
                                               weight_decay=0.0001)
    assert 'init_cfg' not in cfg.model.backbone  # nothing is downloaded
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'


def test_shapes_config_builds_a_small_model_for_3_classes():
    cfg = Config.fromfile(str(SHAPES_CONFIG))
    assert cfg.train_dataloader.dataset.type == 'ShapesDataset'
    model = MODELS.build(cfg.model)
    assert model.backbone.frozen_stages == -1 and model.backbone.norm_eval is False
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # P6 on C5 of the half-width ResNet-18 (256 channels), 64-channel neck and head
    assert shapes['neck.fpn_convs.3.conv.weight'] == (64, 256, 3, 3)
    assert shapes['bbox_head.retina_cls.weight'] == (9 * 3, 64, 3, 3)
    assert shapes['bbox_head.retina_reg.weight'] == (9 * 4, 64, 3, 3)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'


def test_bbox_head_is_required():
    cfg = Config.fromfile(str(COCO_CONFIG)).model
    cfg.bbox_head = None
    with pytest.raises(ValueError, match='needs a bbox_head config'):
        MODELS.build(cfg)


def test_retinanet_is_a_single_stage_detector_with_head_cfgs():
    model = tiny_retinanet()
    assert isinstance(model, SingleStageDetector)
    # A single-stage config hands train_cfg/test_cfg to the head whole.
    assert model.bbox_head.train_cfg.assigner.pos_iou_thr == 0.5
    assert model.bbox_head.test_cfg.max_per_img == 100


# ----------------------------------------------------------------------------- forward modes


def test_tensor_mode_returns_raw_maps_of_p3_to_p7():
    model = tiny_retinanet()
    inputs, _ = preprocess(model, make_batch())
    cls_scores, bbox_preds = model(inputs, mode='tensor')
    sizes = [8, 4, 2, 1, 1]  # 64 px input at strides 8..128 (P6/P7 round up)
    assert [tuple(c.shape) for c in cls_scores] == [(2, 27, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 36, s, s) for s in sizes]


def test_loss_mode_gives_focal_and_l1_losses_per_level():
    model = tiny_retinanet()
    inputs, samples = preprocess(model, make_batch(), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert all(len(v) == 5 and all(torch.isfinite(x) for x in v) for v in losses.values())
    # At init every class has probability ~0.01, so the focal loss of the ~2 x 756 x 3
    # negatives is tiny and normalised by the few positives: of order 1, not of order 1000.
    assert 0.1 < sum(losses['loss_cls']).item() < 10


def test_invalid_mode_is_rejected():
    model = tiny_retinanet()
    with pytest.raises(ValueError, match="Invalid mode 'train'"):
        model(torch.zeros(1, 3, 64, 64), mode='train')


def test_predict_returns_boxes_in_original_image_pixels():
    model = tiny_retinanet().eval()
    # The 64x64 input was resized from a 32x48 (h, w) original: scale (w 4/3, h 2).
    data = make_batch()
    for sample in data['data_samples']:
        sample.set_metainfo(dict(ori_shape=(32, 48), scale_factor=(64 / 48, 2.0)))
    inputs, samples = preprocess(model, data)
    with torch.no_grad():
        resized = [s.pred_instances.clone() for s in model.predict(
            inputs, copy.deepcopy(samples), rescale=False)]
        results = model(inputs, samples, mode='predict')

    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    for result, in_input in zip(results, resized):
        pred = result.pred_instances
        assert 0 < len(pred) <= 100
        assert pred.bboxes.shape == (len(pred), 4) and pred.labels.dtype == torch.long
        assert pred.scores.shape == (len(pred), )
        assert torch.all(pred.labels < 3)
        # Same detections, divided by the scale factor.
        expected = in_input.bboxes / torch.tensor([64 / 48, 2.0, 64 / 48, 2.0])
        assert torch.allclose(pred.bboxes, expected, atol=1e-4)
        assert pred.bboxes[:, [0, 2]].max() <= 48 + 1e-4
        assert pred.bboxes[:, [1, 3]].max() <= 32 + 1e-4


# ----------------------------------------------------------------------------- training


def test_a_few_sgd_steps_reduce_the_loss():
    model = tiny_retinanet()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9))
    data = make_batch()
    # train_step computes the loss before updating, so the first one is the initial loss.
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
              for _ in range(10)]
    assert all(torch.isfinite(torch.tensor(losses)))
    inputs, samples = preprocess(model, data, training=True)
    with torch.no_grad():
        after = total(model(inputs, samples, mode='loss')).item()
    assert after < 0.9 * losses[0]


def test_no_gt_and_degenerate_boxes_train_without_nan():
    model = tiny_retinanet()
    data = make_batch()
    data['data_samples'] = [
        make_sample(torch.zeros(0, 4), []),  # an image without objects
        make_sample([[10, 10, 10, 40], [30, 30, 30, 30], [0, 0, 63, 63]], [0, 1, 2]),
    ]
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    log_vars = model.train_step(data, optim_wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert torch.isfinite(log_vars['loss_bbox']) and torch.isfinite(log_vars['loss_cls'])
    assert all(torch.isfinite(p).all() for p in model.parameters())
