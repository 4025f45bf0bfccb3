"""sadh.sdk: the torch-free runtime (numpy; OpenCV and onnxruntime or TensorRT on first use): encoder, codes, Hamming index, metrics, data,
and the workflow on exported models: resumable encoding, index building, evaluation with its report, benchmarks."""
from . import image_limits  # noqa: F401 - first: it sets OpenCV's pixel limit before OpenCV is imported
from .benchmark import benchmark
from .codes import hamming_distance, pack_codes, unpack_codes
from .encoder import Encoder
from .encoding import encode_items
from .errors import SadhError
from .evaluation import evaluate, evaluate_model, score
from .grid import retrieval_grid
from .formats.index_sidecar import Sidecar
from .formats.records import sidecar_path
from .index import HammingIndex
from .indexing import add_files, build_index, remove_ids, search_files
from .metrics import MAPResult, mean_average_precision, precision_at_n, precision_recall_by_radius
from .mih import MultiIndexHashingIndex
from .model_split import load_for_model
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
    "add_files",
    "benchmark",
    "build_index",
    "encode_items",
    "evaluate",
    "evaluate_model",
    "hamming_distance",
    "load_for_model",
    "load_index",
    "mean_average_precision",
    "pack_codes",
    "precision_at_n",
    "precision_recall_by_radius",
    "preprocess",
    "remove_ids",
    "retrieval_grid",
    "score",
    "search_files",
    "sidecar_path",
    "unpack_codes",
]
