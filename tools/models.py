"""PyTorch definitions of the small reference CNNs that tools/make_graphs.py exports.

* ``CifarResNet`` / ``resnet20`` / ``resnet56``: He et al. 2016 (arXiv:1512.03385,
  section 4.2), CIFAR variant: conv3x3 stem (16 ch), three stages of ``n`` basic
  blocks with 16/32/64 channels (stride 2 at the start of stages 2 and 3), global
  average pool, linear classifier; depth = 6n + 2.  Shortcuts are the paper's
  OPTION A (parameter-free): identity, and when the shape changes, a strided
  slice ``x[:, :, ::2, ::2]`` followed by zero-padding of the channel axis.
* ``CifarMobileNetV2``: the usual CIFAR adaptation of MobileNetV2 (as in
  kuangliu/pytorch-cifar): stride-1 conv3x3 stem to 32 ch, 17 inverted-residual
  blocks with (t, c, n, s) = (1,16,1,1) (6,24,2,1) (6,32,3,2) (6,64,4,2)
  (6,96,3,1) (6,160,3,2) (6,320,1,1), conv1x1 to 1280, global average pool,
  linear.  Blocks follow torchvision: ReLU6, no expansion conv when t == 1, and
  a residual add only when stride == 1 and in == out channels.
* ``MnistCNN``: a small conv-heavy MNIST net (28 -> 14 -> 7).

Every conv is bias-free and followed by BatchNorm, so a BN-folding export gives
each conv exactly one (weight, bias) pair.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------- ResNet


class BasicBlockA(nn.Module):
    """Basic residual block with an option-A (slice + zero-pad) shortcut."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        if self.downsample:
            # Option A only handles the CIFAR case: channels double, spatial halves.
            assert stride == 2 and planes == 2 * in_planes, (in_planes, planes, stride)
        self.planes = planes

    def shortcut(self, x):
        if not self.downsample:
            return x
        p = self.planes // 4
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p), "constant", 0)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, n, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.in_planes = 16
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.fc = nn.Linear(64, num_classes)

    def _make_layer(self, planes, n, stride):
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(BasicBlockA(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet20(in_channels=3, num_classes=10):
    return CifarResNet(3, in_channels, num_classes)


def resnet56(in_channels=3, num_classes=10):
    return CifarResNet(9, in_channels, num_classes)


# ---------------------------------------------------------------- MobileNetV2


def conv_bn_relu6(cin, cout, k, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand_ratio):
        super().__init__()
        hidden = cin * expand_ratio
        self.use_res = stride == 1 and cin == cout
        layers = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(cin, hidden, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res:
            return x + self.conv(x)
        return self.conv(x)


class CifarMobileNetV2(nn.Module):
    CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        layers = [conv_bn_relu6(in_channels, 32, 3, stride=1)]
        cin = 32
        for t, c, n, s in self.CFG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_relu6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenetv2_cifar(in_channels=3, num_classes=10):
    return CifarMobileNetV2(in_channels, num_classes)


# ------------------------------------------------------------------ MNIST CNN


class MnistCNN(nn.Module):
    """conv(1->16) pool conv(16->32) pool conv(32->32) linear(32*7*7 -> 10)."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 7 * 7, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # 28 -> 14
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # 14 -> 7
        x = F.relu(self.bn3(self.conv3(x)))
        x = torch.flatten(x, 1)
        return self.fc(x)


def mnist_cnn(in_channels=1, num_classes=10):
    return MnistCNN(in_channels, num_classes)
