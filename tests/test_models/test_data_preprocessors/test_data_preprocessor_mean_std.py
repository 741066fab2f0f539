"""DetDataPreprocessor's mean/std as mmdetection 3.3 (mmengine's ImgDataPreprocessor): both
or neither, 1 or 3 values each, asserted (the errors are AssertionErrors)."""
import pytest
import torch

from mmdet_lite.models.data_preprocessors import DetDataPreprocessor
from mmdet_lite.registry import MODELS


@pytest.mark.parametrize('kwargs', [dict(mean=[1., 2., 3.], std=None),
                                    dict(mean=None, std=[1., 2., 3.]),
                                    dict(mean=[1., 2., 3.])])
def test_only_one_of_mean_and_std_is_an_assertion_error(kwargs):
    with pytest.raises(AssertionError, match='`mean` and `std` must both be given or both'):
        DetDataPreprocessor(**kwargs)
    with pytest.raises(ValueError):
        MODELS.build(dict(type='DetDataPreprocessor', **kwargs))


@pytest.mark.parametrize('kwargs,name', [(dict(mean=[1., 2.], std=[1., 1., 1.]), 'mean'),
                                         (dict(mean=[1.], std=[1., 1., 1., 1.]), 'std'),
                                         (dict(mean=[], std=[1.]), 'mean')])
def test_mean_and_std_need_one_or_three_values(kwargs, name):
    with pytest.raises(AssertionError, match=f'`{name}` needs 1 or 3 values'):
        DetDataPreprocessor(**kwargs)


def test_neither_mean_nor_std_means_no_normalization():
    pre = DetDataPreprocessor()
    img = torch.randint(0, 255, (3, 4, 5), dtype=torch.uint8)
    out = pre(dict(inputs=[img]))['inputs']
    torch.testing.assert_close(out, img[None].float())


def test_one_mean_value_with_three_std_values_broadcast():
    pre = DetDataPreprocessor(mean=[10.], std=[1., 2., 5.])
    img = torch.tensor([10., 20., 30.]).view(3, 1, 1).expand(3, 2, 2).to(torch.uint8)
    out = pre(dict(inputs=[img]))['inputs']
    # (10 - 10) / 1, (20 - 10) / 2, (30 - 10) / 5
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0., 5., 4.]))
