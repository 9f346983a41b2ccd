"""Worker of the two-process test (run by torchrun, not collected by pytest): extract a folder's features.

Usage: torchrun --standalone --nproc_per_node 2 distributed_extract.py IMAGE_DIR OUT_DIR
Every rank saves what extract_features returned to OUT_DIR/<encoder>_rank<r>.npy (to check that every process
gets the full array); only the main process writes OUT_DIR/<encoder>_main.npy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dgm_eval.encoders import load_encoder
from dgm_eval.extraction import extract_features
from sixlab_shared import is_main_process


class Folder:
    def __init__(self, folder: Path) -> None:
        self.paths = sorted(Path(folder).glob("*.png"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Image.Image:
        with Image.open(self.paths[i]) as image:
            return image.convert("RGB")


def main() -> None:
    image_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    source = Folder(image_dir)
    for name in ("pixel", "random"):
        encoder = load_encoder(name, seed=3, device="cpu")
        features = extract_features(source, encoder, batch_size=4, device="cpu", progress=False)
        rank = torch.distributed.get_rank()
        np.save(out_dir / f"{name}_rank{rank}.npy", features)
        if is_main_process():
            np.save(out_dir / f"{name}_main.npy", features)
    torch.distributed.barrier()


if __name__ == "__main__":
    main()
