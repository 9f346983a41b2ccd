"""Feature-extraction throughput (images/s) per encoder at batch sizes 1, 32 and 128 on the current device.

Weights are random (no download): the architectures are built from configs, at the real sizes on a GPU
(``--size real``, the default there) and at tiny sizes on CPU for the transformers encoders (``--size tiny``, the
default there; Inception and ResNet-50 are always their real architecture). Each case times ``extract_features``
on ``batch_size`` in-memory 256x256 PIL images (preprocessing included; one warm-up run, then the best of 3 runs,
interleaved with the peer's; wall time and this process's CPU time, which other processes' load does not
stretch). For ``inception`` the peers are pytorch-fid's ``InceptionV3`` (same random weights, same images as
[0, 1] tensors, its own batched resize) and torch-fidelity's ``FeatureExtractorInceptionV3`` (the same random
weights, uint8 input, its TF1-style resize), timed side by side; each ratio is ours / peer (time, so < 1 means
we are faster). torch-fidelity's DINOv2 and CLIP extractors only load their weights from torch.hub / a URL
(a local DINOv2 file raises NotImplementedError), so they cannot be timed offline.

Usage:
    uv run --all-packages python packages/dgm-eval/benchmarks/bench_encoders.py [--device cuda] [--encoders a,b]
        [--batch-sizes 1,32,128] [--size tiny|real] [--precision fp32|bf16|fp16] [--threads N]

Prints one JSON line per (encoder, batch size).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image

from dgm_eval.encoders import load_encoder
from dgm_eval.encoders.base import Encoder
from dgm_eval.extraction import extract_features
from sixlab_shared import get_device

ALL = ("inception", "sinception", "dinov2", "clip", "convnext", "mae", "data2vec", "swav", "pixel", "random")

#: (tiny, real) configs of the transformers encoders; real = the default arch of each.
VIT_TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
VIT_L = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}


def build_random(name: str, size: str) -> Encoder:
    """The encoder ``name`` with random weights, real or tiny architecture."""
    if name in ("pixel", "random"):
        return load_encoder(name, device="cpu")
    if name in ("inception", "sinception"):
        from dgm_eval.encoders.inception import InceptionEncoder

        return InceptionEncoder(spatial=name == "sinception")
    if name == "swav":
        from dgm_eval.encoders.swav import SwAVEncoder

        return SwAVEncoder()
    vit = VIT_L if size == "real" else VIT_TINY
    if name == "dinov2":
        from transformers import Dinov2Config, Dinov2Model

        from dgm_eval.encoders.dinov2 import DINOv2Encoder

        config = Dinov2Config(**{k: v for k, v in vit.items() if k != "intermediate_size"}, patch_size=14)
        return DINOv2Encoder(Dinov2Model(config), arch="vitl14", weights_id="random")
    if name == "clip":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        from dgm_eval.encoders.clip import CLIPEncoder

        config = CLIPVisionConfig(**vit, patch_size=14, image_size=224, projection_dim=768)
        return CLIPEncoder(CLIPVisionModelWithProjection(config), arch="vitl14", weights_id="random")
    if name == "convnext":
        from transformers import ConvNextConfig, ConvNextModel

        from dgm_eval.encoders.convnext import ConvNeXtEncoder, convnext_preprocessing

        sizes = ([192, 384, 768, 1536], [3, 3, 27, 3]) if size == "real" else ([16, 32, 64, 128], [1, 1, 2, 1])
        model = ConvNextModel(ConvNextConfig(hidden_sizes=sizes[0], depths=sizes[1]))
        return ConvNeXtEncoder(model, weights_id="random", preprocessing=convnext_preprocessing())
    if name == "mae":
        from transformers import ViTMAEConfig, ViTMAEModel

        from dgm_eval.encoders.mae import MAEEncoder, mae_preprocessing

        model = ViTMAEModel(ViTMAEConfig(**vit, patch_size=16, image_size=224, mask_ratio=0.0))
        return MAEEncoder(model, weights_id="random", preprocessing=mae_preprocessing())
    if name == "data2vec":
        from transformers import Data2VecVisionConfig, Data2VecVisionModel

        from dgm_eval.encoders.data2vec import Data2VecEncoder, data2vec_preprocessing

        config = Data2VecVisionConfig(**vit, patch_size=16, image_size=224, use_mean_pooling=True)
        model = Data2VecVisionModel(config, add_pooling_layer=True)
        return Data2VecEncoder(model, weights_id="random", preprocessing=data2vec_preprocessing())
    raise ValueError(f"unknown encoder {name!r}")


def make_images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


REPEATS = 3


def pytorch_fid_runner(encoder: Encoder, batch_size: int, device: torch.device):
    """pytorch-fid's InceptionV3 (its forward, its resize) with our random weights, as a run(images) function;
    None if pytorch-fid is not installed."""
    try:
        import pytorch_fid.inception as pfi
    except ImportError:
        return None
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for attr, block in (
        ("Mixed_5b", pfi.FIDInceptionA(192, pool_features=32)),
        ("Mixed_5c", pfi.FIDInceptionA(256, pool_features=64)),
        ("Mixed_5d", pfi.FIDInceptionA(288, pool_features=64)),
        ("Mixed_6b", pfi.FIDInceptionC(768, channels_7x7=128)),
        ("Mixed_6c", pfi.FIDInceptionC(768, channels_7x7=160)),
        ("Mixed_6d", pfi.FIDInceptionC(768, channels_7x7=160)),
        ("Mixed_6e", pfi.FIDInceptionC(768, channels_7x7=192)),
        ("Mixed_7b", pfi.FIDInceptionE_1(1280)),
        ("Mixed_7c", pfi.FIDInceptionE_2(2048)),
    ):
        setattr(net, attr, block)
    net.load_state_dict(encoder.net.state_dict())
    original = pfi.fid_inception_v3
    pfi.fid_inception_v3 = lambda: net
    try:
        peer = pfi.InceptionV3([3]).eval().to(device)
    finally:
        pfi.fid_inception_v3 = original

    def run(batch_images) -> None:
        with torch.no_grad():
            for i in range(0, len(batch_images), batch_size):  # pytorch-fid's loop: ToTensor per image, then batch
                chunk = batch_images[i : i + batch_size]
                x = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0) for im in chunk])
                peer(x.permute(0, 3, 1, 2).to(device))[0].squeeze(-1).squeeze(-1).cpu()
        _sync(device)

    return run


def torch_fidelity_runner(encoder: Encoder, batch_size: int, device: torch.device):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (its uint8 input, its TF1-style batched resize) with our
    random weights, as a run(images) function; None if torch-fidelity is not installed."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "random_inception.pth")
        torch.save(encoder.net.state_dict(), path)  # the same layout as the published FID weights
        peer = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
    peer = peer.eval().to(device)

    def run(batch_images) -> None:
        with torch.no_grad():
            for i in range(0, len(batch_images), batch_size):
                chunk = batch_images[i : i + batch_size]
                x = torch.stack([torch.from_numpy(np.array(im, dtype=np.uint8)) for im in chunk])
                peer(x.permute(0, 3, 1, 2).contiguous().to(device))[0].cpu()
        _sync(device)

    return run


def ours_runner(encoder: Encoder, batch_size: int, device: torch.device, precision: str):
    def run(batch_images) -> None:
        extract_features(
            batch_images, encoder, batch_size=batch_size, device=device, precision=precision, progress=False
        )
        _sync(device)

    return run


def best_times(runs, images) -> tuple[list[float], list[float]]:
    """Warm each runner up once, then time them interleaved REPEATS times; the best wall and the best CPU time
    (this process's, which other processes' load does not stretch) of each."""
    for run in runs:
        run(images)
    best = [float("inf")] * len(runs)
    best_cpu = [float("inf")] * len(runs)
    for _ in range(REPEATS):
        for i, run in enumerate(runs):
            start, cpu_start = time.perf_counter(), time.process_time()
            run(images)
            best[i] = min(best[i], time.perf_counter() - start)
            best_cpu[i] = min(best_cpu[i], time.process_time() - cpu_start)
    return best, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--encoders", default=",".join(ALL))
    parser.add_argument("--batch-sizes", default="1,32,128")
    parser.add_argument("--size", choices=("tiny", "real"), default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    size = args.size or ("real" if device.type == "cuda" else "tiny")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    images = make_images(max(batch_sizes))
    for name in args.encoders.split(","):
        encoder = build_random(name, size).to(device).eval()
        for batch_size in batch_sizes:
            batch = images[:batch_size]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            runs = [ours_runner(encoder, batch_size, device, args.precision)]
            peers = []
            if name == "inception" and args.precision == "fp32":
                for label, make in (("pytorch-fid InceptionV3", pytorch_fid_runner),
                                    ("torch-fidelity FeatureExtractorInceptionV3", torch_fidelity_runner)):  # fmt: skip
                    peer_run = make(encoder, batch_size, device)
                    if peer_run is not None:
                        runs.append(peer_run)
                        peers.append(label)
            times, cpu_times = best_times(runs, batch)
            ours = times[0]
            row = {
                "bench": "encoders",
                "encoder": name,
                "size": size if name not in ("inception", "sinception", "swav", "pixel", "random") else "real",
                "device": str(device),
                "precision": args.precision,
                "batch_size": batch_size,
                "n_images": len(batch),
                "ours_s": round(ours, 4),
                "images_per_s": round(len(batch) / ours, 2),
                "ours_cpu_s": round(cpu_times[0], 4),
                "images_per_cpu_s": round(len(batch) / cpu_times[0], 2),
                "threads": torch.get_num_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            }
            if device.type == "cuda":
                row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            for label, peer_time, peer_cpu in zip(peers, times[1:], cpu_times[1:], strict=True):
                row.setdefault("peers", {})[label] = {
                    "peer_s": round(peer_time, 4),
                    "ratio": round(ours / peer_time, 3),
                    "peer_cpu_s": round(peer_cpu, 4),
                    "cpu_ratio": round(cpu_times[0] / peer_cpu, 3),
                }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
