"""Network registry: ``create_network(name, num_classes, width)``.

Every network takes pixels in [0, 1] and normalises them in its first layer, so
perturbations and attacks act on real pixels. Each exposes the timm-style split
``forward_features`` (pooled features) / ``forward_head`` (logits) and the layer
GradCAM should use (``gradcam_layer``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; the first layer of every network."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Base class: normalise -> features -> pooled vector -> logits."""

    normalize: Normalize
    head: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature vector (N, D) of pixels in [0, 1]."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) from pooled features."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def gradcam_layer(self) -> nn.Module:
        """The last convolutional block: where GradCAM reads activations."""
        raise NotImplementedError


class BasicBlock(nn.Module):
    """The two-conv residual block of ResNet18."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet18(Classifier):
    """ResNet18 for small inputs: 3x3 stem, no max-pool; ``width`` channels in stage 1.

    width=64 is the standard (paper) network, width=16 the CPU default.
    """

    def __init__(
        self,
        num_classes: int,
        width: int = 16,
        mean: Sequence[float] = CIFAR_MEAN,
        std: Sequence[float] = CIFAR_STD,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages, in_planes = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            stages.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.head = nn.Linear(in_planes, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalize(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.layer4


class TorchvisionResNet(Classifier):
    """torchvision's ``resnet18`` / ``resnet50`` (ImageNet-size inputs), randomly initialised."""

    def __init__(
        self,
        arch: str,
        num_classes: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        self.head = self.body.fc
        self.body.fc = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.body.layer4


NetworkFactory = Callable[..., Classifier]

NETWORKS: dict[str, NetworkFactory] = {
    "resnet18-cifar": lambda num_classes, width=16, **kw: CifarResNet18(num_classes, width=width or 16, **kw),
    "resnet18": lambda num_classes, width=None, **kw: TorchvisionResNet("resnet18", num_classes, **kw),
    "resnet50": lambda num_classes, width=None, **kw: TorchvisionResNet("resnet50", num_classes, **kw),
}
DEFAULT_NETWORK = "resnet18-cifar"


def create_network(name: str, num_classes: int, width: int | None = 16, **kwargs) -> Classifier:
    """Build a registered network. ``width`` only affects ``resnet18-cifar``.

    kwargs may carry ``mean``/``std`` for the normalisation layer.
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; registered: {', '.join(sorted(NETWORKS))}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return NETWORKS[name](num_classes, width=width, **kwargs)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    for attr in ("module", "_orig_mod"):
        while isinstance(getattr(model, attr, None), nn.Module):
            model = getattr(model, attr)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
