"""Audio -> image: the pipeline's text space as a cached text encoder, an audio adapter trained into it (identity
text side), and generation whose conditioning reaches the UNet exactly as the same prompt_embeds would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fusemix.cache import build_cache
from fusemix.checkpoint import load_fusion_checkpoint
from fusemix.cli import app
from fusemix.data.items import load_item
from fusemix.data.manifest import read_manifest
from fusemix.data.sounds import make_sounds_dataset
from fusemix.encoders import load_encoder, resolve_encoder
from fusemix.generate import GenerateConfig, conditioning, generate_from_audio, load_pipeline
from fusemix.latents import load_paired_latents
from fusemix.train import TrainConfig, train
from sixlab_shared import UserError

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_pipeline_dir(tmp_path_factory, minilm_path):
    """A random Stable-Diffusion-like pipeline (16x16 images, 8-token prompts) built from configs and saved."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    folder = tmp_path_factory.mktemp("tiny-sd")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path, model_max_length=8)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=24, intermediate_size=32, num_attention_heads=2,
                       num_hidden_layers=1, max_position_embeddings=8, pad_token_id=0, bos_token_id=101,
                       eos_token_id=102)
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24, attention_head_dim=4, norm_num_groups=8,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=8,
        sample_size=16,
    )  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def aligned_run(tiny_pipeline_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("a2i")
    manifest = make_sounds_dataset(root / "data", {"train": 24, "val": 8}, seed=0)
    mel = resolve_encoder("frozen-mel", "audio")
    text = resolve_encoder(f"diffusers:{tiny_pipeline_dir}", "text")
    build_cache(read_manifest(manifest), "sounds", mel, text, root / "cache")
    config = TrainConfig(
        cache_dir=str(root / "cache"), dataset="sounds", preset="cpu", depth=1, expansion=1, batch_size=8, steps=12,
        warmup_steps=2, eval_every=6, align_to_text=True, device="cpu",
    )  # fmt: skip
    train(config, root / "run")
    return root


def test_pipeline_text_latents_are_its_own_prompt_embeds(tiny_pipeline_dir) -> None:
    spec = resolve_encoder(f"diffusers:{tiny_pipeline_dir}", "text")
    captions = ["A loud low tone.", "a soft hiss"]
    latents = load_encoder(spec).encode(captions)
    pipe = load_pipeline(str(tiny_pipeline_dir))
    # the pipeline's own path, by hand: tokenizer padded to model_max_length -> text encoder -> last hidden state
    ids = pipe.tokenizer(["a loud low tone", "a soft hiss"], padding="max_length", max_length=8, truncation=True,
                         return_tensors="pt").input_ids  # fmt: skip
    with torch.no_grad():
        hidden = pipe.text_encoder(ids).last_hidden_state  # 2 x 8 x 24
    torch.testing.assert_close(latents, hidden.mean(1))
    with pytest.raises(UserError, match="is a text encoder"):
        resolve_encoder(f"diffusers:{tiny_pipeline_dir}", "item")


def test_audio_adapter_is_trained_into_the_text_space(aligned_run) -> None:
    model, state = load_fusion_checkpoint(aligned_run / "run" / "checkpoints" / "last.safetensors")
    assert model.text_adapter.config.identity and model.item_adapter.config.out_dim == 24
    assert not list(model.text_adapter.parameters())  # the text side has nothing to train
    data = load_paired_latents(aligned_run / "cache", resolve_encoder("frozen-mel", "audio"),
                               resolve_encoder(f"diffusers:{state['encoders']['text']['model']}", "text"),
                               "sounds", "train")  # fmt: skip
    assert state["text_norm"] == pytest.approx(float(data.texts.norm(dim=1).mean()), rel=1e-6)


def test_generation_conditions_the_unet_exactly_like_prompt_embeds(aligned_run, tiny_pipeline_dir) -> None:
    clip = aligned_run / "data" / "audio" / "val" / "val-00001.wav"
    checkpoint = aligned_run / "run" / "checkpoints" / "last.safetensors"
    pipe = load_pipeline(str(tiny_pipeline_dir))
    seen = []
    original = pipe.unet.forward

    def spy(sample, timestep, encoder_hidden_states, *args, **kwargs):
        seen.append(encoder_hidden_states.detach().clone())
        return original(sample, timestep, encoder_hidden_states, *args, **kwargs)

    pipe.unet.forward = spy
    settings = GenerateConfig(steps=2, guidance_scale=3.0, seed=5)
    image = generate_from_audio(checkpoint, clip, str(tiny_pipeline_dir), settings, pipe=pipe)
    # the same embedding computed independently: encoder -> adapter -> unit vector x stored norm, tiled
    model, state = load_fusion_checkpoint(checkpoint)
    latent = load_encoder(resolve_encoder("frozen-mel", "audio")).encode([load_item(clip, "audio")])
    with torch.no_grad():
        out = model.item_adapter(latent)[0]
    expected = (out / out.norm() * state["text_norm"])[None, None, :].expand(1, 8, 24)
    positive, negative = conditioning(pipe, out / out.norm() * state["text_norm"])
    torch.testing.assert_close(positive, expected)
    assert len(seen) == 2 and seen[0].shape == (2, 8, 24)  # classifier-free guidance: [negative, positive]
    torch.testing.assert_close(seen[0][1:], expected)
    torch.testing.assert_close(seen[0][:1], negative)
    # the pipeline called directly with those prompt_embeds gives the same image
    pipe.unet.forward = original
    direct = pipe(prompt_embeds=positive, negative_prompt_embeds=negative, num_inference_steps=2, guidance_scale=3.0,
                  generator=torch.Generator().manual_seed(5)).images[0]  # fmt: skip
    assert np.array_equal(np.asarray(image), np.asarray(direct)) and image.size == (16, 16)


def test_generate_cli_and_bad_inputs(aligned_run, tiny_pipeline_dir, tmp_path) -> None:
    clip = aligned_run / "data" / "audio" / "val" / "val-00002.wav"
    checkpoint = aligned_run / "run" / "checkpoints" / "last.safetensors"
    out = tmp_path / "img.png"
    args = ["generate", "--checkpoint", str(checkpoint), "--audio", str(clip), "--pipeline", str(tiny_pipeline_dir),
            "--out", str(out), "--steps", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + str(result.exception)
    assert out.read_bytes()[:4] == b"\x89PNG"
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "pass --overwrite" in again.stderr
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"nope")
    bad = runner.invoke(app, [*args[:4], str(broken), *args[5:-4], "--out", str(tmp_path / "b.png")])
    assert bad.exit_code == 2 and "cannot be read as audio" in bad.stderr and not (tmp_path / "b.png").exists()
