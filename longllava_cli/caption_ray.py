"""`caption --ray`: the same captions, made by a pool of Ray actors, written by this process.

Ray Core actors, managed here rather than through Ray Data: each actor loads the model once
(on its GPU when it has one) and captions one input per call; this driver keeps one input in
flight per actor and appends every record it gets back with the results file `caption` already
uses (one write per line, fsync, lock, torn-line repair), so the file and resume are those of a
local run. Per call, Ray Core costs about a millisecond; Ray Data's actor pools cost more per item,
and need pandas and pyarrow. Managing the actors here is what makes every outcome exact:

- An input's failure (bad media, too long) is caught in the actor (`caption_or_error`) and comes
  back as the same error record a local run writes.
- A lost actor (process killed, node gone): its in-flight input is given to a fresh actor, which
  Ray places wherever the resources are; an input that has taken down `MAX_ATTEMPTS` actors gets
  an error record instead of killing them forever.
- Ctrl-C (SIGINT): no new inputs are sent; those in flight finish and are written; exit 130.
- A lost driver: nothing in flight was written, everything written is whole, and the actors go
  with the job. Rerunning the command sends only the inputs without a record.

Inputs are decoded where the actor runs: every node must see the same paths (shared storage).
Relative paths are resolved from this process's working directory, which must exist on every
node; the model (a folder) too, given here as an absolute path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayError, RayTaskError

from longllava_cli import backend as library
from longllava_cli.caption import CaptionSummary, caption_or_error, missing_inputs, record_outcome, stop_on_sigint
from longllava_cli.caption_job import STDOUT, caption_input, failure_message
from longllava_cli.failures import RayClusterError
from longllava_cli.jsonl import Record, Results
from longllava_cli.output import ItemProgress, is_quiet, note, status
from longllava_cli.ray_plan import AUTO, LOCAL, ActorPlan, NodeResources, RaySettings, plan_actors

if TYPE_CHECKING:
    from longllava_cli.caption_job import CaptionJob
    from model.request import AskRequest, ModelSpec

MAX_ATTEMPTS = 3  # actors an input may take down before it gets an error record
POLL_SECONDS = 0.5  # how often the driver looks at Ctrl-C while waiting
CONNECT_SECONDS = 5  # how long a cluster's address may take to answer


class Captioner:
    """One Ray actor: the model, loaded once, and the request every input is asked. A load
    failure is kept and reported by `ready`, so that a bad checkpoint stops the job with its own
    message instead of restarting actors forever."""

    def __init__(self, spec: ModelSpec, request: AskRequest, cwd: str, threads: int) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative inputs mean what they mean to the driver
        import torch

        torch.set_num_threads(threads)
        # Decoding threads too stay within the actor's CPU share (the driver's default is its own cores).
        run = dataclasses.replace(request.run, decode_workers=min(request.run.decode_workers, threads))
        self.request = dataclasses.replace(request, run=run)
        self.model: Any = None
        self.error: str | None = None
        try:
            self.model = library.load_model(spec)
        except Exception as error:
            self.error = failure_message(error)

    def ready(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "error": self.error}

    def caption(self, path: str) -> Record:
        return caption_or_error(path, lambda p: caption_input(self.model, self.request, p), failure_message)


@dataclass
class _Slot:
    """One place in the pool: its current actor, its pending `ready()` call (None once answered),
    whether the model is loaded, and the input it works on: (path, attempt) and the call."""

    number: int
    actor: Any
    ready: Any
    alive: bool = False
    busy: tuple[str, int] | None = None
    call: Any = None

    def send(self, item: tuple[str, int]) -> None:
        self.busy, self.call = item, self.actor.caption.remote(item[0])


@dataclass
class _Pool:
    """The actors of a plan, replaced as they are lost."""

    make_actor: Callable[[], Any]
    slots: list[_Slot] = field(default_factory=list)
    restarts: int = 0
    failed_starts: int = 0  # actors lost before they were ready, since the last one that was

    def start(self, count: int) -> None:
        for number in range(1, count + 1):
            actor = self.make_actor()
            self.slots.append(_Slot(number, actor, actor.ready.remote()))

    def replace(self, slot: _Slot, reason: str) -> None:
        """A new actor in place of a lost one (which is killed, should it linger)."""
        with contextlib.suppress(RayError):  # already gone
            ray.kill(slot.actor, no_restart=True)
        self.restarts += 1
        note(f"actor {slot.number} lost ({reason}); starting a new one")
        slot.actor = self.make_actor()
        slot.ready, slot.alive, slot.busy, slot.call = slot.actor.ready.remote(), False, None, None

    def status(self) -> str:
        alive = sum(s.alive for s in self.slots)
        return f"actors {alive}/{len(self.slots)} alive, {self.restarts} restarted"

    def close(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(RayError):
                ray.kill(slot.actor, no_restart=True)


def run_captions_on_ray(job: CaptionJob, results: Results) -> CaptionSummary:
    """Caption the job's inputs missing from `results` on a Ray cluster (module docstring)."""
    assert job.ray is not None
    todo, summary = missing_inputs(job.paths, results)
    started_here = connect(job.ray, workers_to_stderr=job.output != STDOUT)
    try:
        nodes = cluster_nodes()
        plan = plan_actors(nodes, job.ray)
        if plan.num_actors > len(todo):  # no idle actors: the few that work get all the CPUs
            plan = plan_actors(nodes, dataclasses.replace(job.ray, actors=len(todo)))
        announce(plan)
        pool = _Pool(actor_factory(job, plan))
        try:
            pool.start(plan.num_actors)
            with stop_on_sigint("the inputs in flight") as stopping, ItemProgress(len(todo), "caption") as progress:
                _drive(pool, todo, lambda record: record_outcome(summary, results, record, progress), stopping,
                       progress)  # fmt: skip
                summary.interrupted = stopping()
        finally:
            pool.close()
    finally:
        if started_here:
            ray.shutdown()
    return summary


def connect(settings: RaySettings, *, workers_to_stderr: bool = True) -> bool:
    """Start a local cluster or join one; True when this call started Ray (and must shut it down).
    A process where Ray is already initialised (library use, tests) keeps its connection. The
    actors' own output (warnings) is shown here unless quiet, or when results go to stdout (Ray
    relays a worker's stdout to ours)."""
    if ray.is_initialized():
        return False
    relay = workers_to_stderr and not is_quiet()
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": relay}
    if settings.address == LOCAL:
        options["include_dashboard"] = False
        # Ray turns token authentication on for the clusters it starts, and says so: not news to our users.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    else:
        options["address"] = settings.address
    where = {LOCAL: "a local Ray cluster", AUTO: "the Ray cluster `ray start` runs on this machine (--ray auto)"}.get(
        settings.address, f"the Ray cluster at {settings.address}"
    )
    check_listening(settings.address, where)
    with status(f"starting {where}" if settings.address == LOCAL else f"joining {where}"):
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayClusterError(f"cannot reach {where}: {' '.join(str(e).split())[:300]}") from e
    return True


def check_listening(address: str, where: str) -> None:
    """For HOST:PORT and ray://HOST:PORT, RayClusterError at once when nothing answers there:
    Ray itself would retry for minutes before it gives up."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # local, auto
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as e:
        raise RayClusterError(
            f"cannot reach {where} ({e.strerror or e}); start it with `ray start --head` or check the address"
        ) from e


def cluster_nodes() -> list[NodeResources]:
    return [
        NodeResources(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
        for n in ray.nodes()
        if n.get("Alive")
    ]


def announce(plan: ActorPlan) -> None:
    gpus = f", {plan.num_gpus:g} GPU" if plan.num_gpus else ""
    actors, threads = f"{plan.num_actors} actor{'s'[: plan.num_actors != 1]}", f"thread{'s'[: plan.threads != 1]}"
    note(f"ray: {actors}, each with {plan.num_cpus:g} CPU{gpus} and {plan.threads} torch {threads}")
    if plan.fitting < plan.num_actors:
        note(f"ray: only {plan.fitting} of {plan.num_actors} actors fit the cluster now; the others wait for resources")


def actor_factory(job: CaptionJob, plan: ActorPlan) -> Callable[[], Any]:
    """A function making one actor of the plan: the model folder made absolute (the actor may
    run elsewhere), no Ray restarts (the pool replaces lost actors itself)."""
    spec = job.model
    if isinstance(spec.path, Path):
        spec = dataclasses.replace(spec, path=spec.path.absolute())
    remote = ray.remote(Captioner).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_restarts=0)
    cwd = os.getcwd()
    return lambda: remote.remote(spec, job.request, cwd, plan.threads)


def _drive(
    pool: _Pool,
    todo: list[str],
    write: Callable[[Record], None],
    stopping: Callable[[], bool],
    progress: ItemProgress,
) -> None:
    """Keep every live actor busy until all inputs have a record (or, after Ctrl-C, until those
    in flight do)."""
    queue = [(path, 1) for path in reversed(todo)]  # popped from the end: first input first
    while True:
        for slot in pool.slots:
            if slot.alive and slot.busy is None and queue and not stopping():
                slot.send(queue.pop())
        calls = {slot.call: slot for slot in pool.slots if slot.busy is not None}
        if not calls and (not queue or stopping()):
            return
        starting = {} if stopping() else {slot.ready: slot for slot in pool.slots if slot.ready is not None}
        progress.set_status(pool.status())
        done, _ = ray.wait([*calls, *starting], num_returns=1, timeout=POLL_SECONDS)
        for ref in done:
            if ref in starting:
                _answered_ready(pool, starting[ref])
            else:
                _answered_caption(pool, calls[ref], queue, write, stopping())


def _answered_ready(pool: _Pool, slot: _Slot) -> None:
    """The actor loaded its model (it may now take inputs), failed to (the job stops: every actor
    would), or was lost on the way (replaced)."""
    ref, slot.ready = slot.ready, None
    try:
        answer = ray.get(ref)
    except RayError as e:
        pool.failed_starts += 1
        if pool.failed_starts > MAX_ATTEMPTS * len(pool.slots):
            raise RayClusterError(f"Ray actors keep dying while they load the model (last: {_reason(e)})") from e
        pool.replace(slot, _reason(e))
        return
    if answer["error"] is not None:
        raise RayClusterError(f"a Ray actor could not load the model: {answer['error']}")
    slot.alive, pool.failed_starts = True, 0


def _answered_caption(
    pool: _Pool, slot: _Slot, queue: list[tuple[str, int]], write: Callable[[Record], None], stopping: bool
) -> None:
    """Write the record that came back; when none did (the actor was lost, or the call raised),
    retry the input first thing, or after MAX_ATTEMPTS write an error record. After Ctrl-C an
    unfinished input is left for the next run."""
    (path, attempt), ref = slot.busy, slot.call  # type: ignore[misc]
    slot.busy = slot.call = None
    try:
        record = ray.get(ref)
    except RayTaskError as e:  # raised inside a live actor: Ctrl-C reaching it, or a bug
        reason = _reason(e.cause if e.cause is not None else e)
    except RayError as e:  # the actor is gone (killed, out of memory, node lost)
        reason = _reason(e)
        if stopping:
            slot.alive = False
        else:
            pool.replace(slot, reason)
    else:
        write(record)
        return
    if stopping:
        return
    if attempt >= MAX_ATTEMPTS:
        write({"path": path, "error": f"{path}: no Ray actor could caption it ({attempt} attempts; last: {reason})"})
    else:
        queue.append((path, attempt + 1))


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text[:200]}"
