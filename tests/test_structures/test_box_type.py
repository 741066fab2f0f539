"""Box type registry, converters, ``autocast_box_type`` and the box-aware helpers."""
import numpy as np
import pytest
import torch

from mmdet_lite.structures.bbox import (BaseBoxes, HorizontalBoxes, autocast_box_type,
                                        bbox_overlaps, box_converters, box_types, cat_boxes,
                                        convert_box_type, empty_box_as, get_box_tensor,
                                        get_box_type, get_box_wh, register_box,
                                        register_box_converter, scale_boxes, stack_boxes)
from mmdet_lite.structures.bbox import box_type as box_type_module


class _CxcywhBoxes(HorizontalBoxes):
    """A test box type whose converters are the cxcywh <-> xyxy formulas."""


@pytest.fixture
def registered_cxcywh():
    register_box('test_cxcywh', _CxcywhBoxes)
    register_box_converter('hbox', 'test_cxcywh', HorizontalBoxes.xyxy_to_cxcywh)

    @register_box_converter(_CxcywhBoxes, HorizontalBoxes)
    def _to_hbox(boxes):
        return HorizontalBoxes.cxcywh_to_xyxy(boxes)

    yield
    box_types.pop('test_cxcywh', None)
    box_type_module._box_type_to_name.pop(_CxcywhBoxes, None)
    box_converters.pop('hbox2test_cxcywh', None)
    box_converters.pop('test_cxcywh2hbox', None)


def test_hbox_registered():
    assert get_box_type('hbox') == ('hbox', HorizontalBoxes)
    assert get_box_type('HBox') == ('hbox', HorizontalBoxes)
    assert get_box_type(HorizontalBoxes) == ('hbox', HorizontalBoxes)
    with pytest.raises(AssertionError, match='registered'):
        get_box_type('nobox')
    with pytest.raises(KeyError):
        get_box_type(3)


def test_register_box_rules(registered_cxcywh):
    assert get_box_type('test_cxcywh') == ('test_cxcywh', _CxcywhBoxes)
    with pytest.raises(KeyError, match='registered'):
        register_box('test_cxcywh', _CxcywhBoxes)
    with pytest.raises(KeyError, match='registered'):
        register_box_converter('hbox', 'test_cxcywh', lambda b: b)
    with pytest.raises(TypeError, match='force'):
        register_box('other', _CxcywhBoxes, force=1)
    with pytest.raises(AssertionError):
        register_box('not_a_box', dict)


def test_convert_box_type(registered_cxcywh):
    xyxy = torch.tensor([[1., 2., 5., 4.]])
    cxcywh = torch.tensor([[3., 3., 4., 2.]])
    converted = convert_box_type(HorizontalBoxes(xyxy), dst_type='test_cxcywh')
    assert type(converted) is _CxcywhBoxes
    torch.testing.assert_close(converted.tensor, cxcywh)
    torch.testing.assert_close(
        convert_box_type(cxcywh, src_type='test_cxcywh', dst_type='hbox'), xyxy)
    out = convert_box_type(xyxy.numpy(), src_type='hbox', dst_type=_CxcywhBoxes)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, cxcywh.numpy())
    same = HorizontalBoxes(xyxy)
    assert convert_box_type(same, dst_type='hbox') is same
    assert type(same.convert_to('test_cxcywh')) is _CxcywhBoxes
    with pytest.raises(AssertionError):
        convert_box_type(xyxy, dst_type='hbox')  # src_type missing
    with pytest.raises(TypeError):
        convert_box_type([[1, 2, 3, 4]], src_type='hbox', dst_type='hbox')


class _Transform:
    """Records what the decorated transform saw and edits boxes in place."""

    @autocast_box_type()
    def transform(self, results):
        self.seen = type(results['gt_bboxes'])
        self.seen_mix = [type(r['gt_bboxes']) for r in results.get('mix_results', [])]
        results['gt_bboxes'].translate_((1., 2.))
        return results


def test_autocast_numpy_in_numpy_out():
    transform = _Transform()
    boxes = np.array([[0., 0., 2., 2.]], dtype=np.float32)
    results = transform.transform({'gt_bboxes': boxes,
                                   'mix_results': [{'gt_bboxes': boxes.copy()}]})
    assert transform.seen is HorizontalBoxes
    assert transform.seen_mix == [HorizontalBoxes]
    assert isinstance(results['gt_bboxes'], np.ndarray)
    np.testing.assert_array_equal(results['gt_bboxes'], [[1., 2., 3., 4.]])


def test_autocast_box_object_passes_through():
    transform = _Transform()
    boxes = HorizontalBoxes(torch.tensor([[0., 0., 2., 2.]]))
    results = transform.transform({'gt_bboxes': boxes})
    assert transform.seen is HorizontalBoxes
    assert isinstance(results['gt_bboxes'], HorizontalBoxes)
    assert results['gt_bboxes'].tensor.tolist() == [[1., 2., 3., 4.]]
    no_boxes = _NoBoxes().transform({'img': 1})
    assert no_boxes == {'img': 1, 'done': True}
    with pytest.raises(TypeError, match='gt_bboxes'):
        _Transform().transform({'gt_bboxes': [[0, 0, 1, 1]]})


class _NoBoxes:

    @autocast_box_type()
    def transform(self, results):
        results['done'] = True
        return results


def test_box_aware_helpers():
    tensor = torch.tensor([[1., 2., 4., 6.], [0., 0., 1., 1.]])
    boxes = HorizontalBoxes(tensor)
    assert get_box_tensor(boxes) is boxes.tensor
    assert get_box_tensor(tensor) is tensor
    empty = empty_box_as(boxes)
    assert isinstance(empty, HorizontalBoxes) and empty.shape == (0, 4)
    empty_t = empty_box_as(tensor.double())
    assert isinstance(empty_t, torch.Tensor) and empty_t.shape == (0, 4)
    assert empty_t.dtype == torch.float64
    for w, h in (get_box_wh(boxes), get_box_wh(tensor)):
        assert w.tolist() == [3., 1.] and h.tolist() == [4., 1.]
    scaled = scale_boxes(boxes.clone(), (2., 3.))
    assert isinstance(scaled, HorizontalBoxes)
    torch.testing.assert_close(scaled.tensor, scale_boxes(tensor, (2., 3.)))
    cat = cat_boxes([boxes, boxes])
    assert isinstance(cat, HorizontalBoxes) and cat.shape == (4, 4)
    assert isinstance(cat_boxes([tensor, tensor]), torch.Tensor)
    stacked = stack_boxes([boxes, boxes])
    assert isinstance(stacked, BaseBoxes) and stacked.shape == (2, 2, 4)
    torch.testing.assert_close(bbox_overlaps(boxes, boxes), bbox_overlaps(tensor, tensor))
