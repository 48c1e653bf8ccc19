"""Reference network topologies from the literature, as untrained torch modules (for
benchmarks and scale tests; the bundled default model is in :mod:`hwquant.train`)."""

from torch import nn

__all__ = ["cnv"]


def cnv(num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    """The CIFAR-10 "CNV" topology of FINN's BNN-PYNQ (Umuroglu et al., "FINN: A Framework
    for Fast, Scalable Binarized Neural Network Inference", 2017) for 32x32 inputs: 3x3 valid
    convolutions of 64, 64 channels, max pool 2, 128, 128, max pool 2, 256, 256 (each with
    BatchNorm and ReLU), then linear 256 -> 512 -> 512 -> ``num_classes``. Eval mode."""
    layers, c = [], in_channels
    for spec in (64, 64, "M", 128, 128, "M", 256, 256):
        if spec == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, spec, 3), nn.BatchNorm2d(spec), nn.ReLU()]
            c = spec
    layers += [nn.Flatten(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
               nn.Linear(512, num_classes)]
    return nn.Sequential(*layers).eval()
