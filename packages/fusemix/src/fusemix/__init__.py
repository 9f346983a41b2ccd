"""fusemix: multimodal fusion of frozen unimodal encoders with latent-space mixup (Vouitsis et al., CVPR 2024).

Cache the latents of two frozen encoders once (:func:`build_cache`), train small fusion adapters on them with
FuseMix and a symmetric InfoNCE (:func:`train`), and evaluate retrieval with several captions per item
(:func:`evaluate_retrieval`). See the package README for the CLI.
"""

from fusemix.adapters import ADAPTER_PRESETS, AdapterConfig, FusionAdapter, FusionModel, count_parameters
from fusemix.audio import Waveform, load_waveform, prepare_waveform
from fusemix.cache import build_cache, extract_split, latent_cache_path
from fusemix.captions import clean_caption
from fusemix.checkpoint import load_fusion_checkpoint, save_fusion_checkpoint
from fusemix.data.manifest import PairedManifest, PairedSplit, read_manifest, write_manifest
from fusemix.data.shapes import make_shapes_dataset
from fusemix.demo import DemoConfig, run_demo
from fusemix.encoders import EncoderSpec, load_encoder, register_encoder, registered_encoders, resolve_encoder
from fusemix.evaluate import embed_latents, evaluate_checkpoint, evaluate_retrieval
from fusemix.latents import PairedLatents, cached_encoder, load_paired_latents
from fusemix.loss import Temperature, symmetric_infonce
from fusemix.mixup import MixedBatch, fusemix, mix_halves, mixup_alpha, sample_lambda
from fusemix.optim import build_optimizer, learning_rate, parameter_groups
from fusemix.query import Hit, retrieve
from fusemix.recall_metrics import chance_recall, ranks_from_similarity, recall_at_k, retrieval_metrics, retrieval_ranks
from fusemix.subsample import choose_items, greedy_kdpp
from fusemix.train import TrainConfig, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "ADAPTER_PRESETS",
    "AdapterConfig",
    "DemoConfig",
    "EncoderSpec",
    "FusionAdapter",
    "FusionModel",
    "Hit",
    "MixedBatch",
    "PairedLatents",
    "PairedManifest",
    "PairedSplit",
    "Temperature",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "build_cache",
    "Waveform",
    "build_optimizer",
    "cached_encoder",
    "choose_items",
    "chance_recall",
    "clean_caption",
    "count_parameters",
    "embed_latents",
    "evaluate_checkpoint",
    "evaluate_retrieval",
    "extract_split",
    "fusemix",
    "greedy_kdpp",
    "latent_cache_path",
    "learning_rate",
    "load_encoder",
    "load_fusion_checkpoint",
    "load_paired_latents",
    "load_waveform",
    "make_shapes_dataset",
    "mix_halves",
    "mixup_alpha",
    "parameter_groups",
    "prepare_waveform",
    "ranks_from_similarity",
    "read_manifest",
    "recall_at_k",
    "register_encoder",
    "registered_encoders",
    "resolve_encoder",
    "retrieval_metrics",
    "retrieval_ranks",
    "retrieve",
    "run_demo",
    "sample_lambda",
    "save_fusion_checkpoint",
    "symmetric_infonce",
    "train",
    "write_manifest",
]
