"""A 3D U-Net with attention gates on its skip connections (Oktay et al. 2018; Jeong et al. 2020).

Each decoder level gates the encoder features it receives: the coarser decoder signal ``g``
and the skip features ``x`` are projected, summed, passed through ReLU, a 1x1x1 projection and a
sigmoid, and the resulting attention map (one weight per voxel) multiplies ``x`` before it is
concatenated. Instance normalisation throughout; the network outputs logits, softmax is applied
by the loss and by inference.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        nn.InstanceNorm3d(cout, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        nn.InstanceNorm3d(cout, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


class AttentionGate(nn.Module):
    """Additive attention gate: weights skip features ``x`` by their relevance to ``g``."""

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int):
        super().__init__()
        self.theta_x = nn.Conv3d(x_channels, inter_channels, 1, bias=False)
        self.phi_g = nn.Conv3d(g_channels, inter_channels, 1, bias=True)
        self.psi = nn.Conv3d(inter_channels, 1, 1, bias=True)

    def attention(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g_up = F.interpolate(g, size=x.shape[2:], mode="trilinear", align_corners=False)
        return torch.sigmoid(self.psi(F.relu(self.theta_x(x) + self.phi_g(g_up))))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x, g)


class AttentionUNet3D(nn.Module):
    """U-Net with ``depth`` poolings; ``base`` filters at full resolution, doubling per level."""

    def __init__(self, in_channels: int = 1, n_classes: int = 4, base: int = 8, depth: int = 3):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.config = {"in_channels": in_channels, "n_classes": n_classes, "base": base, "depth": depth}
        self.encoders = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.encoders.append(conv_block(cin, w))
            cin = w
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(depth - 1, -1, -1):
            coarse, skip = widths[level + 1], widths[level]
            self.ups.append(nn.ConvTranspose3d(coarse, skip, 2, stride=2))
            self.gates.append(AttentionGate(skip, coarse, max(skip // 2, 4)))
            self.decoders.append(conv_block(2 * skip, skip))
        self.head = nn.Conv3d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            if i < len(self.encoders) - 1:
                skips.append(x)
                x = F.max_pool3d(x, 2)
        for up, gate, dec in zip(self.ups, self.gates, self.decoders):
            skip = skips.pop()
            gated = gate(skip, x)  # the coarser decoder signal gates the skip connection
            x = dec(torch.cat([up(x), gated], dim=1))
        return self.head(x)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, ce_weight: float = 0.1,
                 class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """1 − mean soft Dice over the foreground classes + ``ce_weight`` × cross-entropy.

    ``class_weights`` optionally weights the cross-entropy per class: small features (the
    nose and ears fill a few dozen 4 mm voxels) otherwise get little of its gradient.
    """
    n_classes = logits.shape[1]
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), n_classes).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return 1 - dice[1:].mean() + ce_weight * F.cross_entropy(logits, target.long(), weight=class_weights)


class TorchNetwork:
    """Trained torch weights run like the app's exported network (``features.inference.Network``):
    for training and for evaluating candidate weights before they are exported."""

    def __init__(self, model: AttentionUNet3D, sha256: str):
        self.model, self.sha256, self.weights_sha256 = model.eval(), sha256, sha256

    @classmethod
    def load(cls, weights, sha256: str = "") -> "TorchNetwork":
        blob = torch.load(weights, map_location="cpu", weights_only=False)
        model = AttentionUNet3D(**blob["config"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
        return cls(model, sha256)

    def logits(self, batch):
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).numpy()

    def predict(self, x):
        from .inference import mirror_averaged_probabilities

        return mirror_averaged_probabilities(self.logits, x)
