"""Audio latent extraction throughput on CPU (clips/s), ours vs a bare loop doing the same work.

Ours is ``fusemix.cache.extract_split`` on the items side (decode with soundfile, mono, resample, trim, encode,
sharded safetensors writes). The peer is a bare loop over the same files: ``soundfile.read`` -> mix-down ->
``torchaudio.functional.resample`` -> the same encoder's forward pass, nothing written. Encoders: ``frozen-mel``
(the demo's log-mel pooling) and a Whisper-base-sized encoder built from its config with random weights (6 layers,
d_model 512, the real 30 s window; no download), through the same ``hf`` backend as ``whisper-base``. Clips: 44.1 kHz
stereo, 2-4 s. Threads: 1 on both sides. CPU time of this process (``time.process_time``), so the other jobs on
a shared machine do not inflate it. One JSON line per encoder.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fusemix.audio import Waveform, load_waveform, write_wav  # noqa: E402
from fusemix.cache import extract_split  # noqa: E402
from fusemix.data.manifest import read_manifest, write_manifest  # noqa: E402
from fusemix.encoders import EncoderSpec, load_encoder, resolve_encoder  # noqa: E402


def make_clips(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        seconds = rng.uniform(2.0, 4.0)
        t = np.arange(int(44100 * seconds)) / 44100
        left = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.01 * rng.standard_normal(t.size)
        write_wav(folder / f"{i}.wav", torch.from_numpy(np.stack([left, left[::-1]]).astype(np.float32)), 44100)
        rows.append({"item_id": str(i), "item_path": f"{i}.wav", "caption": f"clip {i}", "split": "train"})
    write_manifest(folder / "m.csv", rows)
    return folder / "m.csv"


def whisper_base_random(folder: Path) -> EncoderSpec:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(d_model=512, encoder_layers=6, decoder_layers=1, encoder_attention_heads=8,
                           decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=256, vocab_size=1000,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                           max_target_positions=8, suppress_tokens=[], begin_suppress_tokens=[])  # fmt: skip
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor().save_pretrained(folder)
    return EncoderSpec("whisper-base-random", "audio", "hf", str(folder), "mean", "WhisperModel", max_seconds=30.0,
                       batch_size=8)  # fmt: skip


def bare(spec: EncoderSpec, paths: list[Path]) -> float:
    import soundfile
    import torchaudio

    encoder = load_encoder(spec)
    rate = spec.sample_rate or 16000
    start = time.process_time()
    for i in range(0, len(paths), spec.batch_size):
        waves = []
        for path in paths[i : i + spec.batch_size]:
            data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
            mono = torchaudio.functional.resample(torch.from_numpy(data.T.copy()).mean(0), sr, rate)
            waves.append(Waveform(mono[None], rate))
        encoder.encode(waves)
    return len(paths) / (time.process_time() - start)


def ours(spec: EncoderSpec, manifest: Path, cache: Path) -> float:
    split = read_manifest(manifest).split("train")
    start = time.process_time()
    extract_split(split, "bench", spec, resolve_encoder("frozen-bow", "text"), cache, shard_size=64)
    return len(split.item_ids) / (time.process_time() - start)


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        for spec, n in ((resolve_encoder("frozen-mel", "audio"), 128), (whisper_base_random(tmp / "w"), 16)):
            manifest = make_clips(tmp / "clips", n)
            paths = [tmp / "clips" / f"{i}.wav" for i in range(n)]
            load_waveform(paths[0])  # warm-up: imports
            peer = bare(spec, paths)
            mine = ours(spec, manifest, tmp / f"cache-{spec.name}")
            print(json.dumps({
                "case": "audio_extraction_clips_per_s", "encoder": spec.name, "clips": n,
                "ours_clips_per_s": round(mine, 2), "peer_clips_per_s": round(peer, 2),
                "ratio": round(mine / peer, 3), "threads": torch.get_num_threads(),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
