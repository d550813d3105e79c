"""PyTorch networks whose checkpoints the converters read — the truth they are tested against.
Independent of keras_v4d.

- ``TorchvisionResNet``: torchvision's 2D ResNet18/50 layout (``conv1``, ``layer1.0.conv1``,
  ``layer1.0.downsample.0`` …), the source of ImageNet inflation.
- ``TSN`` + ``I3ResNet``: the module structure of the official V4D code (``models.py`` /
  ``i3res.py``, read for its module structure and key names, not copied). ``TSN`` holds ``base_model`` (the 3D
  ResNet) and ``new_fc``; each stage ``layerN`` is one ``nn.Sequential`` into which an ``R4D``
  module (its conv under the attribute ``tsa``) is *appended right after every other residual
  block* (blocks 1, 3, 5 …), so the residual blocks after it shift by one index: V4D-R50's
  ``layer2`` holds ``0, 1, 2.tsa, 3, 4, 5.tsa``; V4D-R18 has ``layer2.2.tsa`` and ``layer3.2.tsa``.
  ``tsa`` is the fast form, ``Conv3d(C, C, (3, 3, 1), padding=(1, 1, 0), bias=False)`` over
  ``(B, C, U, T, H·W)``, or the loop form, the official ``Conv4d`` whose single weight is stored
  ``(k_u, C_out, C_in, k_t, k_h, k_w)``. ``save_official_checkpoint`` wraps the network in
  ``nn.DataParallel`` (keys ``module.base_model.…``, ``module.new_fc.…``) and writes the dict the
  official training script writes: ``epoch``, ``arch``, ``state_dict``, ``best_prec1``.

Weights are random and the BN statistics non-trivial so that a wrong mapping shows. The official
code leaves its head dropout on at test time (``F.dropout`` without ``training``); the reference
has no dropout, which is what an evaluation should compute.
"""

import torch
from torch import nn
from torch.nn import functional as F

REPEATS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}
TEMPORAL_KERNELS = (1, 1, 3, 3)  # I3D-S: res2, res3 2D; res4, res5 3D (V4D Table 1)
# Stages with R4D modules in the official code: R50 layer2 (res3); R18 layer2 and layer3.
OFFICIAL_4D_STAGES = {50: ("layer2",), 18: ("layer2", "layer3")}


def randomize_batch_norm(module, generator=None):
    """Non-trivial BN scale, shift and running statistics, so that a wrong mapping shows."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
    return module


# --------------------------------------------------------------------------- torchvision 2D ResNet
class TorchvisionBlock(nn.Module):
    def __init__(self, cin, filters, stride, bottleneck):
        super().__init__()
        out = filters * (4 if bottleneck else 1)
        if bottleneck:  # torchvision (v1.5): the stride sits in the 3x3 conv
            self.conv1 = nn.Conv2d(cin, filters, 1, bias=False)
            self.conv2 = nn.Conv2d(filters, filters, 3, stride, 1, bias=False)
            self.conv3 = nn.Conv2d(filters, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
        else:
            self.conv1 = nn.Conv2d(cin, filters, 3, stride, 1, bias=False)
            self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(filters), nn.BatchNorm2d(filters)
        self.bottleneck = bottleneck
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.bottleneck:
            y = self.bn3(self.conv3(F.relu(y)))
        return F.relu(y + shortcut)


class TorchvisionResNet(nn.Module):
    """torchvision's ``resnet18``/``resnet50`` without the classifier (module names as torchvision's)."""

    def __init__(self, depth):
        super().__init__()
        bottleneck = depth == 50
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        cin = 64
        for s, (filters, n) in enumerate(zip((64, 128, 256, 512), REPEATS[depth])):
            blocks = []
            for b in range(n):
                blocks.append(TorchvisionBlock(cin, filters, 2 if b == 0 and s > 0 else 1, bottleneck))
                cin = filters * (4 if bottleneck else 1)
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        randomize_batch_norm(self)

    def features(self, x):  # (N, 3, H, W) -> (N, C, h, w)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for s in range(4):
            x = getattr(self, f"layer{s + 1}")(x)
        return x


# --------------------------------------------------------------------------- official V4D layout
class Conv4d(nn.Module):
    """The role of the official ``conv4d.Conv4d``: one weight stored pre-permuted as
    ``(k_u, C_out, C_in, k_t, k_h, k_w)``; the output at unit ``u`` sums a Conv3d over
    (T, H, W) of the input at unit ``u + i - k_u // 2`` with the slice ``weight[i]``, zero
    padding along U."""

    def __init__(self, in_channels, out_channels, kernel_size, padding):
        super().__init__()
        self.padding = tuple(padding)
        self.weight = nn.Parameter(torch.empty(kernel_size[0], out_channels, in_channels, *kernel_size[1:]))
        nn.init.normal_(self.weight, std=0.05)

    def forward(self, x):  # (B, C, U, T, H, W)
        b, c, u, t, h, w = x.shape
        pad = self.padding[0]
        zeros = x.new_zeros(b, c, pad, t, h, w)
        padded = torch.cat((zeros, x, zeros), dim=2)
        out = []
        for i in range(u):
            out.append(sum(F.conv3d(padded[:, :, i + k], self.weight[k], padding=self.padding[1:])
                           for k in range(self.weight.shape[0])))
        return torch.stack(out, dim=2)


class R4D(nn.Module):
    """``x + tsa(x)`` across the units of a video (V4D eq. 3 with the released code's 4D block:
    no BN, no ReLU). Input and output ``(B·U, C, T, H, W)``."""

    def __init__(self, in_channels, num_segments=4, fast_implementation=0):
        super().__init__()
        self.num_segments = num_segments
        self.fast_implementation = fast_implementation
        if fast_implementation:
            self.tsa = nn.Conv3d(in_channels, in_channels, (3, 3, 1), padding=(1, 1, 0), bias=False)
            nn.init.normal_(self.tsa.weight, std=0.05)
        else:
            self.tsa = Conv4d(in_channels, in_channels, (3, 3, 1, 1), padding=(1, 1, 0, 0))

    def forward(self, x):
        n, c, t, h, w = x.shape
        v = x.reshape(-1, self.num_segments, c, t, h, w).permute(0, 2, 1, 3, 4, 5)  # (B, C, U, T, H, W)
        if self.fast_implementation:
            y = self.tsa(v.reshape(-1, c, self.num_segments, t, h * w))
        else:
            y = self.tsa(v)
        y = y.reshape(-1, c, self.num_segments, t, h, w).permute(0, 2, 1, 3, 4, 5).reshape(n, c, t, h, w)
        return x + y


class BasicBlock3d(nn.Module):
    """ResNet18's block inflated as in ``I3ResNet_18_34``: both 3×3 convs get the stage's kt."""

    expansion = 1

    def __init__(self, cin, filters, stride, time_dim):
        super().__init__()
        kernel, padding = (time_dim, 3, 3), (time_dim // 2, 1, 1)
        self.conv1 = nn.Conv3d(cin, filters, kernel, (1, stride, stride), padding, bias=False)
        self.bn1 = nn.BatchNorm3d(filters)
        self.conv2 = nn.Conv3d(filters, filters, kernel, 1, padding, bias=False)
        self.bn2 = nn.BatchNorm3d(filters)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != filters:
            self.downsample = nn.Sequential(nn.Conv3d(cin, filters, 1, (1, stride, stride), bias=False),
                                            nn.BatchNorm3d(filters))

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck3d(nn.Module):
    """ResNet50's block inflated as in ``I3ResNet``: kt×1×1 → 1×3×3 (spatial stride) → 1×1×1."""

    expansion = 4

    def __init__(self, cin, filters, stride, time_dim):
        super().__init__()
        out = filters * 4
        self.conv1 = nn.Conv3d(cin, filters, (time_dim, 1, 1), padding=(time_dim // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(filters)
        self.conv2 = nn.Conv3d(filters, filters, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(filters)
        self.conv3 = nn.Conv3d(filters, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv3d(cin, out, 1, (1, stride, stride), bias=False),
                                            nn.BatchNorm3d(out))

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def inflate_reslayer(block, cin, filters, repeats, stride, time_dim, with_r4d, num_segments, fast_implementation):
    """One stage as the official code builds it: an ``nn.Sequential`` of residual blocks with an
    ``R4D`` appended right after every other block (indices 1, 3, 5 … of the residual blocks)."""
    modules = []
    for index in range(repeats):
        modules.append(block(cin, filters, stride if index == 0 else 1, time_dim))
        cin = filters * block.expansion
        if with_r4d and index % 2 == 1:
            modules.append(R4D(cin, num_segments=num_segments, fast_implementation=fast_implementation))
    return nn.Sequential(*modules), cin


class I3ResNet(nn.Module):
    """The official 3D backbone (``base_model``): I3D-S ResNet18/50 with ``R4D`` modules inside the
    stages listed in ``stages_4d`` (default: the official placement; ``()`` for the TSN/I3D-S
    baseline). Returns pooled features ``(B·U, C)``."""

    def __init__(self, depth, num_segments=4, fast_implementation=1, stages_4d=None):
        super().__init__()
        block = Bottleneck3d if depth == 50 else BasicBlock3d
        stages_4d = OFFICIAL_4D_STAGES[depth] if stages_4d is None else tuple(stages_4d)
        self.conv1 = nn.Conv3d(3, 64, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        cin = 64
        for s, (filters, repeats, time_dim) in enumerate(zip((64, 128, 256, 512), REPEATS[depth], TEMPORAL_KERNELS)):
            name = f"layer{s + 1}"
            layer, cin = inflate_reslayer(block, cin, filters, repeats, 1 if s == 0 else 2, time_dim,
                                          name in stages_4d, num_segments, fast_implementation)
            setattr(self, name, layer)
        self.feature_dim = cin

    def forward(self, x):  # (B·U, 3, T, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for s in range(4):
            x = getattr(self, f"layer{s + 1}")(x)
        return x.mean(dim=(2, 3, 4))


class TSN(nn.Module):
    """The official wrapper: ``base_model`` on every unit, ``new_fc`` per unit, scores averaged
    over the units (TSN's consensus), softmax. Takes the Keras layout ``(B, U, T, H, W, 3)``."""

    def __init__(self, num_class, depth, num_segments=4, fast_implementation=1, stages_4d=None):
        super().__init__()
        self.num_segments = num_segments
        self.base_model = I3ResNet(depth, num_segments, fast_implementation, stages_4d)
        self.new_fc = nn.Linear(self.base_model.feature_dim, num_class)
        # Scores of a few units, so that the probabilities spread and a wrong mapping shows in them.
        nn.init.normal_(self.new_fc.weight, std=3 / self.base_model.feature_dim ** 0.5)
        nn.init.normal_(self.new_fc.bias, std=0.1)
        randomize_batch_norm(self)

    def forward(self, video):
        b, u = video.shape[:2]
        x = video.reshape(b * u, *video.shape[2:]).permute(0, 4, 1, 2, 3)  # (B·U, 3, T, H, W)
        scores = self.new_fc(self.base_model(x)).reshape(b, u, -1).mean(dim=1)
        return F.softmax(scores, dim=-1)


def save_official_checkpoint(net, path, arch="i3dresnet50", epoch=150, best_prec1=77.4):
    """Writes ``net`` the way the official training script does: ``nn.DataParallel`` (the
    ``module.`` prefix) and a dict with ``epoch``, ``arch``, ``state_dict``, ``best_prec1``."""
    state_dict = nn.DataParallel(net).state_dict()
    torch.save({"epoch": epoch, "arch": arch, "state_dict": state_dict, "best_prec1": best_prec1}, path)
    return state_dict
