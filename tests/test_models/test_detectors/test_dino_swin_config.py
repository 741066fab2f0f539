"""configs/dino/dino-5scale_swin-l_8xb2-12e_coco.py: mmdetection 3.3's Swin-L DINO settings,
its state_dict (Swin-L backbone + a 5-level DINO) and a forward pass."""
from pathlib import Path

import pytest
import torch
from helpers import make_batch, make_det_sample
from helpers_swin_keys import swin_expected_keys
from mmengine.config import Config

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

DINO_CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'dino'
SWIN_L = DINO_CONFIGS / 'dino-5scale_swin-l_8xb2-12e_coco.py'
R50 = DINO_CONFIGS / 'dino-4scale_r50_8xb2-12e_coco.py'


def test_config_values_are_mmdetection_swin_l_5scale():
    cfg = Config.fromfile(str(SWIN_L))
    backbone = cfg.model.backbone
    assert 'depth' not in backbone and 'norm_eval' not in backbone  # _delete_ dropped ResNet's
    assert backbone.type == 'SwinTransformer' and backbone.pretrain_img_size == 384
    assert (backbone.embed_dims, backbone.window_size, backbone.mlp_ratio) == (192, 12, 4)
    assert list(backbone.depths) == [2, 2, 18, 2]
    assert list(backbone.num_heads) == [6, 12, 24, 48]
    assert backbone.drop_path_rate == 0.2 and backbone.with_cp and backbone.convert_weights
    assert tuple(backbone.out_indices) == (0, 1, 2, 3) and 'init_cfg' not in backbone
    assert cfg.model.num_feature_levels == 5
    assert cfg.model.neck.in_channels == [192, 384, 768, 1536] and cfg.model.neck.num_outs == 5
    assert cfg.model.encoder.layer_cfg.self_attn_cfg.num_levels == 5
    assert cfg.model.decoder.layer_cfg.cross_attn_cfg.num_levels == 5
    assert cfg.max_epochs == 12 and cfg.model.num_queries == 900  # from the 4-scale base


@pytest.mark.slow
def test_state_dict_is_swin_l_plus_a_5_level_dino_and_forward_runs():
    register_all_modules()
    model = MODELS.build(Config.fromfile(str(SWIN_L)).model)
    r50 = MODELS.build(Config.fromfile(str(R50)).model)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    backbone = {k[len('backbone.'):]: v for k, v in actual.items() if k.startswith('backbone.')}
    assert backbone == swin_expected_keys(192, (2, 2, 18, 2), (6, 12, 24, 48), 12,
                                          (0, 1, 2, 3))

    # The rest is the 4-scale DINO with a 5th level: deformable attention has
    # heads (8) x levels x points (4) weights and x 2 offsets; the neck maps 4 Swin stages.
    expected = {k: v for k, v in r50.state_dict().items() if not k.startswith('backbone.')}
    expected = {k: tuple(v.shape) for k, v in expected.items()}
    for k in expected:
        if k.endswith(('attention_weights.weight', 'sampling_offsets.weight')):
            rows = 8 * 5 * 4 * (2 if 'sampling_offsets' in k else 1)
            expected[k] = (rows, 256)
        elif k.endswith(('attention_weights.bias', 'sampling_offsets.bias')):
            expected[k] = (8 * 5 * 4 * (2 if 'sampling_offsets' in k else 1), )
    expected['level_embed'] = (5, 256)
    for i, channels in enumerate((192, 384, 768, 1536)):
        expected[f'neck.convs.{i}.conv.weight'] = (256, channels, 1, 1)
    expected['neck.convs.3.gn.weight'] = expected['neck.convs.3.gn.bias'] = (256, )
    expected['neck.extra_convs.0.conv.weight'] = (256, 1536, 3, 3)
    rest = {k: v for k, v in actual.items() if not k.startswith('backbone.')}
    assert rest == expected

    model.eval()
    # DINO selects 900 encoder tokens: the image needs at least that many (here 1280 + ...).
    sample = make_det_sample([[4, 4, 30, 40]], [0], img_shape=(128, 150))
    data = model.data_preprocessor(make_batch([sample]), False)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        pred = model(**data, mode='predict')[0].pred_instances
    # Swin pads to ceil at every stage (150 / 4 -> 38); the neck adds a stride-2 level.
    assert [tuple(f.shape) for f in feats] == [(1, 256, 32, 38), (1, 256, 16, 19),
                                               (1, 256, 8, 10), (1, 256, 4, 5), (1, 256, 2, 3)]
    assert pred.bboxes.shape == (300, 4)
