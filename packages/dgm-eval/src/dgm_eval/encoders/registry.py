"""A validated registry of encoders: name -> (EncoderInfo, builder).

Registration refuses duplicate names, names that are not lower-case identifiers (stray whitespace, capitals,
dashes), info whose name differs from the key, and builders that are not callable. Builders import their heavy
dependencies (transformers) lazily, so listing encoders is instant.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from dgm_eval.encoders.base import Encoder, EncoderInfo

#: builder(arch, *, weights, depth, clean_resize, seed) -> Encoder (arch already validated and defaulted).
EncoderBuilder = Callable[..., Encoder]

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class RegistryEntry:
    """One registered encoder: its description and the function that builds it (``None`` if unsupported)."""

    info: EncoderInfo
    builder: EncoderBuilder | None


class EncoderRegistry:
    """Holds the encoders known to ``load_encoder``, in registration order."""

    def __init__(self) -> None:
        self._entries: dict[str, RegistryEntry] = {}

    def register(self, info: EncoderInfo, builder: EncoderBuilder | None) -> None:
        """Add an encoder.

        Args:
            info: its description; ``info.name`` is the registry key.
            builder: the function that builds it, or ``None`` when ``info.supported`` is False.

        Raises:
            ValueError: the name is not a lower-case identifier, is already registered, the default arch is not
                among the archs, a supported encoder has no builder, or an unsupported one has no reason.
            TypeError: ``info`` is not an ``EncoderInfo`` or ``builder`` is not callable.
        """
        if not isinstance(info, EncoderInfo):
            raise TypeError(f"expected an EncoderInfo, got {type(info).__name__}")
        name = info.name
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise ValueError(f"encoder name must be a lower-case identifier like 'dinov2', got {name!r}")
        if name in self._entries:
            raise ValueError(f"encoder {name!r} is already registered")
        if info.archs and info.default_arch not in info.archs:
            raise ValueError(f"encoder {name!r}: default arch {info.default_arch!r} is not one of {info.archs}")
        if not info.archs and info.default_arch is not None:
            raise ValueError(f"encoder {name!r}: default arch {info.default_arch!r} given but no archs")
        if info.supported:
            if builder is None or not callable(builder):
                raise TypeError(f"encoder {name!r}: a supported encoder needs a callable builder, got {builder!r}")
        elif not info.reason:
            raise ValueError(f"encoder {name!r}: an unsupported encoder must say why (reason)")
        self._entries[name] = RegistryEntry(info=info, builder=builder)

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)

    def supported_names(self) -> tuple[str, ...]:
        """Names of the encoders that can be built."""
        return tuple(name for name, entry in self._entries.items() if entry.info.supported)

    def infos(self) -> list[EncoderInfo]:
        """Every encoder's description, in registration order."""
        return [entry.info for entry in self._entries.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> RegistryEntry:
        return self._entries[name]
