"""The image files of a folder, as the inference tools list them."""
import os
import os.path as osp
from typing import List

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def list_image_files(folder: str) -> List[str]:
    """The image files directly in ``folder`` (not in sub-folders), sorted by name.

    Image files are those ending with one of :data:`IMG_EXTENSIONS`, in any letter case
    (mmdetection's listing is case-sensitive and unsorted).

    Args:
        folder (str): A folder.

    Returns:
        list[str]: Paths ``folder/NAME``.
    """
    return [osp.join(folder, name) for name in sorted(os.listdir(folder))
            if name.lower().endswith(IMG_EXTENSIONS) and osp.isfile(osp.join(folder, name))]
