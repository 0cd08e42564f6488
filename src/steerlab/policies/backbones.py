"""Small network building blocks shared by every model in steerlab."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int = 2, act: type[nn.Module] = nn.GELU,
        layer_norm: bool = False) -> nn.Sequential:
    """`depth` hidden layers of width `hidden`, then a linear head (no output activation)."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(d, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(act())
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Two conv blocks and two fully connected layers (`fc1`, `fc2`) for small images (e.g. 8×8 digits)."""

    def __init__(self, in_channels: int = 1, side: int = 8, classes: int = 10, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.fc1 = nn.Linear(32 * (side // 2) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        h = self.features(x).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate `q_proj`, `k_proj`, `v_proj` (so each can be wrapped)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (p(x).reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Sequence classifier: token embedding + learned positions, `depth` blocks, mean pool, linear head."""

    def __init__(self, token_dim: int, seq_len: int, classes: int, dim: int = 32, heads: int = 2, depth: int = 1):
        super().__init__()
        self.embed = nn.Linear(token_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, seq_len, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.embed(x) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(1))


# ----------------------------------------------------------------------------- vision
def _group_norm(channels: int) -> nn.GroupNorm:
    # Diffusion Policy's replacement for BatchNorm: batch statistics drift when the policy is frozen and
    # queried one observation at a time, GroupNorm has none (16 channels per group, as DP does)
    return nn.GroupNorm(max(1, channels // 16), channels)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (same parameter names) with GroupNorm in place of BatchNorm."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _group_norm(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _group_norm(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18Trunk(nn.Module):
    """ResNet-18 up to layer4 (no pooling, no fc), GroupNorm, random init: (B, 3, H, W) -> (B, 512, H/32, W/32).

    Written out rather than taken from torchvision (not a dependency here); the parameter names are
    torchvision's `resnet18` names, so its weights load into it once BatchNorm is swapped as Diffusion
    Policy does."""

    out_channels = 512

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = _group_norm(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = (64, 128, 256, 512), 64
        for i, w in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
            cin = w

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class SmallConvTrunk(nn.Module):
    """Four 3×3 convs (stride 2, 2, 2, 1; 32–64 channels, GroupNorm): about 60k parameters, a few ms per
    84×84 frame on one CPU thread. (B, 3, H, W) -> (B, 64, ~H/8, ~W/8)."""

    out_channels = 64

    def __init__(self):
        super().__init__()
        chans = ((3, 32, 2), (32, 32, 2), (32, 64, 2), (64, 64, 1))
        layers: list[nn.Module] = []
        for cin, cout, stride in chans:
            layers += [nn.Conv2d(cin, cout, 3, stride, 1), _group_norm(cout), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class SpatialSoftmax(nn.Module):
    """Keypoints as in Diffusion Policy: a 1×1 conv to K maps, a softmax over each map's pixels, and the
    expected (x, y) of each in [-1, 1]: (B, C, H, W) -> (B, 2K). Keeps *where* things are, which pooling loses."""

    def __init__(self, in_channels: int, keypoints: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, keypoints, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        att = torch.softmax(self.proj(x).flatten(2), dim=-1)  # (B, K, H*W)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        kx = (att * gx.reshape(1, 1, -1)).sum(-1)
        ky = (att * gy.reshape(1, 1, -1)).sum(-1)
        return torch.stack([kx, ky], dim=-1).reshape(b, -1)


VISION_TRUNKS = {"small": SmallConvTrunk, "resnet18": ResNet18Trunk}


class ImageEncoder(nn.Module):
    """Trunk -> spatial-softmax keypoints -> linear + ReLU: float (B, 3, H, W) in [0, 1] -> (B, features)."""

    def __init__(self, kind: str = "small", keypoints: int = 32, features: int = 64):
        super().__init__()
        if kind not in VISION_TRUNKS:
            raise ValueError(f"unknown vision backbone {kind!r}; choose one of {sorted(VISION_TRUNKS)}")
        self.trunk = VISION_TRUNKS[kind]()
        self.pool = SpatialSoftmax(self.trunk.out_channels, keypoints)
        self.out = nn.Linear(2 * keypoints, features)

    def forward(self, x):
        # centre pixels on 0 (random init: no ImageNet statistics to match)
        return torch.relu(self.out(self.pool(self.trunk(2.0 * x - 1.0))))


def crop_images(x: torch.Tensor, size: tuple[int, int], generator: torch.Generator | None = None,
                random: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w): a random crop per sample (training augmentation) or the centre crop
    (acting), as Diffusion Policy does, so the encoder always sees h×w."""
    _, _, hh, ww = x.shape
    h, w = size
    if (h, w) == (hh, ww):
        return x
    if not random:
        t, lft = (hh - h) // 2, (ww - w) // 2
        return x[:, :, t:t + h, lft:lft + w]
    tops = torch.randint(0, hh - h + 1, (x.shape[0],), generator=generator).tolist()
    lefts = torch.randint(0, ww - w + 1, (x.shape[0],), generator=generator).tolist()
    return torch.stack([x[i, :, t:t + h, lft:lft + w] for i, (t, lft) in enumerate(zip(tops, lefts))])
