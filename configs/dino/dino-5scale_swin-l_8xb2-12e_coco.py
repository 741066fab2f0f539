# DINO with a Swin-L backbone (window 12, ImageNet-22k 384 pretraining) and 5 feature levels:
# the four Swin stages plus a stride-64 level from the neck; 12 epochs on COCO (mmdetection
# 3.x values). mmdetection starts from the official Swin-L checkpoint
#   https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_large_patch4_window12_384_22k.pth
# mmdet_lite downloads nothing, so the backbone has no init_cfg (random init). Download that
# file yourself and point the backbone at it; convert_weights=True maps its official key
# layout to this backbone's:
#     model = dict(backbone=dict(init_cfg=dict(
#         type='Pretrained', checkpoint='/path/swin_large_patch4_window12_384_22k.pth')))
_base_ = './dino-4scale_r50_8xb2-12e_coco.py'

num_levels = 5
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        pretrain_img_size=384,
        embed_dims=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        window_size=12,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),  # only the stages the neck uses: others get no gradient
        with_cp=True,
        convert_weights=True),  # no init_cfg: see the note above
    neck=dict(in_channels=[192, 384, 768, 1536], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))))
