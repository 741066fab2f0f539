"""A tiny hand-made LVIS v1 annotation file shared by the LVIS dataset and metric tests."""
import json
from typing import List

# Non-contiguous ids, one of each frequency group ('durian' has no annotation at all).
CATEGORIES = [
    dict(id=1, name='apple', frequency='f', synset='apple.n.01', image_count=2,
         instance_count=2),
    dict(id=2, name='banana', frequency='c', synset='banana.n.02', image_count=1,
         instance_count=1),
    dict(id=5, name='cherry', frequency='r', synset='cherry.n.03', image_count=1,
         instance_count=1),
    dict(id=7, name='durian', frequency='f', synset='durian.n.02', image_count=0,
         instance_count=0),
]
CLASSES = ('apple', 'banana', 'cherry', 'durian')
URL = 'http://images.cocodataset.org/'


def _rect(x: float, y: float, w: float, h: float) -> List[List[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _ann(ann_id: int, image_id: int, category_id: int, bbox: List[float]) -> dict:
    return dict(id=ann_id, image_id=image_id, category_id=category_id, bbox=bbox,
                area=bbox[2] * bbox[3], segmentation=_rect(*bbox))


def tiny_lvis_v1() -> dict:
    """3 images: two annotated (apple+cherry, banana+apple) and one without annotations.

    Image 1 has 'banana' verified absent and 'durian' not exhaustively annotated; image 2
    has 'cherry' and 'durian' verified absent; image 3 has 'apple' verified absent.
    """
    images = [
        dict(id=1, width=100, height=80, coco_url=URL + 'val2017/000000000001.jpg',
             neg_category_ids=[2], not_exhaustive_category_ids=[7]),
        dict(id=2, width=120, height=90, coco_url=URL + 'train2017/000000000002.jpg',
             neg_category_ids=[5, 7], not_exhaustive_category_ids=[]),
        dict(id=3, width=64, height=64, coco_url=URL + 'val2017/000000000003.jpg',
             neg_category_ids=[1], not_exhaustive_category_ids=[]),
    ]
    annotations = [
        _ann(10, 1, 1, [10, 10, 30, 20]),   # apple, small (600)
        _ann(11, 1, 5, [50, 40, 20, 20]),   # cherry, small (400)
        _ann(20, 2, 2, [5, 5, 40, 50]),     # banana, medium (2000)
        _ann(21, 2, 1, [60, 10, 50, 60]),   # apple, medium (3000)
    ]
    return dict(info={}, licenses=[], images=images, annotations=annotations,
                categories=CATEGORIES)


def write_json(data: dict, path) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return str(path)
