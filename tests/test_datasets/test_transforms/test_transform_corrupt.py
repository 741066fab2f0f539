"""Corrupt: delegation to imagecorruptions, and the error when the package is missing."""
import sys
import types

import numpy as np
import pytest

from mmdet_lite.datasets.transforms import Corrupt
from mmdet_lite.registry import TRANSFORMS


@pytest.fixture
def fake_imagecorruptions(monkeypatch):
    """A stand-in ``imagecorruptions`` whose ``corrupt`` records its calls and adds 1."""
    calls = []

    def corrupt(image, corruption_name, severity):
        calls.append((image.copy(), corruption_name, severity))
        return (image.astype(np.int32) + severity).clip(0, 255).astype(np.uint8)

    module = types.ModuleType('imagecorruptions')
    module.corrupt = corrupt
    monkeypatch.setitem(sys.modules, 'imagecorruptions', module)
    return calls


def test_corrupt_passes_uint8_image_name_and_severity(fake_imagecorruptions):
    transform = TRANSFORMS.build(dict(type='Corrupt', corruption='gaussian_noise', severity=3))
    img = np.array([[[1.7, 254.2, 10.0]]], dtype=np.float32)
    out = transform(dict(img=img))['img']
    (seen, name, severity), = fake_imagecorruptions
    assert seen.dtype == np.uint8
    np.testing.assert_array_equal(seen, [[[1, 254, 10]]])
    assert (name, severity) == ('gaussian_noise', 3)
    np.testing.assert_array_equal(out, [[[4, 255, 13]]])


def test_corrupt_repr(fake_imagecorruptions):
    assert repr(Corrupt('fog')) == 'Corrupt(corruption=fog, severity=1)'


def test_missing_package_raises_import_error_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, 'imagecorruptions', None)  # makes the import fail
    with pytest.raises(ImportError, match='pip install imagecorruptions'):
        Corrupt('gaussian_noise')
    with pytest.raises(RuntimeError):  # what mmdetection raises, still caught
        Corrupt('gaussian_noise')


def test_real_imagecorruptions():
    imagecorruptions = pytest.importorskip('imagecorruptions')
    img = np.random.RandomState(0).randint(0, 256, (32, 32, 3)).astype(np.uint8)
    np.random.seed(1)
    out = Corrupt('gaussian_noise', severity=2)(dict(img=img.copy()))['img']
    np.random.seed(1)
    expected = imagecorruptions.corrupt(img, corruption_name='gaussian_noise', severity=2)
    np.testing.assert_array_equal(out, expected)
