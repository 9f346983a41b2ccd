"""``simclr``: listed, not supported (no documented source of PyTorch weights).

The paper used SimCLRv2 ResNet-50 (1x, SK1). Google publishes those weights only as TensorFlow checkpoints
(``gs://simclr-checkpoints-tf2/simclrv2/pretrained/r50_1x_sk0``...); the public dgm-eval code loads a PyTorch
conversion from a path hard-coded to an author's home directory, and there is no release URL or hub id for a
converted file. Converting the TF checkpoint is outside this package.
"""

from __future__ import annotations

from dgm_eval.encoders.base import EncoderInfo

INFO = EncoderInfo(
    name="simclr",
    dim=2048,
    weight_source="none published for PyTorch (TensorFlow checkpoints at gs://simclr-checkpoints-tf2)",
    preprocessing="resize 224, scale to [0,1] (public code also applies ImageNet normalisation; unverified)",
    supported=False,
    reason="SimCLRv2 r50_1x_sk1 weights exist only as TensorFlow checkpoints; the public code loads an unpublished "
    "PyTorch conversion from an author's home directory, so there is no documented way to obtain them",
)
