"""The training memory format, chosen in one place: channels_last only where it is known to be safe and faster.

channels_last is the faster layout for convolutions on CUDA and, measured with ``bench/train_step.py``, for the lab's
CIFAR ResNet18 on the CPU at widths 4, 8 and 16 (step time 0.7-0.95x of contiguous's, with oneDNN's AVX-512 and AVX2
kernels). But oneDNN's AVX2 kernels (the ones an AMD Zen 3 such as an EPYC 7003 runs; reproduced on any x86-64 CPU with
``ONEDNN_MAX_CPU_ISA=AVX2``) corrupt memory in the weight gradient of a 1x1 convolution with stride 2 and 2-7 input
channels in channels_last: the width-4 network's first downsampling shortcut (4 -> 8 channels) segfaults or aborts
in ``loss.backward()``. ``tests/test_memory_format.py`` keeps that minimal case.

So on the CPU channels_last is used for the lab's own networks only, and only when none of their convolutions has
that shape; networks brought in from torchvision or timm (unmeasured here) train contiguous on the CPU. The choice is
recorded in the run's config (``channels_last``) and ``--channels-last true|false`` overrides it.
"""

from __future__ import annotations

import torch
from torch import nn

from models.networks import CifarResNet18

#: Input-channel counts of a strided 1x1 convolution whose channels_last weight gradient faults in oneDNN's AVX2
#: kernels (measured: 2-7 fault; 1 and 8, 12, 16, 32 do not).
FAULTING_IN_CHANNELS = range(2, 8)


def has_faulting_conv(model: nn.Module) -> bool:
    """True when ``model`` holds a convolution of the shape whose channels_last backward faults under AVX2."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
            strided = any(s > 1 for s in module.stride)
            if strided and module.in_channels in FAULTING_IN_CHANNELS:
                return True
    return False


def default_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether training ``model`` on ``device`` uses channels_last when the run does not say (see the module doc)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return isinstance(model, CifarResNet18) and not has_faulting_conv(model)


def memory_format(channels_last: bool) -> torch.memory_format:
    """The torch memory format a run's resolved ``channels_last`` names."""
    return torch.channels_last if channels_last else torch.contiguous_format
