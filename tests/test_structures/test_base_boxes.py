"""BaseBoxes' tensor-like behaviour, exercised through HorizontalBoxes."""
import copy

import numpy as np
import pytest
import torch

from mmdet_lite.structures.bbox import BaseBoxes, HorizontalBoxes

DATA = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)


def test_abstract():
    with pytest.raises(TypeError):
        BaseBoxes(torch.zeros(1, 4))


def test_repr_matches_mmdetection_format():
    boxes = HorizontalBoxes(torch.tensor([[1., 2., 3., 4.]]))
    assert repr(boxes) == 'HorizontalBoxes(\n' + str(boxes.tensor) + ')'
    assert repr(boxes) == 'HorizontalBoxes(\ntensor([[1., 2., 3., 4.]]))'


def test_indexing():
    boxes = HorizontalBoxes(DATA)
    assert len(boxes) == 2
    item = boxes[0, 1]  # a single box keeps 2 dims
    assert isinstance(item, HorizontalBoxes) and item.shape == (1, 4)
    torch.testing.assert_close(item.tensor, DATA[0, 1][None])
    mask = torch.tensor([True, False])
    assert boxes[mask].shape == (1, 3, 4)
    np_index = np.array([1, 0])
    torch.testing.assert_close(boxes[np_index].tensor, DATA[[1, 0]])
    assert boxes[None, ...].shape == (1, 2, 3, 4)
    # indexing shares storage, as tensor views do
    view = boxes[0]
    view.tensor[0, 0] = -1.
    assert boxes.tensor[0, 0, 0] == -1.
    with pytest.raises(AssertionError):
        boxes[0, 0, 0]  # reaches into the coordinates
    with pytest.raises(AssertionError):
        boxes[torch.ones(2, 3, 4, dtype=torch.bool)]
    with pytest.raises(AssertionError, match='Ellipsis'):
        boxes[..., 0]


def test_setitem():
    boxes = HorizontalBoxes(torch.zeros(3, 4))
    boxes[1] = HorizontalBoxes(torch.tensor([[1., 2., 3., 4.]]))
    assert boxes.tensor[1].tolist() == [1., 2., 3., 4.]
    assert boxes.tensor[0].tolist() == [0., 0., 0., 0.]
    with pytest.raises(AssertionError, match='values'):
        boxes[0] = torch.ones(1, 4)


def test_tensor_like_methods():
    boxes = HorizontalBoxes(DATA)
    assert boxes.size() == (2, 3, 4) and boxes.size(1) == 3 and boxes.dim() == 3
    assert boxes.shape == (2, 3, 4) and boxes.numel() == 24
    assert boxes.dtype == torch.float32 and boxes.device == torch.device('cpu')
    assert boxes.new_tensor([1, 2]).dtype == torch.float32
    assert boxes.new_zeros(2).tolist() == [0., 0.]
    assert boxes.new_ones(1).tolist() == [1.]
    assert boxes.new_full((1, ), 7.).tolist() == [7.]
    assert boxes.new_empty(3).shape == (3, )
    assert boxes.to(torch.float64).dtype == torch.float64
    assert isinstance(boxes.cpu(), HorizontalBoxes)
    clone = boxes.clone()
    assert clone.tensor.data_ptr() != boxes.tensor.data_ptr()
    torch.testing.assert_close(clone.tensor, boxes.tensor)
    deep = copy.deepcopy(boxes)
    assert isinstance(deep, HorizontalBoxes)
    assert deep.tensor.data_ptr() != boxes.tensor.data_ptr()
    assert boxes.view(6, 4).shape == (6, 4)
    assert boxes.reshape(-1, 4).shape == (6, 4)
    assert boxes.flatten().shape == (6, 4)
    assert boxes[:1].expand(3, 3, 4).shape == (3, 3, 4)
    assert boxes.repeat(2, 1, 1).shape == (4, 3, 4)
    torch.testing.assert_close(boxes.transpose(0, 1).tensor, DATA.transpose(0, 1))
    torch.testing.assert_close(boxes.permute(1, 0, 2).tensor, DATA.permute(1, 0, 2))
    assert [b.shape for b in boxes.split(1, dim=1)] == [(2, 1, 4)] * 3
    assert [b.shape for b in boxes.chunk(2)] == [(1, 3, 4)] * 2
    assert [b.shape for b in boxes.unbind(0)] == [(3, 4)] * 2
    assert boxes[:1].squeeze(0).shape == (3, 4)
    assert boxes.unsqueeze(0).shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(boxes.numpy(), DATA.numpy())
    grad = HorizontalBoxes(torch.zeros(1, 4, requires_grad=True), clone=False)
    assert not grad.detach().tensor.requires_grad
    for bad in (lambda: boxes.transpose(0, -1), lambda: boxes.permute(2, 1, 0),
                lambda: boxes.split(1, dim=-1), lambda: boxes.unsqueeze(3),
                lambda: boxes.flatten(0, -1)):
        with pytest.raises(AssertionError):
            bad()


def test_cat_stack_empty_fake():
    a = HorizontalBoxes(torch.zeros(2, 4))
    b = HorizontalBoxes(torch.ones(1, 4))
    cat = HorizontalBoxes.cat([a, b])
    assert isinstance(cat, HorizontalBoxes)
    torch.testing.assert_close(cat.tensor, torch.cat([a.tensor, b.tensor]))
    stacked = HorizontalBoxes.stack([a, a], dim=0)
    assert stacked.shape == (2, 2, 4)
    with pytest.raises(ValueError):
        HorizontalBoxes.cat([])
    with pytest.raises(AssertionError):
        HorizontalBoxes.cat([a, torch.zeros(1, 4)])
    with pytest.raises(AssertionError):
        HorizontalBoxes.cat([a, b], dim=-1)
    empty = b.empty_boxes(dtype=torch.float64)
    assert isinstance(empty, HorizontalBoxes) and empty.shape == (0, 4)
    assert empty.dtype == torch.float64
    fake = b.fake_boxes((3, 4), fill=2.)
    assert isinstance(fake, HorizontalBoxes) and fake.tensor.eq(2.).all()
