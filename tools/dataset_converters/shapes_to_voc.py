"""Write a Pascal VOC layout copy of the shapes dataset (COCO json + images).

Usage::

    python tools/dataset_converters/shapes_to_voc.py data/shapes data/shapes_voc \\
        [--splits train val] [--generate]

Reads ``SRC/annotations/instances_{split}.json`` and ``SRC/{split}/*.jpg`` for each split
(``--generate`` first draws a missing split as ``ShapesDataset`` does on first use) and
writes::

    OUT/JPEGImages/{split}_{file}.jpg
    OUT/Annotations/{split}_{file}.xml
    OUT/ImageSets/Main/{split}.txt      one image id per line

Boxes are written in VOC's 1-based inclusive pixels: the COCO box ``[x, y, w, h]`` becomes
``xmin = round(x) + 1``, ``ymin = round(y) + 1``, ``xmax = round(x + w)``,
``ymax = round(y + h)``, so ``XMLDataset`` reads back ``(x, y, x + w - 1, y + h - 1)``, the
last pixel of the box, as for real VOC data. Crowd annotations become ``difficult`` objects.
``configs/shapes/faster-rcnn_r18_fpn_shapes-voc.py`` trains on the result.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import xml.etree.ElementTree as ET
from typing import Dict, List, Sequence

from mmdet_lite.apis.cli import exit_on_user_error
from mmdet_lite.apis.errors import UserInputError


def _sub(parent: ET.Element, tag: str, text=None) -> ET.Element:
    node = ET.SubElement(parent, tag)
    if text is not None:
        node.text = str(text)
    return node


def voc_xml(image: dict, annotations: List[dict], cat_names: Dict[int, str]) -> ET.ElementTree:
    """The VOC annotation tree of one COCO image entry and its annotations."""
    root = ET.Element('annotation')
    _sub(root, 'folder', 'shapes')
    _sub(root, 'filename', osp.basename(image['file_name']))
    size = _sub(root, 'size')
    _sub(size, 'width', image['width'])
    _sub(size, 'height', image['height'])
    _sub(size, 'depth', 3)
    for ann in annotations:
        x, y, w, h = ann['bbox']
        obj = _sub(root, 'object')
        _sub(obj, 'name', cat_names[ann['category_id']])
        _sub(obj, 'pose', 'Unspecified')
        _sub(obj, 'truncated', 0)
        _sub(obj, 'difficult', int(bool(ann.get('iscrowd', 0))))
        box = _sub(obj, 'bndbox')
        for tag, value in (('xmin', round(x) + 1), ('ymin', round(y) + 1),
                           ('xmax', round(x + w)), ('ymax', round(y + h))):
            _sub(box, tag, int(value))
    ET.indent(root)
    return ET.ElementTree(root)


def convert_split(src: str, out: str, split: str) -> List[str]:
    """Convert one split; returns the image ids written to ``ImageSets/Main/{split}.txt``."""
    ann_file = osp.join(src, 'annotations', f'instances_{split}.json')
    if not osp.isfile(ann_file):
        raise UserInputError(f"no shapes split '{split}' at '{ann_file}'; pass --generate to "
                             'draw it first')
    with open(ann_file, encoding='utf-8') as f:
        data = json.load(f)
    cat_names = {cat['id']: cat['name'] for cat in data['categories']}
    by_image: Dict[int, List[dict]] = {}
    for ann in data.get('annotations', []):
        by_image.setdefault(ann['image_id'], []).append(ann)
    for folder in ('JPEGImages', 'Annotations', osp.join('ImageSets', 'Main')):
        os.makedirs(osp.join(out, folder), exist_ok=True)
    img_ids = []
    for image in data['images']:
        stem, ext = osp.splitext(osp.basename(image['file_name']))
        if ext.lower() != '.jpg':
            raise UserInputError(f"image '{image['file_name']}' is not a .jpg; VOC datasets "
                                 'read {img_subdir}/{id}.jpg')
        img_id = f'{split}_{stem}'  # splits number their images alike: keep ids unique
        shutil.copyfile(osp.join(src, split, image['file_name']),
                        osp.join(out, 'JPEGImages', f'{img_id}.jpg'))
        voc_xml(image, by_image.get(image['id'], []), cat_names).write(
            osp.join(out, 'Annotations', f'{img_id}.xml'), encoding='unicode')
        img_ids.append(img_id)
    with open(osp.join(out, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
        f.write(''.join(f'{img_id}\n' for img_id in img_ids))
    return img_ids


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write a VOC-format copy of shapes data')
    parser.add_argument('src', help='shapes data root (annotations/, train/, val/)')
    parser.add_argument('out', help='output VOC folder')
    parser.add_argument('--splits', nargs='+', default=['train', 'val'])
    parser.add_argument('--generate', action='store_true',
                        help='draw missing splits first, with ShapesDataset defaults')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] = None) -> None:
    args = parse_args(argv)
    for split in args.splits:
        if args.generate:
            from mmdet_lite.datasets.shapes import (_DEFAULT_NUM_IMAGES, _DEFAULT_SEEDS,
                                                    prepare_shapes_split)
            prepare_shapes_split(
                osp.join(args.src, split),
                osp.join(args.src, 'annotations', f'instances_{split}.json'), split=split,
                num_images=_DEFAULT_NUM_IMAGES.get(split, 100),
                seed=_DEFAULT_SEEDS.get(split, 0))
        img_ids = convert_split(args.src, args.out, split)
        print(f'{split}: {len(img_ids)} images -> {args.out}')


if __name__ == '__main__':
    sys.exit(main())
