"""`run:` where outputs go and what to run on (never part of what a result is)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunConfig:
    """Where outputs go and what to run on."""

    out: str = "runs/default"  # output directory
    device: str = "auto"  # auto: CUDA (by local rank) when present, else CPU; or cpu, cuda, cuda:1
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    deterministic: bool = False  # bitwise-reproducible kernels (slower on GPU)
    progress: bool = True

    def _check(self) -> list[str]:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            return [f"run.device: must be auto, cpu, cuda or cuda:N (got {self.device!r})"]
        if self.threads < 0:
            return [f"run.threads: must be >= 0 (got {self.threads})"]
        return []


