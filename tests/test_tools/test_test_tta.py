"""``tools/test.py --tta``: the detector wrapped in the config's ``tta_model``, the test
dataset on its ``tta_pipeline``, with mmdetection's defaults for configs lacking them."""
import pickle
import warnings

import pytest
import torch
from helpers_tools import TINY_CONFIG, load_script, run_tool, tiny_data_cfg_options
from mmengine.config import Config

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

FLIP_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                  'flip_direction')
MAX_PER_IMG = 3
TTA_CONFIG = f"""
_base_ = {str(TINY_CONFIG)!r}
# every box of every view, so that the merged predictions are capped by max_per_img
model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))
tta_model = dict(type='DetTTAModel',
                 tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                              max_per_img={MAX_PER_IMG}))
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(96, 96), keep_ratio=True)],
        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
        [dict(type='PackDetInputs', meta_keys={FLIP_META_KEYS!r})]])
]
"""


@pytest.fixture(scope='module')
def enable_tta():
    return load_script('test').enable_tta


def test_config_tta_model_wraps_the_detector_and_tta_pipeline_replaces_the_test_one(
        enable_tta, tmp_path):
    config = tmp_path / 'tta.py'
    config.write_text(TTA_CONFIG)
    cfg = Config.fromfile(str(config))
    detector = cfg.model.to_dict()  # a plain copy
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # nothing is defaulted
        enable_tta(cfg)
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.tta_cfg.max_per_img == MAX_PER_IMG
    assert cfg.model.module == detector
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'


def test_defaults_as_mmdetection_when_the_config_has_no_tta_settings(enable_tta):
    cfg = Config.fromfile(str(TINY_CONFIG))
    test_pipeline = cfg.test_dataloader.dataset.pipeline.copy()
    with pytest.warns(UserWarning) as record:
        enable_tta(cfg)
    messages = ' '.join(str(w.message) for w in record)
    assert 'tta_model' in messages and 'tta_pipeline' in messages
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.tta_cfg == dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
    assert cfg.model.module.type == 'FasterRCNN'
    pipeline = cfg.test_dataloader.dataset.pipeline
    # the test pipeline with its last step (the packing) replaced by the flip TTA
    assert pipeline[:-1] == test_pipeline[:-1]
    assert pipeline[-1] == dict(type='TestTimeAug', transforms=[
        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
        [dict(type='PackDetInputs', meta_keys=FLIP_META_KEYS)]])


def test_default_pipeline_comes_from_the_innermost_dataset_and_goes_on_the_outer(enable_tta):
    inner_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackDetInputs')]
    cfg = Config(dict(
        model=dict(type='FasterRCNN'),
        test_dataloader=dict(dataset=dict(type='ClassBalancedDataset', oversample_thr=0.1,
                                          dataset=dict(type='CocoDataset',
                                                       pipeline=inner_pipeline)))))
    with pytest.warns(UserWarning):
        enable_tta(cfg)
    assert cfg.tta_pipeline[0]['type'] == 'LoadImageFromFile'
    assert cfg.tta_pipeline[1]['type'] == 'TestTimeAug'
    # as in mmdetection: set on test_dataloader.dataset, the wrapper; the inner one is kept
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline
    assert [t['type'] for t in cfg.test_dataloader.dataset.dataset.pipeline] == [
        'LoadImageFromFile', 'PackDetInputs']


@pytest.mark.slow
def test_tta_run_merges_flipped_views_and_reports_bbox_map(tmp_path):
    config = tmp_path / 'tta.py'
    config.write_text(TTA_CONFIG)
    # an untrained tiny detector is enough: the run must load it and merge its boxes
    register_all_modules(init_default_scope=False)
    detector = MODELS.build(Config.fromfile(str(config)).model)
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=detector.state_dict(), meta=dict()), checkpoint)

    out = tmp_path / 'preds.pkl'
    proc = run_tool('test', [config, checkpoint, '--tta', '--out', out,
                             '--work-dir', tmp_path / 'work',
                             '--cfg-options', *tiny_data_cfg_options(tmp_path / 'data')])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr

    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 4  # the tiny config's val images
    for sample in predictions:
        # the merged sample is the first view's: the flipped one of the tta_pipeline
        assert sample['flip'] is True and sample['flip_direction'] == 'horizontal'
        pred = sample['pred_instances']
        assert len(pred['bboxes']) == MAX_PER_IMG  # DetTTAModel's cap, not the detector's 20
        assert pred['scores'].tolist() == sorted(pred['scores'].tolist(), reverse=True)
        assert pred['bboxes'].min() >= 0 and pred['bboxes'].max() <= 96
