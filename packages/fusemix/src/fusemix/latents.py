"""Reading the latent cache: one split's two cache files joined into :class:`PairedLatents`, and the encoders a
cache was made with (so training and evaluation need not be told them again). Writing is :mod:`fusemix.cache`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from safetensors import safe_open

from fusemix.cache import latent_cache_path, read_cache_metadata
from fusemix.encoders import EncoderSpec
from sixlab_shared import UserError


@dataclasses.dataclass
class PairedLatents:
    """Cached latents of one split, joined: every caption paired with its (readable) item.

    Attributes:
        items: ``(N_items, d_item)`` float32.
        texts: ``(N_txt, d_text)`` float32.
        txt2item: ``(N_txt,)`` int64 row of ``items`` for each caption.
        item_ids: ids of the rows of ``items``.
        item_paths: files of the rows of ``items``.
        captions: the raw captions, one per row of ``texts``.
        item_spec / text_spec: the encoders that made them.
    """

    items: torch.Tensor
    texts: torch.Tensor
    txt2item: torch.Tensor
    item_ids: list[str]
    item_paths: list[str]
    captions: list[str]
    item_spec: EncoderSpec
    text_spec: EncoderSpec

    @property
    def n_pairs(self) -> int:
        """Number of (item, caption) training pairs."""
        return int(self.txt2item.numel())


def _missing_cache_message(cache_dir: Path, spec: EncoderSpec, dataset: str, split: str, side: str) -> str:
    path = latent_cache_path(cache_dir, spec, dataset, split, side)
    others = sorted(
        p.parent.parent.name for p in cache_dir.glob(f"*/{dataset}/{split}.{side}.safetensors") if p != path
    ) if cache_dir.is_dir() else []  # fmt: skip
    hint = f" (cached there for other encoders: {', '.join(others)})" if others else ""
    return (
        f"no {side} latents for encoder {spec.name!r} (pooling {spec.pooling}, fingerprint {spec.fingerprint()}) "
        f"dataset {dataset!r} split {split!r} at {str(path)!r}{hint}; run `fusemix cache` with this encoder first"
    )


def load_paired_latents(
    cache_dir: str | os.PathLike[str], item_spec: EncoderSpec, text_spec: EncoderSpec, dataset: str, split: str
) -> PairedLatents:
    """Read one split's two cache files and join them (captions of skipped items are dropped).

    Raises:
        UserError: a file is missing (the message lists caches of other encoders for the same data), was written
            for another encoder, or the two sides were built from different content.
    """
    cache_dir = Path(cache_dir)
    loaded = {}
    for side, spec in (("items", item_spec), ("texts", text_spec)):
        path = latent_cache_path(cache_dir, spec, dataset, split, side)
        if not path.is_file():
            raise UserError(_missing_cache_message(cache_dir, spec, dataset, split, side))
        meta = read_cache_metadata(path)
        if meta.get("encoder_fingerprint") != spec.fingerprint() or meta.get("side") != side:
            raise UserError(
                f"cache {str(path)!r} was written by encoder {meta.get('encoder', {}).get('name')!r} "
                f"(fingerprint {meta.get('encoder_fingerprint')}), not {spec.name!r} ({spec.fingerprint()}); rebuild it"
            )
        with safe_open(str(path), framework="pt") as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (not a dict)
        loaded[side] = (meta, tensors)
    (item_meta, item_t), (text_meta, text_t) = loaded["items"], loaded["texts"]
    if item_meta.get("ids_fingerprint") != text_meta.get("ids_fingerprint"):
        raise UserError(
            f"the item and text caches of dataset {dataset!r} split {split!r} were built from different manifests; "
            "rebuild both with `fusemix cache`"
        )
    n_items_total = len(item_meta["item_ids"])
    row_of = torch.full((n_items_total,), -1, dtype=torch.int64)
    row_of[item_t["index"]] = torch.arange(item_t["index"].numel())
    txt_rows = row_of[text_t["txt2item"]]
    keep = txt_rows >= 0
    if not bool(keep.any()):
        raise UserError(f"dataset {dataset!r} split {split!r}: no caption has a readable item")
    kept_captions = [c for c, k in zip(text_meta["captions"], keep.tolist(), strict=True) if k]
    index = item_t["index"].tolist()
    return PairedLatents(
        items=item_t["latents"],
        texts=text_t["latents"][keep],
        txt2item=txt_rows[keep],
        item_ids=[item_meta["item_ids"][i] for i in index],
        item_paths=[item_meta["item_paths"][i] for i in index],
        captions=kept_captions,
        item_spec=item_spec,
        text_spec=text_spec,
    )


def cached_encoder(
    cache_dir: str | os.PathLike[str], dataset: str, split: str, side: str, name: str | None = None
) -> EncoderSpec:
    """The encoder whose latents of ``side`` are cached for ``dataset``/``split``, read from the cache's metadata,
    so training and evaluation need not be told the encoders again.

    Args:
        cache_dir: root of the cache.
        dataset: dataset name in the cache.
        split: split name.
        side: ``items`` or ``texts``.
        name: an encoder name (registry name or ``hf:...`` string) to choose among several cached ones.

    Raises:
        UserError: nothing cached for that split (the message says how to cache it), or several encoders cached
            and ``name`` does not pick exactly one (the message lists them).
    """
    cache_dir = Path(cache_dir)
    found: dict[str, EncoderSpec] = {}
    if cache_dir.is_dir():
        for path in sorted(cache_dir.glob(f"*/{dataset}/{split}.{side}.safetensors")):
            meta = read_cache_metadata(path)
            if meta.get("side") == side and "encoder" in meta:
                spec = EncoderSpec.from_dict(meta["encoder"])
                found[spec.slug()] = spec
    candidates = [s for s in found.values() if name is None or s.name == name]
    if len(candidates) > 1 and name is not None and not name.startswith("hf:"):
        from fusemix.encoders.spec import registered_encoders

        registered = registered_encoders().get(name)  # the registry's own settings break the tie
        candidates = [s for s in candidates if registered is not None and s.fingerprint() == registered.fingerprint()]
    if len(candidates) == 1:
        return candidates[0]
    flag = "--item-encoder" if side == "items" else "--text-encoder"
    if not found:
        raise UserError(
            f"no {side} latents of dataset {dataset!r} split {split!r} under {str(cache_dir)!r}; "
            f"run `fusemix cache --dataset {dataset} --split {split} ...` first"
        )
    names = ", ".join(sorted({s.name for s in found.values()}))
    if not candidates:
        raise UserError(
            f"no {side} latents of encoder {name!r} for dataset {dataset!r} split {split!r} (cached: {names})"
        )
    raise UserError(
        f"{side} latents of dataset {dataset!r} split {split!r} are cached for {len(candidates)} encoders or "
        f"settings ({names}); choose one with {flag}"
    )
