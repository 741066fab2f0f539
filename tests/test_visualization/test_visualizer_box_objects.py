"""DetLocalVisualizer draws gt boxes given as HorizontalBoxes like their tensor."""
import uuid

import numpy as np
import torch
from mmengine.structures import InstanceData

from mmdet_lite.structures.bbox import HorizontalBoxes
from mmdet_lite.visualization import DetLocalVisualizer


def test_horizontal_boxes_draw_like_tensors():
    vis = DetLocalVisualizer.get_instance(f'test-{uuid.uuid4().hex}')
    image = np.full((60, 80, 3), 100, np.uint8)
    boxes = torch.tensor([[10., 10., 40., 30.], [50., 5., 75., 55.]])
    labels = torch.tensor([0, 1])
    classes, palette = ('cat', 'dog'), [(255, 0, 0), (0, 0, 255)]
    drawn_tensor = vis._draw_instances(image, InstanceData(bboxes=boxes, labels=labels),
                                       classes, palette)
    drawn_boxes = vis._draw_instances(
        image, InstanceData(bboxes=HorizontalBoxes(boxes), labels=labels), classes, palette)
    assert (drawn_tensor != image).any()  # something was drawn
    np.testing.assert_array_equal(drawn_boxes, drawn_tensor)
    # the left edge of the 'cat' box is blended towards its red class colour
    r, g, b = drawn_boxes[20, 10].astype(int)
    assert r > 200 and g < 100 and b < 100
