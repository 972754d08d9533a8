"""Network registry: ``create_network(name, num_classes, width)``.

Every network takes pixels in [0, 1] and normalises them in its first layer, so
perturbations and attacks act on real pixels. Each exposes the timm-style split
``forward_features`` (pooled features) / ``forward_head`` (logits) and the layer
GradCAM should use (``gradcam_layer``).

Besides the registered lab networks, ``create_network`` builds any torchvision or timm
classification architecture by a prefixed name, ``"torchvision:<arch>"`` or ``"timm:<arch>"``
(:class:`ImportedNetwork`): the source model sits in ``body`` with its classifier moved to
``head``, after the same normalisation layer, so networks trained elsewhere (see
``models.import_model``) are rebuilt from their checkpoints like the lab's own.
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


IMPORT_FRAMEWORKS = ("torchvision", "timm")
#: Keys of a network spec (besides name, num_classes, width) that ``create_network`` accepts.
NETWORK_OPTIONS = ("mean", "std", "gradcam_layer", "classifier", "input_size")
_NOT_GRADCAM = (
    nn.Identity,
    nn.Dropout,
    nn.Flatten,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
)


def split_imported_name(name: str) -> tuple[str, str]:
    """``"timm:resnet10t"`` -> ``("timm", "resnet10t")``; ValueError for another prefix or no arch."""
    framework, _, arch = name.partition(":")
    if framework not in IMPORT_FRAMEWORKS or not arch:
        raise ValueError(f"network {name!r}: expected 'torchvision:<arch>' or 'timm:<arch>'")
    return framework, arch


def build_source_model(name: str, num_classes: int) -> nn.Module:
    """The plain torchvision / timm model ``name`` (prefixed) with ``num_classes`` outputs, random weights."""
    framework, arch = split_imported_name(name)
    if framework == "torchvision":
        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(f"torchvision has no classification architecture {arch!r}")
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    import timm

    if not timm.is_model(arch):
        raise ValueError(f"timm has no architecture {arch!r} (see timm.list_models())")
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def find_classifier(model: nn.Module, num_classes: int) -> str:
    """Name of the final ``nn.Linear`` with ``num_classes`` outputs: timm's declared classifier, else the last one."""
    declared = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if isinstance(declared, str) and declared in linears:
        return declared
    if not linears:
        raise ValueError(f"{type(model).__name__} has no final nn.Linear with {num_classes} outputs to use as head")
    return linears[-1]


def find_gradcam_layer(model: nn.Module, input_size: int) -> str:
    """The module GradCAM should read by default: the last one with a 4D output before the global pooling.

    Found by one forward pass of a ``(1, 3, input_size, input_size)`` probe. Pooling, identity,
    dropout and flatten modules never qualify, nor does anything after the last pooling to 1x1
    (the global pooling; squeeze-excitation pools inside blocks come before it). A container
    finishes after its children, so a whole last stage (e.g. ``layer4``) wins over its last block.
    """
    events: list[tuple[str, bool]] = []  # (module name, is a pooling to 1x1), in the order modules finish

    def hook(name: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                if not isinstance(module, _NOT_GRADCAM):
                    events.append((name, False))
                elif tuple(output.shape[-2:]) == (1, 1):
                    events.append((name, True))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, input_size, input_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    pools = [i for i, (_, is_pool) in enumerate(events) if is_pool]
    before = [name for name, is_pool in events[: pools[-1] if pools else None] if not is_pool]
    if not before:
        raise ValueError(f"{type(model).__name__} has no module with a 4D output: name a GradCAM layer explicitly")
    return before[-1]


class ImportedNetwork(Classifier):
    """A torchvision / timm architecture as a lab network: ``normalize`` -> ``body`` -> ``head``.

    ``body`` is the source model with its classifier (``classifier``, a module name; found by
    :func:`find_classifier` when None) replaced by ``nn.Identity``, so it returns pooled
    features; that classifier becomes ``head``. Hence a source state_dict key ``k`` is
    ``body.k`` here, except the classifier's ``<classifier>.weight``/``.bias``, which are
    ``head.weight``/``head.bias``. ``gradcam_layer`` is a module name in the source model's
    naming (found by :func:`find_gradcam_layer` when None).
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        gradcam_layer: str | None = None,
        classifier: str | None = None,
        input_size: int = 224,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        body = build_source_model(name, num_classes)
        self.classifier_name = classifier or find_classifier(body, num_classes)
        head = body.get_submodule(self.classifier_name)
        if not isinstance(head, nn.Linear):
            raise ValueError(f"{name}: classifier {self.classifier_name!r} is a {type(head).__name__}, not nn.Linear")
        body.set_submodule(self.classifier_name, nn.Identity())
        self.body, self.head = body, head
        self.gradcam_layer_name = gradcam_layer or find_gradcam_layer(body, input_size)
        try:
            body.get_submodule(self.gradcam_layer_name)
        except AttributeError as exc:
            raise ValueError(f"{name} has no module {self.gradcam_layer_name!r} for GradCAM") from exc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.body.get_submodule(self.gradcam_layer_name)


NetworkFactory = Callable[..., Classifier]

NETWORKS: dict[str, NetworkFactory] = {
    "resnet18-cifar": lambda num_classes, width=16, **kw: CifarResNet18(num_classes, width=width or 16, **kw),
    "resnet18": lambda num_classes, width=None, **kw: TorchvisionResNet("resnet18", num_classes, **kw),
    "resnet50": lambda num_classes, width=None, **kw: TorchvisionResNet("resnet50", num_classes, **kw),
}
DEFAULT_NETWORK = "resnet18-cifar"


def create_network(name: str, num_classes: int, width: int | None = 16, **kwargs) -> Classifier:
    """Build a registered network, or a prefixed ``"torchvision:<arch>"`` / ``"timm:<arch>"`` one.

    ``width`` only affects ``resnet18-cifar``. kwargs may carry ``mean``/``std`` for the
    normalisation layer; imported networks also take ``gradcam_layer``, ``classifier`` and
    ``input_size`` (see :class:`ImportedNetwork`).
    """
    if ":" in name:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        return ImportedNetwork(name, num_classes, **kwargs)
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; registered: {', '.join(sorted(NETWORKS))}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return NETWORKS[name](num_classes, width=width, **kwargs)


def network_from_spec(spec: dict) -> Classifier:
    """Rebuild the (randomly initialised) network a checkpoint's ``network`` spec describes."""
    options = {k: spec[k] for k in NETWORK_OPTIONS if spec.get(k) is not None}
    return create_network(spec["name"], int(spec["num_classes"]), width=spec.get("width"), **options)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    for attr in ("module", "_orig_mod"):
        while isinstance(getattr(model, attr, None), nn.Module):
            model = getattr(model, attr)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
