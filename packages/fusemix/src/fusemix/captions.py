"""Caption cleaning applied before every text encoder (reference §1.2, the LAVIS ``blip_caption`` rule)."""

from __future__ import annotations

import re

#: Bumped whenever :func:`clean_caption` changes, so cached text latents keyed on it are never reused stale.
CAPTION_CLEANING_VERSION = 1

_PUNCTUATION = re.compile(r"[.!\"()*#:;~]")
_WHITESPACE = re.compile(r"\s+")


def clean_caption(text: str, max_words: int = 50) -> str:
    """Lowercase, replace ``. ! " ( ) * # : ; ~`` by spaces, collapse whitespace, strip, keep ``max_words`` words.

    Commas, apostrophes and hyphens are kept, as in the paper's code.

    Args:
        text: a raw caption.
        max_words: words kept from the start (50 in the paper).

    Returns:
        The cleaned caption.

    Raises:
        ValueError: ``max_words`` is not positive.

    Example:
        >>> clean_caption('A Dog, (running)!  on grass.')
        'a dog, running on grass'
    """
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    text = _PUNCTUATION.sub(" ", text.lower())
    text = _WHITESPACE.sub(" ", text).strip()
    words = text.split(" ")
    return " ".join(words[:max_words]) if text else ""
