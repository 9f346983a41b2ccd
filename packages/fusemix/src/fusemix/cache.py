"""The latent cache: frozen-encoder outputs computed once, streamed to safetensors, then the encoder is unloaded.

Layout (one file per encoder, dataset, split and side)::

    <cache_dir>/<encoder slug>/<dataset>/<split>.items.safetensors
        latents (N_items_ok, d) float32, index (N_items_ok,) int64
    <cache_dir>/<encoder slug>/<dataset>/<split>.texts.safetensors
        latents (N_txt, d) float32, txt2item (N_txt,), item2txt_ptr (N_items + 1,), item2txt_index (N_txt,)

The encoder slug holds the encoder name, pooling and a fingerprint of every setting that changes a latent, so a
different encoder or pooling never reads a stale file; the header metadata repeats the full key (encoder spec,
dataset, split, content fingerprint) and is checked on load. Unlike the paper's code (one pickled dict entry per
annotation, the image latent duplicated per caption), items are stored once and captions point at them through
``txt2item`` (LAVIS ``txt2img``); ``item2txt_ptr/index`` is LAVIS ``img2txt`` in compressed-row form.

Extraction is streamed in shards written atomically under ``<file>.partial/``; an interrupted run resumes from the
shards it finished, and the final file appears only when complete. Under accelerate (``accelerate launch``), each
process extracts every ``world_size``-th shard and the main process merges. Reading the cache back (for training,
evaluation, queries) is :mod:`fusemix.latents`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fusemix.data.items import UnreadableItemError, load_item
from fusemix.data.manifest import PairedManifest, PairedSplit
from fusemix.encoders import EncoderSpec, load_encoder
from fusemix.encoders.weights import weights_fingerprint
from sixlab_shared import UserError, atomic_write_json, atomic_write_with, progress

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 2
_META = "fusemix_cache"
SIDES = ("items", "texts")


def latent_cache_path(
    cache_dir: str | os.PathLike[str], spec: EncoderSpec, dataset: str, split: str, side: str
) -> Path:
    """Where the latents of one (encoder, dataset, split, side) live."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return Path(cache_dir) / spec.slug() / dataset / f"{split}.{side}.safetensors"


@dataclasses.dataclass
class ExtractionReport:
    """What one extraction did: inputs seen, encoded, skipped (unreadable), and whether a finished file was reused."""

    path: Path
    n_inputs: int
    n_encoded: int
    n_skipped: int
    skipped: list[str]
    reused: bool
    n_distinct: int | None = None
    """Texts only: distinct caption strings, each encoded once (``n_inputs`` counts every caption)."""


def _key(spec: EncoderSpec, dataset: str, split: PairedSplit, side: str) -> dict[str, Any]:
    """What a finished cache file must match to be reused: the encoder's settings *and* weights, and the side's
    own content (items: ids and resolved paths; texts: captions and their item ids)."""
    key = {
        "format": CACHE_FORMAT_VERSION,
        "side": side,
        "encoder": spec.to_dict(),
        "encoder_fingerprint": spec.fingerprint(),
        "weights": weights_fingerprint(spec),
        "dataset": dataset,
        "split": split.name,
        "data_fingerprint": split.item_fingerprint() if side == "items" else split.text_fingerprint(),
        "ids_fingerprint": split.ids_fingerprint(),
    }
    return json.loads(json.dumps(key))  # as stored (tuples become lists), so a stored key compares equal


def read_cache_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of a cache file.

    Raises:
        UserError: the file is not a fusemix latent cache.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"cache file {str(path)!r} could not be read as safetensors ({err})") from err
    if _META not in metadata:
        raise UserError(f"{str(path)!r} is not a fusemix latent cache (no {_META} metadata)")
    return json.loads(metadata[_META])


def _same_key(meta: dict[str, Any], key: dict[str, Any]) -> bool:
    return all(meta.get(k) == v for k, v in key.items())


def _world(device: torch.device | str = "cpu") -> tuple[int, int, Callable[[], None]]:
    # accelerate's PartialState knows the process layout (1 process when not launched); nothing home-made.
    # On CPU it only recognises a multi-process launch when told the run is CPU-only.
    from accelerate import PartialState

    state = PartialState(cpu=torch.device(device).type == "cpu")
    return state.process_index, state.num_processes, state.wait_for_everyone


def _extract(
    encoder_factory: Callable[[torch.device | str], Any],
    spec: EncoderSpec,
    n_inputs: int,
    read: Callable[[int], Any],
    names: Sequence[str],
    out_path: Path,
    key: dict[str, Any],
    *,
    shard_size: int,
    strict: bool,
    desc: str,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Encode inputs ``0..n-1`` in shards; returns (latents of the readable ones, their indices, skipped names)."""
    rank, world, barrier = _world(device)
    if torch.device(device).type == "cuda":
        from accelerate import PartialState

        device = PartialState().device  # this process's own GPU under a multi-GPU launch
    partial = out_path.with_name(out_path.name + ".partial")
    key_file = partial / "key.json"
    stale = partial.is_dir() and (not key_file.is_file() or json.loads(key_file.read_text()) != key)
    n_shards = math.ceil(n_inputs / shard_size)
    mine = [s for s in range(n_shards) if s % world == rank]
    todo = [s for s in mine if stale or not (partial / f"shard-{s:06d}.safetensors").is_file()]
    if len(todo) < len(mine):
        logger.info("%s: resuming, %d of %d shards already extracted", desc, len(mine) - len(todo), len(mine))
    # load the encoder before writing anything, so a missing model leaves no trace
    encoder = encoder_factory(device) if todo else None
    barrier()  # every process has read the partial folder's state before the main one changes it
    if rank == 0:
        if stale:
            logger.warning("discarding partial extraction %s: it was made for other settings", partial)
            shutil.rmtree(partial)
        if not key_file.is_file():
            atomic_write_json(key_file, key)
    barrier()
    bar = progress(total=sum(min(shard_size, n_inputs - s * shard_size) for s in todo), desc=desc, unit="input")
    try:
        for shard in todo:
            start, stop = shard * shard_size, min((shard + 1) * shard_size, n_inputs)
            latents, index, skipped = [], [], []
            for batch_start in range(start, stop, spec.batch_size):
                batch, batch_index = [], []
                for i in range(batch_start, min(batch_start + spec.batch_size, stop)):
                    try:
                        batch.append(read(i))
                        batch_index.append(i)
                    except UnreadableItemError as err:
                        if strict:
                            raise UserError(
                                f"item {names[i]!r} is unreadable ({err}); fix it or drop --strict"
                            ) from err
                        logger.warning("skipping unreadable item %r: %s", names[i], err)
                        skipped.append(names[i])
                if batch:
                    latents.append(encoder.encode(batch))
                    index.extend(batch_index)
                bar.update(min(batch_start + spec.batch_size, stop) - batch_start)
            tensors = {
                "latents": torch.cat(latents) if latents else torch.zeros(0, 0),
                "index": torch.tensor(index, dtype=torch.int64),
            }
            shard_path = partial / f"shard-{shard:06d}.safetensors"
            meta = {"skipped": json.dumps(skipped)}
            atomic_write_with(shard_path, lambda tmp, t=tensors, m=meta: save_file(t, str(tmp), metadata=m))
    finally:
        bar.close()
        if encoder is not None:
            encoder.close()
            del encoder
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    barrier()
    latents, index, skipped = [], [], []
    for shard in range(n_shards):
        with safe_open(str(partial / f"shard-{shard:06d}.safetensors"), framework="pt") as handle:
            skipped.extend(json.loads((handle.metadata() or {}).get("skipped", "[]")))
            shard_latents = handle.get_tensor("latents")
            if shard_latents.numel():
                latents.append(shard_latents)
                index.append(handle.get_tensor("index"))
    if not latents:
        raise UserError(f"{desc}: no input could be read ({len(skipped)} unreadable); nothing was cached")
    return torch.cat(latents), torch.cat(index), skipped


def extract_split(
    manifest_split: PairedSplit,
    dataset: str,
    item_spec: EncoderSpec,
    text_spec: EncoderSpec,
    cache_dir: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    shard_size: int = 4096,
    strict: bool = False,
    overwrite: bool = False,
) -> dict[str, ExtractionReport]:
    """Extract (or reuse) the item and text latents of one split; each encoder is loaded only if work remains and
    is unloaded as soon as its side is done.

    Args:
        manifest_split: the split's items and captions.
        dataset: a name for the dataset (a folder of the cache).
        item_spec: encoder of the items (image, ...).
        text_spec: encoder of the captions.
        cache_dir: root of the cache.
        device: where the encoders run.
        shard_size: inputs per resumable shard.
        strict: fail on the first unreadable item instead of skipping it.
        overwrite: replace a finished cache built from *other* content under the same dataset name.

    Returns:
        ``{"items": report, "texts": report}``.

    Raises:
        UserError: a finished cache for this dataset/split holds other content (and not ``overwrite``); an
            unreadable item under ``strict``; no readable item.
    """
    reports = {}
    sides = (
        ("items", item_spec, manifest_split.item_ids),
        ("texts", text_spec, None),
    )
    rank, _, barrier = _world(device)
    for side, spec, _ in sides:
        out_path = latent_cache_path(cache_dir, spec, dataset, manifest_split.name, side)
        key = _key(spec, dataset, manifest_split, side)
        if out_path.is_file():
            meta = read_cache_metadata(out_path)
            if _same_key(meta, key):
                reports[side] = ExtractionReport(
                    out_path, meta["n_inputs"], meta["n_encoded"], len(meta["skipped"]), meta["skipped"], True,
                    meta.get("n_distinct"),
                )  # fmt: skip
                continue
            if not overwrite:
                what = "other weights" if meta.get("weights") != key["weights"] else "other content"
                if what == "other weights" and key["weights"].startswith("unresolved:"):
                    what += f" (the weights of {spec.model!r} are not in the local Hugging Face cache)"
                raise UserError(
                    f"cache {str(out_path)!r} was built from {what} for dataset {dataset!r} split "
                    f"{manifest_split.name!r}; pass --overwrite to rebuild it or use another --dataset name"
                )
        if side == "items":
            paths = manifest_split.item_paths
            latents, index, skipped = _extract(
                lambda d, s=spec: load_encoder(s, d), spec, len(paths),
                lambda i, p=paths, s=spec: load_item(p[i], s.modality), manifest_split.item_ids, out_path, key,
                shard_size=shard_size, strict=strict, desc=f"{manifest_split.name} items ({spec.name})", device=device,
            )  # fmt: skip
            tensors = {"latents": latents.contiguous(), "index": index}
            extra = {"item_ids": manifest_split.item_ids, "item_paths": [str(p) for p in manifest_split.item_paths]}
            n_inputs = len(paths)
        else:
            # encode each distinct caption once (template or repeated captions are common), then expand
            unique = list(dict.fromkeys(manifest_split.captions))
            position = {c: i for i, c in enumerate(unique)}
            latents, index, skipped = _extract(
                lambda d, s=spec: load_encoder(s, d), spec, len(unique),
                lambda i, u=unique: u[i], unique, out_path, key,
                shard_size=shard_size, strict=True, desc=f"{manifest_split.name} captions ({spec.name})", device=device,
            )  # fmt: skip
            row = torch.empty(len(unique), dtype=torch.int64)
            row[index] = torch.arange(index.numel())
            expanded = latents[row[torch.tensor([position[c] for c in manifest_split.captions], dtype=torch.int64)]]
            txt2item = torch.tensor(manifest_split.txt2item, dtype=torch.int64)
            order = torch.argsort(txt2item, stable=True)
            counts = torch.bincount(txt2item, minlength=len(manifest_split.item_ids))
            tensors = {
                "latents": expanded.contiguous(),
                "txt2item": txt2item,
                "item2txt_ptr": torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)]),
                "item2txt_index": order,
            }
            extra = {"captions": manifest_split.captions, "n_distinct": len(unique)}
            n_inputs = len(manifest_split.captions)
        meta = {
            **key,
            "n_inputs": n_inputs,
            "n_encoded": int(tensors["latents"].shape[0]),
            "skipped": skipped,
            "dim": int(latents.shape[1]),
            **extra,
        }
        if rank == 0:
            metadata = {_META: json.dumps(meta)}
            atomic_write_with(out_path, lambda tmp, t=tensors, m=metadata: save_file(t, str(tmp), metadata=m))
            shutil.rmtree(out_path.with_name(out_path.name + ".partial"), ignore_errors=True)
        barrier()
        if skipped:
            logger.warning("%s: skipped %d unreadable item(s)", out_path, len(skipped))
        reports[side] = ExtractionReport(
            out_path, n_inputs, meta["n_encoded"], len(skipped), skipped, False, meta.get("n_distinct")
        )
    return reports


def build_cache(
    manifest: PairedManifest,
    dataset: str,
    item_spec: EncoderSpec,
    text_spec: EncoderSpec,
    cache_dir: str | os.PathLike[str],
    *,
    splits: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    shard_size: int = 4096,
    strict: bool = False,
    overwrite: bool = False,
) -> dict[str, dict[str, ExtractionReport]]:
    """:func:`extract_split` for several splits (all of the manifest's by default).

    Raises:
        UserError: an unknown split, or any error of :func:`extract_split`.
    """
    names = list(splits) if splits else sorted(manifest.splits)
    chosen = [manifest.split(name) for name in names]  # validate every split before extracting any
    return {
        split.name: extract_split(
            split,
            dataset,
            item_spec,
            text_spec,
            cache_dir,
            device=device,
            shard_size=shard_size,
            strict=strict,
            overwrite=overwrite,
        )  # fmt: skip
        for split in chosen
    }
