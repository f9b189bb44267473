"""A Keras-tutorial-style CIFAR CNN, as ported from TensorFlow checkpoints.

Why this family: models converted from Keras differ from native PyTorch ones in ways an importer
meets only there, and each is kept on purpose:
- ``Conv -> ReLU -> BatchNormalization``: BN after the activation cannot be folded into the conv,
  so the exported graph keeps it (as BatchNormalization or as Mul/Add).
- ``padding="same"`` on a stride-2 conv: TensorFlow pads 0 on top/left and 1 on bottom/right of an
  even input, which PyTorch can only express with an explicit ``ZeroPad2d`` (a ``Pad`` op).
- ``Flatten`` in channels-last order (a Transpose before the Reshape), dropout, a dense head.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_relu_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    """Keras ``Conv2D(padding="same", activation="relu")`` followed by ``BatchNormalization``."""
    if stride == 1:
        pad: list[nn.Module] = []
        conv = nn.Conv2d(c_in, c_out, 3, 1, padding=1)
    else:  # TF "same" for a 3x3 stride-2 conv on an even side: (left, right, top, bottom);
        # on an odd side TF would pad 1 on every edge, so this layout assumes even sides
        pad = [nn.ZeroPad2d((0, 1, 0, 1))]
        conv = nn.Conv2d(c_in, c_out, 3, stride, padding=0)
    # Keras' eps (1e-3); not its momentum (0.99, i.e. 0.01 here): such slow running statistics are
    # still stale after the few hundred steps of a short CPU training run, and eval accuracy drops.
    return [*pad, conv, nn.ReLU(inplace=True), nn.BatchNorm2d(c_out, eps=1e-3)]


class KerasCNN(nn.Module):
    """Two conv blocks (3x3 conv, then a stride-2 "same" conv, max-pool, dropout) and a dense head.

    32x32 input: 32 -> stride 2 -> 16 -> pool -> 8 -> stride 2 -> 4 -> pool -> 2, so the flattened
    vector has ``2 * 2 * widths[1]`` entries.
    """

    def __init__(self, widths: tuple[int, int] = (32, 64), hidden: int = 128, num_classes: int = 10,
                 in_channels: int = 3, input_size: int = 32) -> None:
        super().__init__()
        w1, w2 = widths
        self.features = nn.Sequential(
            *_conv_relu_bn(in_channels, w1), *_conv_relu_bn(w1, w1, stride=2),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            *_conv_relu_bn(w1, w2), *_conv_relu_bn(w2, w2, stride=2),
            nn.MaxPool2d(2), nn.Dropout(0.25),
        )
        side = input_size
        for _ in range(2):
            side = side // 2 // 2  # padded stride-2 conv halves an even side, then a 2x2 max-pool
        self.dense = nn.Linear(side * side * w2, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(hidden, num_classes)
        for m in self.modules():  # Keras defaults: glorot_uniform kernels, zero biases
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x).permute(0, 2, 3, 1)  # Keras flattens NHWC
        out = self.dropout(self.relu(self.dense(torch.flatten(out, 1))))
        return self.classifier(out)
