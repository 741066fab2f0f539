"""Cosine-similarity predictors: linear / conv layers on L2-normalized inputs and weights.

With both the features and each output's weight vector normalized, a logit is a scaled
cosine similarity, so rare classes are not dominated by the weight norms of frequent ones
(the seesaw-loss configs use ``NormedLinear`` as the box head's classifier).

Also registers plain ``nn.Linear`` as ``'Linear'`` in ``MODELS``: the default
``cls_predictor_cfg`` / ``reg_predictor_cfg`` of the box heads are ``dict(type='Linear')``.
"""
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS

if 'Linear' not in MODELS.module_dict:
    MODELS.register_module('Linear', module=nn.Linear)


@MODELS.register_module(name='NormedLinear')
class NormedLinear(nn.Linear):
    """A linear layer computing ``tempearture * cos(x, w)`` (+ bias) per output.

    Args:
        *args: ``nn.Linear`` arguments (``in_features``, ``out_features``, ``bias``).
        tempearture (float): Scale of the cosine similarities (mmdetection's spelling).
            Defaults to 20.
        power (float): Exponent of the norms. Defaults to 1.0.
        eps (float): Added to the norms to avoid a division by zero. Defaults to 1e-6.
        **kwargs: Further ``nn.Linear`` arguments.
    """

    def __init__(self,
                 *args,
                 tempearture: float = 20,
                 power: float = 1.0,
                 eps: float = 1e-6,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tempearture = tempearture
        self.power = power
        self.eps = eps
        self.init_weights()

    def init_weights(self) -> None:
        """Normal(0, 0.01) weights and zero bias."""
        nn.init.normal_(self.weight, mean=0, std=0.01)
        if self.bias is not None:
            nn.init.constant_(self.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        """Scaled cosine logits.

        Args:
            x (Tensor): [N, in_features].

        Returns:
            Tensor: [N, out_features].
        """
        weight = self.weight / (self.weight.norm(dim=1, keepdim=True).pow(self.power) +
                                self.eps)  # [out, in], rows of norm ~1
        x = x / (x.norm(dim=1, keepdim=True).pow(self.power) + self.eps)
        return F.linear(x * self.tempearture, weight, self.bias)


@MODELS.register_module(name='NormedConv2d')
class NormedConv2d(nn.Conv2d):
    """A conv whose input (over channels, per pixel) and filters are L2-normalized.

    Args:
        *args: ``nn.Conv2d`` arguments.
        tempearture (float): Scale of the outputs (mmdetection's spelling). Defaults to 20.
        power (float): Exponent of the norms. Defaults to 1.0.
        eps (float): Added to the norms to avoid a division by zero. Defaults to 1e-6.
        norm_over_kernel (bool): Normalize each filter over its whole kernel
            (C_in * kh * kw) instead of over the input channels at each kernel position.
            Defaults to False.
        **kwargs: Further ``nn.Conv2d`` arguments.
    """

    def __init__(self,
                 *args,
                 tempearture: float = 20,
                 power: float = 1.0,
                 eps: float = 1e-6,
                 norm_over_kernel: bool = False,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tempearture = tempearture
        self.power = power
        self.norm_over_kernel = norm_over_kernel
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalized convolution.

        Args:
            x (Tensor): [N, C_in, H, W].

        Returns:
            Tensor: [N, C_out, H', W'].
        """
        if self.norm_over_kernel:
            norm = self.weight.flatten(1).norm(dim=1, keepdim=True).pow(self.power)
            weight = self.weight / (norm[..., None, None] + self.eps)
        else:
            weight = self.weight / (self.weight.norm(dim=1, keepdim=True).pow(self.power) +
                                    self.eps)
        x = x / (x.norm(dim=1, keepdim=True).pow(self.power) + self.eps)
        return self._conv_forward(x * self.tempearture, weight, self.bias)
