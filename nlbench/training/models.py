"""Backbones. Every backbone exposes the same top-level blocks so that levels can name them:
``stem``, ``stage1`` ... ``stageK``, ``head`` (the linear classifier), and ``features(x)`` that
returns pooled features (B, D) before the head.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from nlbench.registry import register_backbone


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Backbone(nn.Module):
    """stem -> stages -> global average pool -> head."""

    def __init__(self, stem: nn.Module, stages: list[nn.Module], feature_dim: int, num_classes: int):
        super().__init__()
        self.stem = stem
        for i, stage in enumerate(stages, 1):
            self.add_module(f"stage{i}", stage)
        self.n_stages = len(stages)
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def block_names(self) -> list[str]:
        return ["stem", *[f"stage{i}" for i in range(1, self.n_stages + 1)], "head"]

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32) -> (B, D)
        x = self.stem(x)
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"stage{i}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x):
        return self.head(self.features(x))


@register_backbone("resnet18")
def resnet18(num_classes: int = 10, width: int = 64) -> Backbone:
    """CIFAR ResNet-18: 3x3 stem, no max-pool; width 64 standard, 20 = reduced (GEM)."""
    stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
    stages, cin = [], width
    for i, mult in enumerate([1, 2, 4, 8]):
        cout = width * mult
        stride = 1 if i == 0 else 2
        stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
        cin = cout
    return Backbone(stem, stages, cin, num_classes)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


@register_backbone("cnn")
def cnn(num_classes: int = 10, width: int = 32) -> Backbone:
    """Small conv net for CPU runs: 3 conv-BN-ReLU stages with max-pool, widths w, 2w, 4w."""
    stem = nn.Sequential(*_conv_bn(3, width), nn.MaxPool2d(2))                     # 16x16
    stage1 = nn.Sequential(*_conv_bn(width, 2 * width), nn.MaxPool2d(2))           # 8x8
    stage2 = nn.Sequential(*_conv_bn(2 * width, 4 * width), nn.MaxPool2d(2))       # 4x4
    return Backbone(stem, [stage1, stage2], 4 * width, num_classes)


class MLPBackbone(Backbone):
    """Flattened image -> linear-ReLU blocks -> head: no convolution, no pooling, so every pixel
    permutation is a new input mapping (what permuted streams need to be able to forget)."""

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32) -> (B, D)
        x = self.stem(torch.flatten(x, 1))
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"stage{i}")(x)
        return x


@register_backbone("mlp")
def mlp(num_classes: int = 10, width: int = 256) -> Backbone:
    """MLP of 4 linear layers with ReLU, hidden width w (the source blog's NestedModel shape)."""
    def layer(cin):
        return nn.Sequential(nn.Linear(cin, width), nn.ReLU())
    return MLPBackbone(layer(3 * 32 * 32), [layer(width), layer(width)], width, num_classes)


class CosineHead(nn.Linear):
    """A cosine classifier: scale x the cosine between the features and each class's weight vector,
    no bias. ER-ACE's authors build their head so (pclucas14/AML ``model.py`` ``distLinear``, used when
    the method's name contains 'ace'; mammoth's port makes it ER-ACE's default): both sides divided by
    their L2 norm plus 1e-5, scale 10, the weights initialised as nn.Linear's."""

    SCALE, EPS = 10.0, 1e-5

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + self.EPS)
        w = self.weight / (torch.linalg.vector_norm(self.weight, dim=1, keepdim=True) + self.EPS)
        return self.SCALE * x @ w.t()


def with_head(net: Backbone, head: str) -> Backbone:
    """The backbone with its classifier as asked (``backbone.head``): linear (as built) or cosine."""
    if head == "cosine":
        net.head = CosineHead(net.head.in_features, net.head.out_features)
    return net
