"""The 3x3 ``homography_matrix`` that geometric transforms leave in the pipeline results.

Each geometric transform maps image coordinates (x, y, 1) of its input to those of its
output by a 3x3 matrix M. The results keep the product of all of them, newest on the left,
so that ``results['homography_matrix'] @ (x, y, 1)`` takes a point of the loaded image to
the current one (up to the homogeneous scale).
"""
import numpy as np


def record_homography(results: dict, matrix: np.ndarray) -> None:
    """Compose ``matrix`` onto ``results['homography_matrix']`` (``matrix @ previous``).

    Args:
        results (dict): Pipeline results; ``homography_matrix`` is set or updated.
        matrix (np.ndarray): float32 [3, 3] map of this transform.
    """
    previous = results.get('homography_matrix')
    results['homography_matrix'] = matrix if previous is None else matrix @ previous
