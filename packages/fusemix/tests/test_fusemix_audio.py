"""Audio: decoding against the stdlib, mono mix-down and resampling against torchaudio, Whisper pooled over valid
frames only, AST and the CLAP audio tower through transformers, the concatenated latent's layout, the synthetic
sounds, and audio through cache -> train -> evaluate -> retrieve."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from typer.testing import CliRunner

from fusemix.audio import Waveform, load_waveform, pad_or_trim, prepare_waveform, to_mono, write_wav
from fusemix.cache import build_cache
from fusemix.cli import app
from fusemix.data.items import UnreadableItemError
from fusemix.data.manifest import read_manifest
from fusemix.data.sounds import make_sounds_dataset
from fusemix.encoders import EncoderSpec, load_encoder, register_encoder, resolve_encoder
from fusemix.latents import load_paired_latents

runner = CliRunner()
MEL = resolve_encoder("frozen-mel", "audio")


def _stereo(rate: int = 22050, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 1000 * t)])  # 2 x T


def test_wav_decoding_matches_the_stdlib_wave_module(tmp_path) -> None:
    samples = _stereo()
    pcm = np.round(samples.T * 32767).astype("<i2")
    with wave.open(str(tmp_path / "s.wav"), "wb") as handle:  # written by the stdlib, independently of us
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(22050)
        handle.writeframes(pcm.tobytes())
    decoded = load_waveform(tmp_path / "s.wav")
    assert decoded.sample_rate == 22050 and decoded.samples.shape == (2, samples.shape[1])
    torch.testing.assert_close(decoded.samples, torch.from_numpy(pcm.T.astype(np.float32) / 32768.0))
    # FLAC through the same path, lossless
    import soundfile

    soundfile.write(str(tmp_path / "s.flac"), pcm, 22050)
    torch.testing.assert_close(load_waveform(tmp_path / "s.flac").samples, decoded.samples)


def test_mixdown_resample_and_trim_against_torchaudio() -> None:
    samples = torch.from_numpy(_stereo()).float()
    prepared = prepare_waveform(Waveform(samples, 22050), 16000, max_seconds=0.25)
    expected = torchaudio.functional.resample(samples.mean(0), 22050, 16000)[:4000]
    torch.testing.assert_close(prepared, expected)
    # torchaudio's Resample transform on the mixed-down signal agrees too
    transform = torchaudio.transforms.Resample(22050, 16000)
    torch.testing.assert_close(prepared, transform(samples.mean(0))[:4000])
    assert torch.equal(to_mono(samples[:1]), samples[0])
    padded, valid = pad_or_trim(torch.ones(5), 8)
    assert valid == 5 and padded[5:].abs().sum() == 0
    trimmed, valid = pad_or_trim(torch.arange(10.0), 4)
    assert valid == 4 and trimmed.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_unreadable_audio_is_counted_and_skipped(tmp_path) -> None:
    manifest = make_sounds_dataset(tmp_path, {"train": 6}, seed=1)
    (tmp_path / "audio" / "train" / "train-00002.wav").write_bytes(b"RIFF....not audio")
    (tmp_path / "audio" / "train" / "train-00004.wav").write_bytes(b"")
    with pytest.raises(UnreadableItemError):
        load_waveform(tmp_path / "audio" / "train" / "train-00002.wav")
    bow = resolve_encoder("frozen-bow", "text")
    reports = build_cache(read_manifest(manifest), "s", MEL, bow, tmp_path / "cache")
    assert reports["train"]["items"].n_skipped == 2
    assert reports["train"]["items"].skipped == ["train-00002", "train-00004"]
    data = load_paired_latents(tmp_path / "cache", MEL, bow, "s", "train")
    assert data.items.shape == (4, 256) and data.n_pairs == 20


def test_frozen_mel_pools_valid_frames_only() -> None:
    rng = np.random.default_rng(0)
    clip = torch.from_numpy(rng.normal(0, 0.1, 8000).astype(np.float32))  # 0.5 s at 16 kHz
    encoder = load_encoder(MEL)
    # trailing digital silence inside the window is padding to the encoder: the same latent as the bare clip
    padded_clip = torch.cat([clip, torch.zeros(16000)])
    bare, padded = encoder.encode([Waveform(clip[None], 16000), Waveform(padded_clip[None], 16000)])
    assert not torch.allclose(bare, padded)  # silence that is part of the file is audio, not padding
    # the hand computation: log-mel of the 4 s zero-padded window, mean/max over the first ceil(8000 / 160) frames
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=80)
    window = torch.zeros(64000)
    window[:8000] = clip
    logmel = torch.log(mel(window) + 1e-6)[:, :50]
    pooled = torch.cat([logmel.mean(-1), logmel.amax(-1)])
    torch.testing.assert_close(bare, pooled @ encoder.projection, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    folder = tmp_path_factory.mktemp("tiny-whisper")
    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, vocab_size=100, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1, max_target_positions=8, suppress_tokens=[], begin_suppress_tokens=[],
    )  # fmt: skip
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor().save_pretrained(folder)
    return folder


def test_whisper_encoder_pools_over_valid_frames_only(tiny_whisper_dir) -> None:
    from transformers import WhisperFeatureExtractor, WhisperModel

    spec = resolve_encoder(f"hf:{tiny_whisper_dir}@mean", "audio")
    encoder = load_encoder(spec)
    rng = np.random.default_rng(0)
    one_second = rng.normal(0, 0.1, 16000).astype(np.float32)
    stereo_44k = torchaudio.functional.resample(torch.from_numpy(one_second), 16000, 44100)
    latent = encoder.encode([Waveform(torch.stack([stereo_44k, stereo_44k]), 44100)])
    assert latent.shape == (1, 32)
    # by hand: the feature extractor pads to 30 s (3000 mel frames -> 1500 encoder frames); 1 s is 50 of them
    features = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)(
        [torchaudio.functional.resample(stereo_44k, 44100, 16000).numpy()], sampling_rate=16000, return_tensors="pt"
    ).input_features
    model = WhisperModel.from_pretrained(tiny_whisper_dir).eval()
    with torch.no_grad():
        hidden = model.encoder(features).last_hidden_state  # 1 x 1500 x 32
    assert hidden.shape[1] == 1500
    torch.testing.assert_close(latent, hidden[:, :50].mean(1), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(latent, hidden.mean(1), atol=1e-3)  # the padded 30 s would give another latent


def test_hf_audio_encoder_through_the_cache_cli(tiny_whisper_dir, tmp_path) -> None:
    manifest = make_sounds_dataset(tmp_path / "data", {"train": 3}, seed=2)
    args = ["cache", "--manifest", str(manifest), "--dataset", "s", "--cache-dir", str(tmp_path / "cache"),
            "--item-encoder", f"hf:{tiny_whisper_dir}@mean", "--text-encoder", "frozen-bow"]  # fmt: skip
    as_image = runner.invoke(app, args)  # an hf: item encoder is an image encoder unless told otherwise
    last = as_image.stderr.strip().splitlines()[-1]
    assert as_image.exit_code == 2 and last.startswith("error: could not load image encoder"), as_image.output
    assert "for audio items pass --modality audio" in last and len(last) < 600
    result = runner.invoke(app, [*args, "--modality", "audio"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[:4] == ["train", "items", "3", "0"]


def test_ast_and_clap_audio_towers(tmp_path) -> None:
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTModel,
        ClapAudioConfig,
        ClapAudioModel,
        ClapFeatureExtractor,
    )

    torch.manual_seed(0)
    ast_dir, clap_dir = tmp_path / "ast", tmp_path / "clap"
    ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       max_length=100)).save_pretrained(ast_dir)  # fmt: skip
    ASTFeatureExtractor(max_length=100).save_pretrained(ast_dir)
    ClapAudioModel(ClapAudioConfig(depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16,
                                   hidden_size=32)).save_pretrained(clap_dir)  # fmt: skip
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(clap_dir)
    rng = np.random.default_rng(1)
    clips = [Waveform(torch.from_numpy(rng.normal(0, 0.1, (1, n)).astype(np.float32)), 16000) for n in (8000, 20000)]
    for folder, cls, extractor in ((ast_dir, ASTModel, ASTFeatureExtractor), (clap_dir, ClapAudioModel,
                                                                             ClapFeatureExtractor)):  # fmt: skip
        spec = EncoderSpec(f"t-{folder.name}", "audio", "hf", str(folder), "pooler", cls.__name__, max_seconds=1.0)
        latents = load_encoder(spec).encode(clips)
        fe = extractor.from_pretrained(folder)
        waves = [prepare_waveform(c, fe.sampling_rate, 1.0).numpy() for c in clips]
        with torch.no_grad():
            direct = cls.from_pretrained(folder).eval()(**fe(waves, sampling_rate=fe.sampling_rate,
                                                            return_tensors="pt")).pooler_output  # fmt: skip
        assert latents.shape == (2, 32)
        torch.testing.assert_close(latents, direct, rtol=1e-4, atol=1e-5)
    # the registry's paper entries
    assert resolve_encoder("clap-htsat", "audio").hf_class == "ClapAudioModel"
    assert resolve_encoder("ast", "item").pooling == "pooler"


def test_concatenated_latent_layout() -> None:
    other = register_encoder(
        EncoderSpec("test-mel-7", "audio", "frozen", "mel", sample_rate=16000, max_seconds=2.0, dim=16, seed=7),
        replace=True,
    )
    both = EncoderSpec("test-concat", "audio", "concat", parts=("frozen-mel", "test-mel-7"), dim=256 + 16)
    rng = np.random.default_rng(2)
    clips = [Waveform(torch.from_numpy(rng.normal(0, 0.1, (2, 12000)).astype(np.float32)), 16000) for _ in range(3)]
    latents = load_encoder(both).encode(clips)
    assert latents.shape == (3, 272)
    torch.testing.assert_close(latents[:, :256], load_encoder(MEL).encode(clips))
    torch.testing.assert_close(latents[:, 256:], load_encoder(other).encode(clips))
    # the fingerprint follows the parts; the paper's HTS-AT ⊕ Whisper entry is HTS-AT first
    paper = resolve_encoder("htsat-whisper", "audio")
    assert paper.parts == ("clap-htsat", "whisper-large-v2") and paper.dim == 768 + 1280
    assert EncoderSpec.from_dict(json.loads(json.dumps(both.to_dict()))).fingerprint() == both.fingerprint()
    with pytest.raises(ValueError, match="concat encoder needs parts"):
        EncoderSpec("x", "audio", "concat")


def test_sounds_dataset_and_audio_through_every_verb(tmp_path) -> None:
    manifest = make_sounds_dataset(tmp_path / "data", {"train": 40, "val": 12, "test": 16}, seed=0)
    clip = load_waveform(tmp_path / "data" / "audio" / "test" / "test-00000.wav")
    assert clip.sample_rate == 16000 and 1.0 <= clip.seconds <= 3.3 and clip.samples.abs().max() <= 1.0
    cache = tmp_path / "cache"
    encoders = ["--item-encoder", "frozen-mel", "--text-encoder", "frozen-bow"]
    result = runner.invoke(app, ["cache", "--manifest", str(manifest), "--dataset", "sounds", "--cache-dir",
                                 str(cache), *encoders])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--cache-dir", str(cache), "--dataset", "sounds", "--out", str(out),
                                 "--preset", "cpu", "--depth", "1", "--expansion", "1", "--out-dim", "16",
                                 "--batch-size", "16", "--steps", "30", "--eval-every", "10", "--warmup-steps", "2",
                                 "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    checkpoint = out / "checkpoints" / "best.safetensors"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--cache-dir", str(cache)])
    assert result.exit_code == 0 and "16 items, 80 captions" in result.stdout, result.output
    wav = tmp_path / "data" / "audio" / "test" / "test-00003.wav"
    by_file = runner.invoke(app, ["retrieve", "--checkpoint", str(checkpoint), "--cache-dir", str(cache),
                                  "--item-file", str(wav), "-k", "3"])  # fmt: skip
    by_id = runner.invoke(app, ["retrieve", "--checkpoint", str(checkpoint), "--cache-dir", str(cache),
                                "--item-id", "test-00003", "-k", "3"])  # fmt: skip
    assert by_file.exit_code == 0 and by_file.stdout == by_id.stdout and len(by_file.stdout.splitlines()) == 3
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    bad = runner.invoke(app, ["retrieve", "--checkpoint", str(checkpoint), "--cache-dir", str(cache),
                              "--item-file", str(broken)])  # fmt: skip
    assert bad.exit_code == 2 and "cannot be read as audio" in bad.stderr


def test_write_wav_round_trip(tmp_path) -> None:
    signal = torch.sin(torch.arange(1600) * 2 * math.pi * 440 / 16000) * 0.5
    write_wav(tmp_path / "x.wav", signal, 16000)
    back = load_waveform(Path(tmp_path / "x.wav"))
    torch.testing.assert_close(back.samples[0], signal, atol=1 / 32767, rtol=0)


def test_manifests_from_clotho_and_audiocaps_caption_files(tmp_path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    tone = torch.sin(torch.arange(8000) * 0.05) * 0.3
    for name in ("a b.wav", "c.wav", "yt1.wav", "yt2.wav"):
        write_wav(clips / name, tone, 16000)
    clotho = tmp_path / "clotho_captions_evaluation.csv"
    clotho.write_text(
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
        '"a b.wav",Birds sing.,"A bird, then wind.",Chirping,Song of birds,Birds outside\n'
        "c.wav,Rain falls.,Rain on a roof,Water drips,Heavy rain,Rain\n"
    )
    out = tmp_path / "m.csv"
    result = runner.invoke(app, ["manifest", "--format", "clotho", "--captions", str(clotho), "--audio-dir",
                                 str(clips), "--split", "test", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    test = read_manifest(out).split("test")
    assert test.item_ids == ["a b.wav", "c.wav"] and test.txt2item == [0] * 5 + [1] * 5
    assert test.captions[1] == "A bird, then wind."
    audiocaps = tmp_path / "train.csv"
    audiocaps.write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "11,yt1,30,A dog barks\n12,yt2,0,A car passes\n13,yt3,10,Gone from YouTube\n14,yt1,30,Barking dog\n"
    )
    args = ["manifest", "--format", "audiocaps", "--captions", str(audiocaps), "--audio-dir", str(clips),
            "--split", "train", "--out", str(out), "--append"]  # fmt: skip
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2 and "yt3.wav" in missing.stderr and "--skip-missing" in missing.stderr
    result = runner.invoke(app, [*args, "--skip-missing"])
    assert result.exit_code == 0 and "2 clips, 3 captions, 1 clip(s) missing" in result.stdout, result.output
    train = read_manifest(out).split("train")
    assert train.item_ids == ["yt1_30", "yt2_0"] and train.txt2item == [0, 1, 0]
    assert read_manifest(out).split("test").captions == test.captions  # the appended file kept the other split
    again = runner.invoke(app, [*args, "--skip-missing"])
    assert again.exit_code == 2 and "already has a split 'train'" in again.stderr
