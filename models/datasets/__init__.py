"""Image data sets for the lab: one registry, one in-memory form, and streamed image folders.

Every data set comes out as an :class:`ImageDataset` (float32 RGB ``(N, 3, H, W)`` in ``[0, 1]``,
int64 labels, class names, optional masks, a ``source`` record); :func:`load_dataset` loads one
by name. Registered (see :data:`DATASETS`):

* ``fashion-mnist-m`` (default; :mod:`.fashion_mnist_m`): Fashion-MNIST garments, tinted, on
  32x32 crops of real photographs, built once and cached;
* ``fashion-mnist``, ``digits`` (:mod:`.builtin`) and ``colour-bias`` (:mod:`.colour_bias`, the
  paper's section 4.7 set; ``colour-bias-shortcut``, its variant where colour predicts the class in
  training), built from data installed locally;
* ``cifar10``, ``cifar100``, ``svhn``, ``mnist`` (:mod:`.formats`) and ``imagefolder``
  (:mod:`.folders`; also streamed, ``stream=True``), read from a ``root`` directory in the usual
  on-disk formats. Nothing is ever downloaded.

Missing or malformed data raise :class:`DatasetError` naming the expected location and format.
"""

from __future__ import annotations

from models.datasets import builtin, colour_bias, fashion_mnist_m, folders, formats  # noqa: F401  (register)
from models.datasets.builtin import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR
from models.datasets.colour_bias import COLOUR_BIAS_COLOURS, COLOUR_BIAS_MAJORITY, COLOUR_BIAS_MAJORITY_FRACTION
from models.datasets.fashion_mnist_m import GENERATOR_VERSION, PHOTOS
from models.datasets.folders import (
    IMAGEFOLDER_DEFAULT_SIZE,
    StreamingImageFolder,
    make_loader,
    read_image,
    resize_centre_crop,
    stream_imagefolder,
)
from models.datasets.formats import DIGIT_CLASSES
from models.datasets.registry import (
    DATASETS,
    DEFAULT_DATASET,
    MASK_THRESHOLD,
    SIZE,
    SPLITS,
    DatasetError,
    ImageDataset,
    RawArrays,
    dataset_names,
    load_dataset,
    register_loader,
)

__all__ = [
    "COLOUR_BIAS_COLOURS",
    "COLOUR_BIAS_MAJORITY",
    "COLOUR_BIAS_MAJORITY_FRACTION",
    "DATASETS",
    "DEFAULT_DATASET",
    "DIGIT_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "GENERATOR_VERSION",
    "IMAGEFOLDER_DEFAULT_SIZE",
    "MASK_THRESHOLD",
    "PHOTOS",
    "SIZE",
    "SPLITS",
    "DatasetError",
    "ImageDataset",
    "RawArrays",
    "StreamingImageFolder",
    "dataset_names",
    "load_dataset",
    "make_loader",
    "read_image",
    "register_loader",
    "resize_centre_crop",
    "stream_imagefolder",
]
