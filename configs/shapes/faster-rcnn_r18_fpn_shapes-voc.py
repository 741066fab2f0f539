# Faster R-CNN on a Pascal VOC layout copy of the shapes dataset: the shapes config with a
# VOCDataset and VOCMetric instead of the COCO ones. Write the data first with
#   python tools/dataset_converters/shapes_to_voc.py data/shapes data/shapes_voc --generate
# (JPEGImages/, Annotations/*.xml, ImageSets/Main/{train,val}.txt).
_base_ = './faster-rcnn_r18_fpn_shapes.py'

dataset_type = 'VOCDataset'
data_root = 'data/shapes_voc/'
metainfo = dict(classes=('circle', 'rectangle', 'triangle'),
                palette=[(220, 20, 60), (0, 130, 200), (60, 180, 75)])

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageSets/Main/train.txt',
        data_prefix=dict(_delete_=True, sub_data_root=''),
        metainfo=metainfo))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageSets/Main/val.txt',
        data_prefix=dict(_delete_=True, sub_data_root=''),
        metainfo=metainfo))
test_dataloader = val_dataloader

# not VOC2007, so the area under the PR curve (VOC2010+) rather than 11 points
val_evaluator = dict(_delete_=True, type='VOCMetric', metric='mAP', eval_mode='area')
test_evaluator = val_evaluator
