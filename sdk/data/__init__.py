"""Datasets: readers (IDX, list files, class folders), Fashion-MNIST, mosaics and splits (numpy + OpenCV)."""
from .dataset import LabeledImages
from .fashion_mnist import find_fashion_mnist, load_fashion_mnist
from .idx import read_idx
from .imagefolder import read_image_folder
from .images import read_image
from .listfile import read_list_file, write_list_file
from .mosaic import make_mosaic_dataset
from .sources import BUILTIN, DatasetSpec, SplitSizes, load_dataset, load_dataset_split
from .splits import Split, database_subset, split_by_size, split_per_class

__all__ = [
    "BUILTIN",
    "DatasetSpec",
    "database_subset",
    "LabeledImages",
    "Split",
    "SplitSizes",
    "find_fashion_mnist",
    "load_dataset",
    "load_dataset_split",
    "load_fashion_mnist",
    "make_mosaic_dataset",
    "read_idx",
    "read_image",
    "read_image_folder",
    "read_list_file",
    "split_by_size",
    "split_per_class",
    "write_list_file",
]
