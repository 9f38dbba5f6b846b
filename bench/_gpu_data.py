"""A dataset of CIFAR-10's shape for GPU timings (random 3x32x32 uint8 images, 10 classes,
50,000 training and 10,000 test images): the compute of a search step does not depend on the
pixels. A plugin module (``ARCHGRAD_PLUGINS=_gpu_data`` with bench/ on the path) so that a
sweep's worker processes have it too."""
import os

import torch

from archgrad.data import DATASETS, DatasetInfo


def read_cifar_shaped(data_dir=None):
    """``$ARCHGRAD_CIFAR_SHAPED_N`` training images (50,000; a dry run takes fewer), a fifth as
    many test images."""
    n_train = int(os.environ.get("ARCHGRAD_CIFAR_SHAPED_N", "50000"))
    n_test = max(2, n_train // 5)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


if "cifar-shaped" not in DATASETS.names():
    DATASETS.register("cifar-shaped", DatasetInfo(
        read_cifar_shaped, True, "random images of CIFAR-10's shape, for GPU timings",
        search_epochs=50, search_batch_size=64))
