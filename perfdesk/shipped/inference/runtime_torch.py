"""PyTorch eager runtime (CPU; CUDA when present and asked for)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from perfdesk.shipped.errors import InferenceError

from .base import Engine, package_versions
from .threads import default_threads
from .torch_models import build_model, import_torch


def pick_torch_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InferenceError("device 'cuda' asked for, but PyTorch sees no CUDA GPU here; use device 'cpu' or 'auto'")
    return device


class TorchEngine(Engine):
    threads: int
    device: str
    model: Any  # a torch.nn.Module (torch is imported on load)

    @classmethod
    def load(cls, cfg, spec, weights) -> TorchEngine:
        import_ms = import_torch()
        import torch

        t0 = time.perf_counter()
        threads = cfg.threads or default_threads("torch")
        torch.set_num_threads(threads)
        self = cls(cfg, spec, weights)
        self.threads = threads
        self.device = pick_torch_device(cfg.device)
        self.model = build_model(spec, weights).to(self.device)
        self.info.update(
            device=self.device,
            threads=threads,
            import_ms=import_ms,
            load_ms=round((time.perf_counter() - t0) * 1000.0, 3),
            versions=package_versions("torch", "torchvision", "numpy", "pillow"),
        )
        return self

    def _own_threads(self, torch) -> None:
        # torch's thread count is process-wide: another engine in this process may have changed it since load.
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def _classify(self, batch: np.ndarray) -> np.ndarray:
        import torch

        self._own_threads(torch)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch).to(self.device))
        return out.float().cpu().numpy()

    def _detect(self, images):
        import torch

        self._own_threads(torch)
        with torch.inference_mode():
            outs = self.model([torch.from_numpy(im).to(self.device) for im in images])
        return [(o["boxes"].cpu().numpy(), o["labels"].cpu().numpy(), o["scores"].cpu().numpy()) for o in outs]
