"""DETR detector: mmdetection state_dict layout, padding masks, losses, training, configs."""
import copy
from pathlib import Path

import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample
from mmengine.config import Config

from mmdet_lite.models.detectors import DETR
from mmdet_lite.registry import MODELS, TRANSFORMS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # These many small ops run up to 100x slower with 2 threads when other processes keep
    # both cores busy (threads wait on each other); one thread avoids that.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bn_keys(prefix, channels):
    return {f'{prefix}.{name}': (channels, )
            for name in ('weight', 'bias', 'running_mean', 'running_var')} | {
                f'{prefix}.num_batches_tracked': ()}


def resnet50_keys():
    """ResNet-50 (pytorch style): stem, then 3/4/6/3 bottlenecks of width 64..512 (x4 out)."""
    keys = {'backbone.conv1.weight': (64, 3, 7, 7), **bn_keys('backbone.bn1', 64)}
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for block in range(blocks):
            p = f'backbone.layer{stage}.{block}'
            keys[f'{p}.conv1.weight'] = (width, in_ch, 1, 1)
            keys[f'{p}.conv2.weight'] = (width, width, 3, 3)
            keys[f'{p}.conv3.weight'] = (width * 4, width, 1, 1)
            for i, ch in ((1, width), (2, width), (3, width * 4)):
                keys.update(bn_keys(f'{p}.bn{i}', ch))
            if block == 0:  # the first block of a stage changes channels (and stride)
                keys[f'{p}.downsample.0.weight'] = (width * 4, in_ch, 1, 1)
                keys.update(bn_keys(f'{p}.downsample.1', width * 4))
            in_ch = width * 4
    return keys


def attn_keys(prefix, dims=256):
    return {f'{prefix}.attn.in_proj_weight': (3 * dims, dims),
            f'{prefix}.attn.in_proj_bias': (3 * dims, ),
            f'{prefix}.attn.out_proj.weight': (dims, dims),
            f'{prefix}.attn.out_proj.bias': (dims, )}


def linear_keys(prefix, out_ch, in_ch):
    return {f'{prefix}.weight': (out_ch, in_ch), f'{prefix}.bias': (out_ch, )}


def ln_keys(prefix, dims=256):
    return {f'{prefix}.weight': (dims, ), f'{prefix}.bias': (dims, )}


def ffn_keys(prefix, dims=256, hidden=2048):
    return {**linear_keys(f'{prefix}.layers.0.0', hidden, dims),
            **linear_keys(f'{prefix}.layers.1', dims, hidden)}


def detr_r50_expected_keys():
    """mmdetection 3.3 `detr_r50_8xb2-150e_coco` state_dict, written from the architecture."""
    keys = resnet50_keys()
    keys['neck.convs.0.conv.weight'] = (256, 2048, 1, 1)
    keys['neck.convs.0.conv.bias'] = (256, )
    for i in range(6):
        p = f'encoder.layers.{i}'
        keys.update({**attn_keys(f'{p}.self_attn'), **ffn_keys(f'{p}.ffn'),
                     **ln_keys(f'{p}.norms.0'), **ln_keys(f'{p}.norms.1')})
    for i in range(6):
        p = f'decoder.layers.{i}'
        keys.update({**attn_keys(f'{p}.self_attn'), **attn_keys(f'{p}.cross_attn'),
                     **ffn_keys(f'{p}.ffn'), **ln_keys(f'{p}.norms.0'),
                     **ln_keys(f'{p}.norms.1'), **ln_keys(f'{p}.norms.2')})
    keys.update(ln_keys('decoder.post_norm'))
    keys['query_embedding.weight'] = (100, 256)
    keys.update({**linear_keys('bbox_head.fc_cls', 81, 256),
                 **linear_keys('bbox_head.reg_ffn.layers.0.0', 256, 256),
                 **linear_keys('bbox_head.reg_ffn.layers.1', 256, 256),
                 **linear_keys('bbox_head.fc_reg', 4, 256)})
    return keys


def tiny_detr_cfg(num_queries=10, dropout=0.0, num_layers=(2, 6)):
    """DETR with mmdetection's structure (6 decoder layers by default) but tiny widths."""
    attn = dict(embed_dims=32, num_heads=4, dropout=dropout)
    ffn = dict(embed_dims=32, feedforward_channels=64, ffn_drop=dropout)
    return copy.deepcopy(dict(
        type='DETR',
        num_queries=num_queries,
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=1),
        backbone=dict(type='ResNet', depth=18, base_channels=8, out_indices=(3, ),
                      frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True),
        neck=dict(type='ChannelMapper', in_channels=[64], kernel_size=1, out_channels=32,
                  act_cfg=None, norm_cfg=None, num_outs=1),
        encoder=dict(num_layers=num_layers[0],
                     layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
        decoder=dict(num_layers=num_layers[1],
                     layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn, ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=16, normalize=True),
        bbox_head=dict(type='DETRHead', num_classes=3, embed_dims=32),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='ClassificationCost', weight=1.),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ])),
        test_cfg=dict(max_per_img=num_queries)))


def two_images():
    return [make_det_sample([[4, 4, 30, 40], [40, 10, 60, 30]], [0, 2], img_shape=(64, 96)),
            make_det_sample([[10, 10, 50, 50]], [1], img_shape=(128, 128))]


def test_state_dict_matches_mmdetection_detr_r50():
    cfg = Config.fromfile(str(CONFIGS / 'detr' / 'detr_r50_8xb2-150e_coco.py'))
    register_all_modules()
    model = MODELS.build(cfg.model)  # no init_weights: only names and shapes matter here
    assert isinstance(model, DETR)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = detr_r50_expected_keys()
    assert len(expected) == 511
    assert sorted(set(actual) - set(expected)) == []
    assert sorted(set(expected) - set(actual)) == []
    assert actual == expected


def test_coco_config_training_recipe():
    cfg = Config.fromfile(str(CONFIGS / 'detr' / 'detr_r50_8xb2-150e_coco.py'))
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == 0.1
    assert cfg.train_cfg.max_epochs == 150
    assert cfg.param_scheduler[0].milestones == [100]
    assert cfg.model.data_preprocessor.pad_size_divisor == 1
    backbone = cfg.model.backbone
    assert (backbone.frozen_stages, backbone.norm_eval, backbone.norm_cfg.requires_grad) == \
        (1, True, False)
    assert 'init_cfg' not in backbone  # nothing to download
    register_all_modules()
    choice = TRANSFORMS.build(cfg.train_pipeline[3])
    assert type(choice).__name__ == 'RandomChoice' and len(choice.transforms) == 2


def test_loss_has_every_decoder_layer():
    model = build_detector(tiny_detr_cfg())
    data = model.data_preprocessor(make_batch(two_images()), True)
    losses = model(**data, mode='loss')
    names = ('loss_cls', 'loss_bbox', 'loss_iou')
    assert list(losses) == list(names) + [f'd{i}.{n}' for i in range(5) for n in names]
    assert all(torch.isfinite(v) for v in losses.values())


def test_tensor_mode_gives_raw_outputs_of_all_layers():
    model = build_detector(tiny_detr_cfg()).eval()
    cls_scores, bbox_preds = model(torch.randn(2, 3, 64, 64), mode='tensor')
    assert cls_scores.shape == (6, 2, 10, 4) and bbox_preds.shape == (6, 2, 10, 4)


def test_predict_boxes_in_original_image_pixels():
    model = build_detector(tiny_detr_cfg()).eval()
    sample = make_det_sample([[4, 4, 30, 40]], [0], img_shape=(64, 96), ori_shape=(32, 48),
                             scale_factor=(2.0, 2.0))
    data = model.data_preprocessor(make_batch([sample]), False)
    with torch.no_grad():
        pred = model(**data, mode='predict')[0].pred_instances
    assert pred.bboxes.shape == (10, 4) and pred.labels.dtype == torch.long
    assert (pred.bboxes[:, 0::2] <= 48).all() and (pred.bboxes[:, 1::2] <= 32).all()
    assert (pred.bboxes >= 0).all() and ((pred.labels >= 0) & (pred.labels < 3)).all()
    assert torch.all(pred.scores[:-1] >= pred.scores[1:])


def test_prediction_does_not_depend_on_batch_padding():
    # A fresh model in eval mode: BN has zero mean shift, so zero-padded inputs stay zero
    # through the backbone, as convolution's own zero padding would; the padding mask then
    # keeps the padded positions out of attention and of the positional encoding.
    model = build_detector(tiny_detr_cfg()).eval()
    pair = make_batch(two_images())
    alone = dict(inputs=pair['inputs'][:1], data_samples=two_images()[:1])
    with torch.no_grad():
        data_alone = model.data_preprocessor(alone, False)
        data_pair = model.data_preprocessor(pair, False)
        assert data_pair['data_samples'][0].batch_input_shape == (128, 128)
        raw_alone = model(**data_alone, mode='tensor')
        raw_pair = model(data_pair['inputs'], data_pair['data_samples'], mode='tensor')
        pred_alone = model(**data_alone, mode='predict')[0].pred_instances
        pred_pair = model(**data_pair, mode='predict')[0].pred_instances
    for single, batched in zip(raw_alone, raw_pair):
        torch.testing.assert_close(batched[:, :1], single, atol=1e-4, rtol=0)
    torch.testing.assert_close(pred_pair.scores, pred_alone.scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(pred_pair.bboxes, pred_alone.bboxes, atol=1e-3, rtol=0)
    assert pred_pair.labels.tolist() == pred_alone.labels.tolist()


def test_few_iterations_on_a_fixed_batch_reduce_the_loss():
    model = build_detector(tiny_detr_cfg(num_layers=(1, 2))).train()
    batch = make_batch(two_images())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def total_loss():
        data = model.data_preprocessor(batch, True)
        return sum(model(**data, mode='loss').values())

    first = total_loss()
    loss = first
    for _ in range(8):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss = total_loss()
    assert loss.item() < 0.9 * first.item()


def test_image_without_ground_truth_trains_on_no_object_only():
    model = build_detector(tiny_detr_cfg())
    data = model.data_preprocessor(make_batch([make_det_sample([], img_shape=(64, 64))]), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_bbox'].item() == 0 and losses['loss_iou'].item() == 0
    assert losses['loss_cls'].item() > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_more_ground_truths_than_queries_still_gives_finite_losses():
    # As mmdetection: the extra object is simply left without a query.
    model = build_detector(tiny_detr_cfg(num_queries=2))
    sample = make_det_sample([[0, 0, 9, 9], [20, 20, 30, 30], [40, 40, 60, 60]], [0, 1, 2])
    data = model.data_preprocessor(make_batch([sample]), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_bad_configs_and_inputs():
    cfg = tiny_detr_cfg()
    cfg['positional_encoding'] = dict(num_feats=8, normalize=True)
    with pytest.raises(ValueError, match=r'num_feats \(8\) must be half'):
        build_detector(cfg)
    model = build_detector(tiny_detr_cfg())
    sample = make_det_sample([[4, 4, 30, 40]], [0])
    del sample.batch_input_shape
    with pytest.raises(KeyError, match='batch_input_shape'):
        model.loss(torch.randn(1, 3, 64, 64), [sample])


def test_shapes_config_builds_and_trains_a_step():
    cfg = Config.fromfile(str(CONFIGS / 'shapes' / 'detr_r18_shapes.py'))
    assert cfg.train_dataloader.dataset.type == 'ShapesDataset'
    # its own 2000-image training split; the standard 100 validation images
    assert cfg.train_dataloader.dataset.num_images == 2000
    assert cfg.train_dataloader.dataset.ann_file == 'annotations/instances_train2k.json'
    assert cfg.val_dataloader.dataset.ann_file == 'annotations/instances_val.json'
    # DETR fine-tunes a backbone: here the one the README's Faster R-CNN shapes job trains
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', prefix='backbone.',
        checkpoint='work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth')
    cfg.model.backbone.init_cfg = None  # tests/test_tools/test_shapes_configs.py loads one
    model = build_detector(cfg.model).train()
    assert model.bbox_head.num_classes == 3 and model.num_queries == 10
    assert model.embed_dims == 128 and len(model.decoder.layers) == 3
    assert not hasattr(model.backbone, 'layer4')  # stride-16 features from layer3
    sample = make_det_sample([[4, 4, 30, 40]], [2], img_shape=(64, 64))
    data = model.data_preprocessor(make_batch([sample]), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_missing_configs_and_batch_mismatch_are_clear_errors():
    cfg = tiny_detr_cfg()
    cfg['decoder'] = None
    with pytest.raises(ValueError, match='DETR needs a decoder config'):
        build_detector(cfg)
    model = build_detector(tiny_detr_cfg())
    with pytest.raises(ValueError, match='got 1 data samples for a batch of 2 images'):
        model.loss(torch.randn(2, 3, 64, 64), [make_det_sample([[4, 4, 30, 40]], [0])])
