"""What `caption --ray` asks of a Ray cluster, decided without importing Ray (nor the library:
`--help` reads the addresses here): the address to join, how many actors, and what each one
reserves.

Addresses: `local` (what `--ray` alone means) starts a Ray cluster inside this run, on this
machine; `auto` joins the cluster `ray start` set up on this machine (or RAY_ADDRESS);
`ray://HOST:PORT` joins through Ray Client; `HOST:PORT` joins a cluster's GCS directly.

Sizing (`plan_actors`), over the cluster's nodes:
- GPUs per actor: `--gpus-per-actor`, else 1 when the cluster has GPUs, else 0.
- Actors: `--actors`, else one per GPU share (GPU clusters) or one per 2 CPUs (CPU clusters).
- CPUs per actor: the most that still lets that many actors fit on the nodes as they are
  (`fitting_cpus`): fractional when needed, so that N actors on fewer than N CPUs still start.
  Torch in each actor then uses that many threads (at least one) unless told otherwise.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

LOCAL = "local"
AUTO = "auto"
CPUS_PER_ACTOR_WITHOUT_GPU = 2
RAY_EXTRA = 'pip install -e ".[ray]"'
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


@dataclass(frozen=True, kw_only=True)
class RaySettings:
    """`--ray [ADDRESS]`, `--actors`, `--gpus-per-actor`; `threads`: torch threads per actor
    (None: as many as the actor's CPUs)."""

    address: str = LOCAL
    actors: int | None = None
    gpus_per_actor: float | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if not is_ray_address(self.address):
            raise ValueError(f"--ray takes local, auto, ray://HOST:PORT or HOST:PORT, got {self.address!r}")
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"--actors must be at least 1, got {self.actors}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise ValueError(f"--gpus-per-actor must be 0 or more, got {self.gpus_per_actor}")


@dataclass(frozen=True)
class NodeResources:
    """What one alive node offers: logical CPUs and GPUs."""

    cpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class ActorPlan:
    """num_actors actors, each reserving num_cpus CPUs and num_gpus GPUs, using `threads` torch
    threads; `fitting`: how many of them the nodes hold now (the others wait for resources)."""

    num_actors: int
    num_cpus: float
    num_gpus: float
    threads: int
    fitting: int


def check_ray_installed() -> None:
    """RayClusterError naming the extra to install when Ray is missing (found, not imported)."""
    if importlib.util.find_spec("ray") is None:
        from longllava_cli.failures import RayClusterError

        raise RayClusterError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}")


def is_ray_address(text: str) -> bool:
    """local, auto, ray://…, or HOST:PORT (a folder or file name is none of these)."""
    return text in (LOCAL, AUTO) or (text.startswith("ray://") and len(text) > 6) or bool(_HOST_PORT.match(text))


def plan_actors(nodes: Sequence[NodeResources], settings: RaySettings) -> ActorPlan:
    """The actors for `settings` on `nodes` (module docstring). RayClusterError when GPU actors are
    asked of a cluster without GPUs, or the cluster has no CPUs."""
    from longllava_cli.failures import RayClusterError

    total_cpus = sum(n.cpus for n in nodes)
    total_gpus = sum(n.gpus for n in nodes)
    if total_cpus <= 0:
        raise RayClusterError("the Ray cluster has no CPUs to run actors on (no alive nodes?)")
    gpus = settings.gpus_per_actor if settings.gpus_per_actor is not None else (1.0 if total_gpus > 0 else 0.0)
    if gpus > 0 and total_gpus <= 0:
        raise RayClusterError(
            f"--gpus-per-actor {gpus:g}: the Ray cluster has no GPUs; use --gpus-per-actor 0 to caption on CPUs"
        )
    if settings.actors is not None:
        count = settings.actors
    elif gpus > 0:
        count = max(1, sum(math.floor(n.gpus / gpus + 1e-9) for n in nodes))
    else:
        count = max(1, sum(math.floor(n.cpus / CPUS_PER_ACTOR_WITHOUT_GPU) for n in nodes))
    cpus = fitting_cpus(nodes, count, gpus)
    threads = settings.threads if settings.threads is not None else max(1, math.floor(cpus + 1e-9))
    fitting = sum(_holds(n, cpus, gpus) for n in nodes)
    return ActorPlan(num_actors=count, num_cpus=cpus, num_gpus=gpus, threads=threads, fitting=min(count, fitting))


def fitting_cpus(nodes: Sequence[NodeResources], count: int, gpus: float = 0.0) -> float:
    """The largest CPU share (a multiple of 1/100, at most a node's CPUs) with which `count` actors,
    each also taking `gpus` GPUs, fit on `nodes`; when no share lets them all fit (too few GPUs),
    the share that fits the most."""
    candidates = sorted({_round_down(n.cpus / k) for n in nodes for k in range(1, count + 1)} - {0.0}, reverse=True)
    best = candidates[-1] if candidates else 0.01
    most = -1
    for cpus in candidates:
        held = sum(_holds(n, cpus, gpus) for n in nodes)
        if held >= count:
            return cpus
        if held > most:
            best, most = cpus, held
    return best


def _holds(node: NodeResources, cpus: float, gpus: float) -> int:
    by_cpu = math.floor(node.cpus / cpus + 1e-9) if cpus > 0 else 0
    return min(by_cpu, math.floor(node.gpus / gpus + 1e-9)) if gpus > 0 else by_cpu


def _round_down(cpus: float) -> float:
    return math.floor(cpus * 100 + 1e-9) / 100
