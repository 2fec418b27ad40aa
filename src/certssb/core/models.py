"""Base classifiers f, built by name.

Every architecture is free of BatchNorm running statistics (GroupNorm where normalisation is needed) so
that the same module trains under ``torch.func.vmap`` in the vectorised ensemble backend and predicts
a single input the same way in train and eval mode.

- ``small_cnn``      conv 1->8 k5 p2, pool, conv 8->16 k5 p2, pool, fc ->64 -> classes (CPU default,
                     about 4.7 MFLOP per MNIST training sample).
- ``mnist_cnn``      the RAB / Cert-SSB MNIST CNN: conv ->16 k5 + pool, conv 16->32 k5 + pool, fc 128.
- ``mlp``            two hidden layers of 256.
- ``preact_resnet``  pre-activation ResNet (He et al. 2016) with 16/32/64 filters, GroupNorm, for CIFAR-10.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .validation import ConfigError, choice

ARCHITECTURES = ("small_cnn", "mnist_cnn", "mlp", "preact_resnet")


def _flat_features(body: nn.Module, in_shape: Sequence[int]) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, *in_shape)).flatten(1).shape[1])


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        n = _flat_features(self.features, (in_channels, image_size, image_size))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(n, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MnistCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        n = _flat_features(self.features, (in_channels, image_size, image_size))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(n, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        d = in_channels * image_size * image_size
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(d, 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(min(8, cin), cin)
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n2 = nn.GroupNorm(min(8, cout), cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.n1(x))
        shortcut = x if self.short is None else self.short(out)
        out = self.c1(out)
        out = self.c2(torch.relu(self.n2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet with three stages of 16/32/64 filters (2 blocks each)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, widths=(16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        cin = widths[0]
        for i, w in enumerate(widths):
            layers += [PreActBlock(cin, w, 1 if i == 0 else 2), PreActBlock(w, w, 1)]
            cin = w
        layers += [nn.GroupNorm(min(8, cin), cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


_BUILDERS = {"small_cnn": SmallCNN, "mnist_cnn": MnistCNN, "mlp": MLP, "preact_resnet": PreActResNet}
_MIN_SIZE = {"small_cnn": 4, "mnist_cnn": 16, "mlp": 1, "preact_resnet": 4}


def build_model(
    architecture: str, in_shape: Sequence[int], num_classes: int, seed: int | None = None
) -> nn.Module:
    """Build ``architecture`` for inputs of shape ``in_shape = (C, H, W)`` with ``num_classes`` outputs.

    With ``seed`` the initial weights are a deterministic function of the seed (the global RNG state is
    saved and restored, so building a model never perturbs other randomness).
    """
    choice("architecture", architecture, ARCHITECTURES)
    if len(in_shape) != 3:
        raise ConfigError(f"model input shape {tuple(in_shape)} is invalid: expected (C, H, W)")
    c, h, w = (int(s) for s in in_shape)
    if h != w:
        raise ConfigError(
            f"model input shape {tuple(in_shape)} is invalid: {architecture} expects square images"
        )
    if h < _MIN_SIZE[architecture]:
        raise ConfigError(
            f"model input shape {tuple(in_shape)} is too small for '{architecture}' "
            f"(needs H, W >= {_MIN_SIZE[architecture]})"
        )
    if num_classes < 2:
        raise ConfigError(f"num_classes = {num_classes} is invalid: a classifier needs at least 2 classes")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        return _BUILDERS[architecture](c, num_classes, h)


def check_input_shape(architecture: str, expected: Sequence[int], got: Sequence[int], what: str) -> None:
    """Refuse data whose per-sample shape is not the one the models were built for."""
    if tuple(int(s) for s in expected) != tuple(int(s) for s in got):
        raise ConfigError(
            f"{what} has per-sample shape {tuple(got)} but the '{architecture}' models were built for "
            f"{tuple(expected)}: the data and the models come from different configurations"
        )
