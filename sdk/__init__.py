"""sadh.sdk: the torch-free runtime (numpy; OpenCV and onnxruntime or TensorRT on first use): encoder, codes, Hamming index, metrics, data."""
from . import image_limits  # noqa: F401 - first: it sets OpenCV's pixel limit before OpenCV is imported
from .codes import hamming_distance, pack_codes, unpack_codes
from .encoder import Encoder
from .errors import SadhError
from .grid import retrieval_grid
from .formats.index_sidecar import Sidecar
from .formats.records import sidecar_path
from .index import HammingIndex
from .metrics import MAPResult, mean_average_precision, precision_at_n, precision_recall_by_radius
from .mih import MultiIndexHashingIndex
from .preprocess import Preprocess, preprocess
from .retriever import Retriever, load_index

__all__ = [
    "Encoder",
    "HammingIndex",
    "MAPResult",
    "MultiIndexHashingIndex",
    "Preprocess",
    "Retriever",
    "SadhError",
    "Sidecar",
    "hamming_distance",
    "load_index",
    "mean_average_precision",
    "pack_codes",
    "precision_at_n",
    "precision_recall_by_radius",
    "preprocess",
    "retrieval_grid",
    "sidecar_path",
    "unpack_codes",
]
