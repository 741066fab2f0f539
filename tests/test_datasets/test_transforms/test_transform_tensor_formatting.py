"""ToTensor, ImageToTensor, Transpose and WrapFieldsToLists."""
import numpy as np
import torch
from transform_helpers import make_image

from mmdet_lite.datasets.transforms import ImageToTensor, ToTensor, Transpose, WrapFieldsToLists
from mmdet_lite.registry import TRANSFORMS


def test_to_tensor_converts_listed_keys_only():
    results = dict(a=np.arange(3), b=[1.5, 2.5], c=7, d=np.zeros(2))
    out = ToTensor(keys=['a', 'b', 'c'])(results)
    assert out is results
    assert out['a'].tolist() == [0, 1, 2] and out['a'].dtype == torch.int64
    assert out['b'].tolist() == [1.5, 2.5]
    assert out['c'].tolist() == [7]
    assert isinstance(out['d'], np.ndarray)


def test_image_to_tensor_moves_channels_first():
    img = make_image()
    out = TRANSFORMS.build(dict(type='ImageToTensor', keys=['img', 'gray']))(
        dict(img=img, gray=img[..., 0]))
    assert out['img'].shape == (3, 20, 30) and out['img'].is_contiguous()
    np.testing.assert_array_equal(out['img'].numpy(), img.transpose(2, 0, 1))
    assert out['gray'].shape == (1, 20, 30)
    np.testing.assert_array_equal(out['gray'][0].numpy(), img[..., 0])


def test_transpose_and_wrap_fields():
    out = Transpose(keys=['img'], order=(2, 0, 1))(dict(img=make_image()))
    assert out['img'].shape == (3, 20, 30)
    np.testing.assert_array_equal(out['img'][1], make_image()[..., 1])
    wrapped = WrapFieldsToLists()(dict(img=1, meta='x'))
    assert wrapped == dict(img=[1], meta=['x'])


def test_reprs():
    assert repr(ToTensor(keys=['img'])) == "ToTensor(keys=['img'])"
    assert repr(ImageToTensor(keys=('img', ))) == "ImageToTensor(keys=('img',))"
    assert repr(Transpose(keys=['img'], order=[2, 0, 1])) == (
        "Transpose(keys=['img'], order=[2, 0, 1])")
    assert repr(WrapFieldsToLists()) == 'WrapFieldsToLists()'
