"""direct-cms: see the package README for the paper and the public API."""

__version__ = "0.1.0"

__all__ = ["__version__"]
