"""Random simple polygons, for :meth:`PolygonMasks.random` (demos and tests)."""
import numpy as np


def random_star_polygon(rng: np.random.RandomState, n_verts: int, irregularity: float = 0.9,
                        spikeyness: float = 0.9) -> np.ndarray:
    """One random simple polygon inside the unit square.

    Vertices are drawn around a circle: angular steps and radii are jittered, the angles stay
    sorted and the radii positive, so the polygon is star-shaped around the circle's centre
    and never crosses itself. It is then scaled to a random size (20% to 100% of the square)
    and placed at a random spot inside it.

    Args:
        rng (np.random.RandomState): Random state.
        n_verts (int): Number of vertices K (>= 3 for a polygon with an area).
        irregularity (float): In [0, 1]; how much the angular steps vary.
        spikeyness (float): In [0, 1]; spread of the radii around 1.

    Returns:
        np.ndarray: float64 vertices [K, 2] as (x, y), in increasing angle order.
    """
    mean_step = 2 * np.pi / n_verts
    jitter = np.clip(irregularity, 0, 1) * mean_step
    steps = rng.uniform(mean_step - jitter, mean_step + jitter, n_verts)
    # Rescale the steps so that they add up to one full turn, then start anywhere.
    angles = np.cumsum(steps * (2 * np.pi / steps.sum())) + rng.uniform(0, 2 * np.pi)
    # Radii around 1, kept in (0, 2] so every vertex stays on its own side of the centre.
    radii = np.clip(rng.normal(1.0, max(float(spikeyness), 1e-9), n_verts), 1e-3, 2.0)
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)

    # Normalise to the unit square, shrink, and shift to a random place that keeps it inside.
    points -= points.min(axis=0)
    points /= np.maximum(points.max(axis=0), 1e-12)
    points *= rng.rand() * 0.8 + 0.2
    room = 1.0 - points.max(axis=0)
    points += rng.rand(2) * room
    return points
