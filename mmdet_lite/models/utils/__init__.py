"""Small helpers shared by heads and detectors."""
from .misc import (batched_nms, empty_instances, filter_scores_and_topk, images_to_levels,
                   select_single_mlvl, sigmoid_geometric_mean, unmap, unpack_gt_instances)

__all__ = [
    'batched_nms', 'empty_instances', 'filter_scores_and_topk', 'images_to_levels',
    'select_single_mlvl', 'sigmoid_geometric_mean', 'unmap', 'unpack_gt_instances'
]

# Channel rounding of MobileNet-style width multipliers.
from .make_divisible import make_divisible  # noqa: E402

__all__ += ['make_divisible']

# Gaussian heatmap helpers (CenterNet), per-image regrouping of level outputs, and the
# coordinate / upsampling helpers of the SOLO and CondInst heads (mmdetection's exports).
from .gaussian_target import (gaussian2D, gaussian_radius, gen_gaussian_target,  # noqa: E402
                              get_local_maximum, get_topk_from_heatmap,
                              transpose_and_gather_feat)
from .gaussian_mixture import GaussianMixture1D  # noqa: E402
from .misc import (aligned_bilinear, center_of_mass, generate_coordinate,  # noqa: E402
                   levels_to_images, relative_coordinate_maps)

__all__ += [
    'gaussian2D', 'gaussian_radius', 'gen_gaussian_target', 'get_local_maximum',
    'get_topk_from_heatmap', 'transpose_and_gather_feat', 'GaussianMixture1D',
    'aligned_bilinear', 'center_of_mass', 'generate_coordinate', 'levels_to_images',
    'relative_coordinate_maps'
]

# Folding eval-mode BatchNorm into the preceding conv (tools/model_converters/fuse_conv_bn.py).
from .fuse_conv_bn import fuse_conv_bn  # noqa: E402

__all__ += ['fuse_conv_bn']

# The CPU inference fast path (folded BN, channels-last, torch.compile).
from .fast_inference import (compile_detector, inference_context,  # noqa: E402
                             optimize_for_inference, to_channels_last,
                             untie_shared_convs)

__all__ += ['compile_detector', 'inference_context', 'optimize_for_inference',
            'to_channels_last', 'untie_shared_convs']

# Faster CPU RoIAlign (weighted gather) and NMS (threaded) than torchvision's serial ones.
from .cpu_ops import set_cpu_ops  # noqa: E402

__all__ += ['set_cpu_ops']
