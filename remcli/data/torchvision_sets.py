"""The datasets torchvision reads: CIFAR-10/100, SVHN, MNIST and Fashion-MNIST.

Loaders use torchvision's own dataset classes (`download=False` unless asked), so the on-disk
layouts are the ones torchvision documents; each split is decoded once into uint8 tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from remcli.data.datasets import CIFAR_MEAN, CIFAR_STD, DATASETS, DataSpec, LoadedSplits, Split, register_dataset, split_from_hwc
from remcli.errors import InputError


def _split_from_hwc(ds) -> Split:
    """CIFAR's (N, H, W, C) arrays."""
    return split_from_hwc(ds.data, ds.targets)


def _split_from_nhw(ds) -> Split:
    """MNIST's (N, H, W) grey tensors, given their channel axis."""
    images = torch.as_tensor(ds.data, dtype=torch.uint8).unsqueeze(1).contiguous()
    return Split(images, torch.as_tensor(ds.targets, dtype=torch.int64).clone())


def _torchvision(name: str, spec: DataSpec, download: bool, **kwargs):
    """Instantiate torchvision's dataset class `name`, turning its 'not found' into a one-line fix."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, name)
    try:
        return cls(str(spec.root), download=download, **kwargs)
    except RuntimeError as err:
        if "not found" in str(err).lower() or "download" in str(err).lower():
            raise InputError(
                f"{name} files not found under {spec.root}: expected {DATASETS.meta(spec.name)['layout']}; point ROOT at them or pass --download"
            ) from None
        raise


def _cifar(class_name: str, spec: DataSpec, download: bool) -> LoadedSplits:
    """CIFAR-10 and CIFAR-100 share torchvision's layout (HWC uint8 arrays) and remcli's statistics."""
    train = _torchvision(class_name, spec, download, train=True)
    test = _torchvision(class_name, spec, download, train=False)
    return LoadedSplits(
        split_from_hwc(train.data, train.targets), split_from_hwc(test.data, test.targets), tuple(train.classes), CIFAR_MEAN, CIFAR_STD
    )


@register_dataset("cifar10", layout="ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}", downloads=True)
def _load_cifar10(spec: DataSpec, download: bool) -> LoadedSplits:
    return _cifar("CIFAR10", spec, download)


@register_dataset("cifar100", layout="ROOT/cifar-100-python/{train,test,meta}", downloads=True)
def _load_cifar100(spec: DataSpec, download: bool) -> LoadedSplits:
    return _cifar("CIFAR100", spec, download)


@register_dataset("svhn", layout="ROOT/{train_32x32.mat,test_32x32.mat}", downloads=True)
def _load_svhn(spec: DataSpec, download: bool) -> LoadedSplits:
    train = _torchvision("SVHN", spec, download, split="train")
    test = _torchvision("SVHN", spec, download, split="test")

    def split(ds) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels, dtype=torch.int64))

    return LoadedSplits(split(train), split(test), tuple(str(i) for i in range(10)), CIFAR_MEAN, CIFAR_STD)


@register_dataset("mnist", layout="ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", downloads=True)
def _load_mnist(spec: DataSpec, download: bool) -> LoadedSplits:
    train = _torchvision("MNIST", spec, download, train=True)
    test = _torchvision("MNIST", spec, download, train=False)
    return LoadedSplits(_split_from_nhw(train), _split_from_nhw(test), tuple(train.classes), (0.1307,), (0.3081,))


@register_dataset("fashion-mnist", layout="ROOT/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", downloads=True)
def _load_fashion_mnist(spec: DataSpec, download: bool) -> LoadedSplits:
    train = _torchvision("FashionMNIST", spec, download, train=True)
    test = _torchvision("FashionMNIST", spec, download, train=False)
    return LoadedSplits(_split_from_nhw(train), _split_from_nhw(test), tuple(train.classes), (0.2860,), (0.3530,))
