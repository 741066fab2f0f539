"""The C4 ResLayer shared head: mmdetection's keys, shapes, norm_eval and init_cfg."""
import pytest
import torch

from mmdet_lite.models.roi_heads import ResLayer, StandardRoIHead
from mmdet_lite.registry import MODELS


def expected_layer4_keys(prefix: str = 'layer4') -> dict:
    """ResNet-50 stage 4 from mmdetection's Bottleneck: 3 blocks, 1024 -> 2048 channels."""
    keys = {}

    def bn(name, c):
        keys.update({f'{name}.weight': (c, ), f'{name}.bias': (c, ),
                     f'{name}.running_mean': (c, ), f'{name}.running_var': (c, ),
                     f'{name}.num_batches_tracked': ()})

    for block in range(3):
        p = f'{prefix}.{block}'
        in_c = 1024 if block == 0 else 2048
        keys[f'{p}.conv1.weight'] = (512, in_c, 1, 1)
        bn(f'{p}.bn1', 512)
        keys[f'{p}.conv2.weight'] = (512, 512, 3, 3)
        bn(f'{p}.bn2', 512)
        keys[f'{p}.conv3.weight'] = (2048, 512, 1, 1)
        bn(f'{p}.bn3', 2048)
    keys[f'{prefix}.0.downsample.0.weight'] = (2048, 1024, 1, 1)
    bn(f'{prefix}.0.downsample.1', 2048)
    return keys


def test_registered_and_state_dict_is_mmdetections():
    head = MODELS.build(dict(type='ResLayer', depth=50, stage=3, stride=2, style='caffe',
                             norm_cfg=dict(type='BN', requires_grad=False)))
    assert isinstance(head, ResLayer)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == expected_layer4_keys()
    assert len(expected_layer4_keys()) == 60
    assert not any(p.requires_grad for n, p in head.named_parameters() if '.bn' in n)


def test_forward_shapes_and_caffe_stride_position():
    head = ResLayer(50, style='caffe')
    assert head(torch.rand(2, 1024, 14, 14)).shape == (2, 2048, 7, 7)
    # caffe puts the stride in the first 1x1 conv, pytorch in the 3x3.
    assert head.layer4[0].conv1.stride == (2, 2) and head.layer4[0].conv2.stride == (1, 1)
    pytorch = ResLayer(50)
    assert pytorch.layer4[0].conv1.stride == (1, 1) and pytorch.layer4[0].conv2.stride == (2, 2)
    assert ResLayer(18, stage=2).layer3[0].conv1.weight.shape == (256, 128, 3, 3)


def test_norm_eval_and_init_cfg():
    head = ResLayer(50).train()
    assert head.training and not head.layer4[0].bn1.training
    assert ResLayer(50, norm_eval=False).train().layer4[0].bn1.training
    assert head.init_cfg == [dict(type='Kaiming', layer='Conv2d'),
                             dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
    with pytest.warns(UserWarning, match='pretrained'):
        pre = ResLayer(50, pretrained='some.pth')
    assert pre.init_cfg == dict(type='Pretrained', checkpoint='some.pth')
    with pytest.raises(AssertionError, match='init_cfg and pretrained'):
        ResLayer(50, pretrained='x.pth', init_cfg=dict(type='Kaiming'))
    with pytest.raises(TypeError, match='pretrained must be a str or None'):
        ResLayer(50, pretrained=3)


def test_standard_roi_head_runs_rois_through_the_shared_head():
    roi_head = StandardRoIHead(
        shared_head=dict(type='ResLayer', depth=50, stage=3, style='caffe'),
        bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                roi_layer=dict(type='RoIAlign', output_size=14,
                                               sampling_ratio=0),
                                out_channels=1024, featmap_strides=[16]),
        bbox_head=dict(type='BBoxHead', with_avg_pool=True, roi_feat_size=7,
                       in_channels=2048, num_classes=3)).eval()
    assert roi_head.with_shared_head and roi_head.with_bbox and not roi_head.with_mask
    rois = torch.tensor([[0., 0., 0., 32., 32.], [0., 16., 16., 60., 40.]])
    x = (torch.rand(1, 1024, 4, 4), )
    with torch.no_grad():
        out = roi_head._bbox_forward(x, rois)
        assert out['bbox_feats'].shape == (2, 2048, 7, 7)
        assert out['cls_score'].shape == (2, 4) and out['bbox_pred'].shape == (2, 12)
        pooled = roi_head.shared_head(roi_head.bbox_roi_extractor(x, rois))
        assert torch.allclose(out['cls_score'], roi_head.bbox_head(pooled)[0])
