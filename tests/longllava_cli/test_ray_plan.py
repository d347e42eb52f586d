"""`caption --ray`'s decisions that need no cluster: actor sizing, addresses, the optional value
of `--ray`, and the usage errors (no Ray is started here)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longllava_cli.app import app
from longllava_cli.caption import expand_inputs, select_shard
from longllava_cli.errors import EXIT_FAILURE, EXIT_USAGE
from longllava_cli.failures import RayClusterError
from longllava_cli.optional_value import fill_optional_values
from longllava_cli.ray_plan import (
    NodeResources,
    RaySettings,
    fitting_cpus,
    is_ray_address,
    plan_actors,
)


def test_cpu_cluster_defaults_to_one_actor_per_two_cpus():
    plan = plan_actors([NodeResources(8), NodeResources(3)], RaySettings())
    assert (plan.num_actors, plan.num_gpus, plan.fitting) == (5, 0, 5)
    assert plan.num_cpus == 2 and plan.threads == 2  # 4 on the 8-CPU node, 1 on the other
    one = plan_actors([NodeResources(1)], RaySettings())
    assert (one.num_actors, one.num_cpus, one.threads) == (1, 1, 1)


def test_more_actors_than_cpus_get_fractions():
    plan = plan_actors([NodeResources(2)], RaySettings(actors=3))
    assert (plan.num_actors, plan.num_cpus, plan.threads, plan.fitting) == (3, 0.66, 1, 3)
    assert plan_actors([NodeResources(2)], RaySettings(actors=2)).num_cpus == 1


def test_gpu_cluster_defaults_to_one_actor_per_gpu():
    nodes = [NodeResources(16, 8), NodeResources(16, 8), NodeResources(4, 0)]  # a CPU-only head node
    plan = plan_actors(nodes, RaySettings())
    assert (plan.num_actors, plan.num_gpus, plan.num_cpus, plan.fitting) == (16, 1, 2, 16)
    half = plan_actors(nodes, RaySettings(gpus_per_actor=0.5))
    assert (half.num_actors, half.num_cpus) == (32, 1)
    two = plan_actors(nodes, RaySettings(gpus_per_actor=2))
    assert (two.num_actors, two.num_cpus) == (8, 4)


def test_more_gpu_actors_than_gpus_wait():
    plan = plan_actors([NodeResources(16, 2)], RaySettings(actors=4))
    assert (plan.num_actors, plan.fitting) == (4, 2)


def test_gpu_actors_on_a_cpu_cluster_are_refused():
    with pytest.raises(RayClusterError, match="no GPUs; use --gpus-per-actor 0"):
        plan_actors([NodeResources(8)], RaySettings(gpus_per_actor=1))
    with pytest.raises(RayClusterError, match="no CPUs"):
        plan_actors([], RaySettings())


@given(
    cpus=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=5),
    count=st.integers(min_value=1, max_value=40),
)
def test_fitting_cpus_fit_and_are_the_largest_that_do(cpus, count):
    nodes = [NodeResources(c) for c in cpus]
    share = fitting_cpus(nodes, count)
    assert share > 0
    holds = lambda each: sum(math.floor(n.cpus / each + 1e-9) for n in nodes)  # as Ray counts: fixed point
    assert holds(share) >= count
    assert share == max(cpus) or holds(share + 0.01) < count


@pytest.mark.parametrize(
    ("text", "ok"),
    [("local", True), ("auto", True), ("ray://head:10001", True), ("10.0.0.5:6379", True), ("head-node:6379", True),
     ("[::1]:6379", True), ("videos/", False), ("clip.mp4", False), ("ray://", False), ("auto:", False)],
)  # fmt: skip
def test_ray_addresses(text, ok):
    assert is_ray_address(text) is ok


def test_bare_ray_takes_only_an_address():
    fill = fill_optional_values
    assert fill(["videos/", "--ray"]) == ["videos/", "--ray=local"]
    assert fill(["--ray", "videos/", "-o", "x"]) == ["--ray=local", "videos/", "-o", "x"]  # a folder is no address
    assert fill(["--ray", "auto", "v/"]) == ["--ray=auto", "v/"]
    assert fill(["--ray", "--actors", "2"]) == ["--ray=local", "--actors", "2"]
    assert fill(["--ray=ray://h:1", "v"]) == ["--ray=ray://h:1", "v"]
    assert fill(["--", "--ray"]) == ["--", "--ray"]


def test_pool_options_need_ray(runner, video, tmp_path):
    result = runner.invoke(app, ["caption", str(video), "-o", str(tmp_path / "o.jsonl"), "--actors", "2"])
    assert result.exit_code == EXIT_USAGE
    assert "--actors and --gpus-per-actor apply with --ray" in result.stderr


def test_bare_ray_before_the_inputs_reads_them_as_inputs(runner, video, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("longllava_cli.caption_job.run_job", lambda job: seen.append(job) or (None, 0))
    result = runner.invoke(app, ["caption", "--ray", str(video), "-o", str(tmp_path / "o.jsonl"), "--actors", "3"])
    assert result.exit_code == 0, result.output
    (job,) = seen
    assert job.paths == (str(video),) and job.ray == RaySettings(address="local", actors=3)


def test_shard_with_ray_sends_only_the_shard(runner, media_folder, tmp_path, monkeypatch):
    """--ray composes with --shard: the job --ray runs holds shard K/N's inputs, as a local one does."""
    seen = []
    monkeypatch.setattr("longllava_cli.caption_job.run_job", lambda job: seen.append(job) or (None, 0))
    out = str(tmp_path / "o.jsonl")
    for extra in (["--ray"], []):
        result = runner.invoke(app, ["caption", str(media_folder), "-o", out, "--shard", "2/3", *extra])
        assert result.exit_code == 0, result.output
    on_ray, local = seen
    assert on_ray.ray == RaySettings() and local.ray is None
    assert on_ray.paths == local.paths == tuple(select_shard(expand_inputs([str(media_folder)], recursive=False), 2, 3))


def test_missing_ray_is_one_line(runner, video, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    result = runner.invoke(app, ["caption", str(video), "-o", str(tmp_path / "o.jsonl"), "--ray"])
    assert result.exit_code == EXIT_FAILURE
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line == 'error: --ray needs Ray, which is not installed: pip install -e ".[ray]"'


def test_an_address_nobody_answers_is_one_line_at_once(runner, video, tmp_path):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "o.jsonl"
    result = runner.invoke(app, ["caption", str(video), "-o", str(out), "--ray", f"127.0.0.1:{port}"])
    assert result.exit_code == EXIT_FAILURE
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith(f"error: cannot reach the Ray cluster at 127.0.0.1:{port} (") and "ray start --head" in line
