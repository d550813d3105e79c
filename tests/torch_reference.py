"""A small PyTorch re-implementation of the networks whose checkpoints we read: torchvision's 2D
ResNet18/50 layout and the official V4D layout (3D ResNet under ``module.base_model.``, 4D blocks,
classifier ``module.new_fc``). Independent of keras_v4d: it is the truth the converters must match.
"""

import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, cin, filters, stride, kt, bottleneck, dims):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        bn = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d

        def k(t, s):  # kernel t×s×s (3D) or s×s (2D)
            return (t, s, s) if dims == 3 else (s, s)

        def st(s):
            return (1, s, s) if dims == 3 else (s, s)

        def pad(t, s):
            return (t // 2, s // 2, s // 2) if dims == 3 else (s // 2, s // 2)

        self.bottleneck = bottleneck
        out = filters * (4 if bottleneck else 1)
        if bottleneck:
            self.conv1 = conv(cin, filters, k(kt, 1), padding=pad(kt, 1), bias=False)
            self.conv2 = conv(filters, filters, k(1, 3), stride=st(stride), padding=pad(1, 3), bias=False)
            self.conv3 = conv(filters, out, k(1, 1), bias=False)
            self.bn3 = bn(out)
        else:
            self.conv1 = conv(cin, filters, k(kt, 3), stride=st(stride), padding=pad(kt, 3), bias=False)
            self.conv2 = conv(filters, filters, k(kt, 3), padding=pad(kt, 3), bias=False)
        self.bn1, self.bn2 = bn(filters), bn(filters)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(conv(cin, out, k(1, 1), stride=st(stride), bias=False), bn(out))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.bottleneck:
            y = self.bn3(self.conv3(F.relu(y)))
        return F.relu(y + shortcut)


class V4DBlock(nn.Module):
    """x + Conv4D(x) over (U, T) with kernel (3, 3, 1, 1); weight in the 'fast' (C, C, 3, 3, 1) or
    the 'loop' (3, C, C, 3, 1, 1) form."""

    def __init__(self, channels, form):
        super().__init__()
        self.form = form
        shape = (channels, channels, 3, 3, 1) if form == "fast" else (3, channels, channels, 3, 1, 1)
        self.weight = nn.Parameter(torch.randn(shape) * 0.05)

    def forward(self, x, units):  # x: (B·U, C, T, H, W)
        n, c, t, h, w = x.shape
        v = x.reshape(n // units, units, c, t, h, w)
        if self.form == "fast":
            z = v.permute(0, 2, 1, 3, 4, 5).reshape(n // units, c, units, t, h * w)
            y = F.conv3d(z, self.weight, padding=(1, 1, 0))
            y = y.reshape(n // units, c, units, t, h, w).permute(0, 2, 1, 3, 4, 5)
        else:  # loop over the unit offset, one Conv3d per offset (eq. 1)
            padded = F.pad(v, (0, 0, 0, 0, 0, 0, 0, 0, 1, 1))
            y = sum(F.conv3d(padded[:, k:k + units].reshape(n, c, t, h, w), self.weight[k], padding=(1, 0, 0))
                    .reshape(n // units, units, c, t, h, w) for k in range(3))
        return x + y.reshape(n, c, t, h, w)


class ResNet(nn.Module):
    """torchvision-named ResNet; ``dims=3`` is I3D-S (temporal kernels 1,1,3,3) with optional 4D blocks."""

    def __init__(self, depth, dims, classes=0, blocks4d=(), form="fast"):
        super().__init__()
        bottleneck = depth == 50
        repeats = (3, 4, 6, 3) if bottleneck else (2, 2, 2, 2)
        conv, bn = (nn.Conv3d, nn.BatchNorm3d) if dims == 3 else (nn.Conv2d, nn.BatchNorm2d)
        kernel, stride, pad = ((1, 7, 7), (1, 2, 2), (0, 3, 3)) if dims == 3 else (7, 2, 3)
        self.conv1, self.bn1 = conv(3, 64, kernel, stride, pad, bias=False), bn(64)
        self.dims = dims
        cin = 64
        self.blocks4d = nn.ModuleDict()
        for s, (filters, n, kt) in enumerate(zip((64, 128, 256, 512), repeats, (1, 1, 3, 3))):
            layer = []
            for b in range(n):
                layer.append(Block(cin, filters, 2 if b == 0 and s > 0 else 1, kt if dims == 3 else 1, bottleneck, dims))
                cin = filters * (4 if bottleneck else 1)
                if (s + 1, b) in blocks4d:
                    self.blocks4d[f"layer{s + 1}_{b}"] = V4DBlock(cin, form)
            setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(cin, classes) if classes else None
        for m in self.modules():  # non-trivial BN so that a wrong mapping shows
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                for p, scale in ((m.weight, 0.5), (m.bias, 0.2), (m.running_mean, 0.2)):
                    p.data = torch.randn_like(p) * scale + (1.0 if p is m.weight else 0.0)
                m.running_var.data = torch.rand_like(m.running_var) + 0.5

    def features(self, x, units=1):
        pool = F.max_pool3d(F.pad(F.relu(self.bn1(self.conv1(x))), (1, 1, 1, 1)), (1, 3, 3), (1, 2, 2)) \
            if self.dims == 3 else F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = pool
        for s in range(4):
            for b, block in enumerate(getattr(self, f"layer{s + 1}")):
                x = block(x)
                if f"layer{s + 1}_{b}" in self.blocks4d:
                    x = self.blocks4d[f"layer{s + 1}_{b}"](x, units)
        return x

    def forward(self, video):  # video (B, U, T, H, W, 3) channels-last, as the Keras models take
        b, u = video.shape[:2]
        x = video.reshape(b * u, *video.shape[2:]).permute(0, 4, 1, 2, 3)
        x = self.features(x, u).mean(dim=(2, 3, 4)).reshape(b, u, -1).mean(1)
        return F.softmax(self.fc(x), dim=-1)


def official_state_dict(model):
    """The official V4D checkpoint layout (SPEC §9): a dict with ``state_dict``, backbone keys under
    ``module.base_model.`` (torchvision names), each 4D block's weight next to the block it follows,
    classifier ``module.new_fc``."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            state["module.new_fc." + key[3:]] = value
        elif key.startswith("blocks4d."):
            stage_block, parameter = key[len("blocks4d."):].split(".")
            stage, block = stage_block.split("_")
            state[f"module.base_model.{stage}.{block}.conv4d.{parameter}"] = value
        else:
            state["module.base_model." + key] = value
    return {"state_dict": state, "epoch": 1, "arch": "resnet"}
