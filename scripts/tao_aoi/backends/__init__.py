"""Backends behind one interface (backends/base.py): local (embedded default), docker (TAO), slurm."""
from __future__ import annotations

from typing import Any

from tao_aoi.errors import UserError


def get_backend(name: str, **options: Any):
    """Instantiate a backend by name; imports lazily so unused backends cost nothing."""
    if name == "local":
        from tao_aoi.backends.local import LocalBackend

        return LocalBackend(**options)
    if name == "docker":
        from tao_aoi.backends.docker import DockerBackend

        return DockerBackend(**options)
    if name == "slurm":
        from tao_aoi.backends.slurm import SlurmBackend

        return SlurmBackend(**options)
    raise UserError(f"--backend {name!r} is not one of local, docker, slurm")
