"""Model references offline (model/hub.py), the listing of cached models (model/hub_list.py) and
`pull` against a local stand-in of the Hub (model/hub_pull.py, model/hub_testing.py).

Two caches are used: one that huggingface_hub itself writes (a pull from the stand-in, over HTTP
on 127.0.0.1), and one laid out by hand (`write_hf_cache`), so the checks do not rest only on our
own idea of the layout. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from model.errors import CheckpointError, DownloadError, ModelNotDownloadedError
from model.hub import RepoReference, find_model, parse_repo_reference, resolve_model
from model.hub_list import list_cached_models
from model.hub_pull import pull_model
from model.hub_testing import HubStandIn, file_hash, write_hf_cache
from model.testing import write_tiny_longllava

SHARD_2 = "model-00002-of-00002.safetensors"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_longllava(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model: other weights, 2 layers instead of 4."""
    return write_tiny_longllava(tmp_path_factory.mktemp("tiny2") / "tiny2", seed=1, lm={"num_hidden_layers": 2})


@pytest.fixture(scope="module")
def hub(tiny: Path, tiny_v2: Path, tmp_path_factory: pytest.TempPathFactory):
    """The stand-in: org/tiny (main, and tag v2 at another commit, plus files pull must leave
    alone), org/gated, org/no-weights."""
    extra = tmp_path_factory.mktemp("extra") / "tiny-extra"
    shutil.copytree(tiny, extra)
    (extra / "README.md").write_text("# tiny\n")
    (extra / "pytorch_model.bin").write_bytes(b"pickles are never fetched")
    bare = tmp_path_factory.mktemp("bare")
    shutil.copy(tiny / "config.json", bare / "config.json")
    with HubStandIn() as server:
        server.add_repo("org/tiny", extra)
        server.add_repo("org/tiny", tiny_v2, refs=("v2",))
        server.add_repo("org/gated", tiny, gated=True)
        server.add_repo("org/no-weights", bare)
        yield server


@pytest.fixture
def pulled(hub: HubStandIn, tmp_path: Path) -> Path:
    """A cache that huggingface_hub wrote: org/tiny pulled from the stand-in; returns the cache."""
    pull_model(RepoReference("org/tiny"), endpoint=hub.url, cache_dir=tmp_path / "cache")
    return tmp_path / "cache"


# --- references --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FreedomIntelligence/LongLLaVA-9B", ("FreedomIntelligence/LongLLaVA-9B", None)),
        ("org/name@main", ("org/name", "main")),
        ("org/name@refs/pr/1", ("org/name", "refs/pr/1")),
        ("org/name@" + "a" * 40, ("org/name", "a" * 40)),
        ("org/name@", None),
        ("org/name@../x", None),
        ("name", None),
        ("/abs/org/name", None),
        ("./org/name", None),
        ("~/models/x", None),
        ("org/na--me", None),
        ("a/b/c", None),
    ],
)
def test_parse_repo_reference(text, expected):
    parsed = parse_repo_reference(text)
    assert (parsed if parsed is None else (parsed.repo_id, parsed.revision)) == expected


def test_a_hand_built_cache_resolves_offline_by_ref_and_revision(tiny, tiny_v2, tmp_path):
    cache = tmp_path / "cache"
    main = write_hf_cache(cache, "org/hand", tiny)
    v2 = write_hf_cache(cache, "org/hand", tiny_v2, refs=("v2", "refs/pr/1"))
    assert os.readlink(main / "config.json").startswith("../../blobs/")  # the layout huggingface_hub reads
    assert resolve_model("org/hand", cache_dir=cache) == main.resolve()
    assert resolve_model("org/hand@main", cache_dir=cache) == main.resolve()
    assert resolve_model("org/hand@v2", cache_dir=cache) == v2.resolve()
    assert resolve_model("org/hand@refs/pr/1", cache_dir=cache) == v2.resolve()
    assert resolve_model(f"org/hand@{v2.name}", cache_dir=cache) == v2.resolve()
    location = find_model("org/hand@v2", cache_dir=cache)
    assert (location.repo_id, location.revision, location.commit, location.missing) == ("org/hand", "v2", v2.name, ())
    assert location.name == "org/hand@v2" and location.is_downloaded


def test_absent_models_are_reported_without_an_error_until_required(tiny, tmp_path):
    cache = tmp_path / "cache"
    write_hf_cache(cache, "org/hand", tiny)
    for ref in ("org/other", "org/hand@v9"):
        location = find_model(ref, cache_dir=cache)
        assert location.path is None and location.is_repo and not location.is_downloaded
        with pytest.raises(ModelNotDownloadedError, match=f"not downloaded: run `longllava pull {ref}`"):
            location.require()
    assert find_model("org/hand", cache_dir=tmp_path / "no-cache-here").path is None


def test_a_local_folder_wins_over_a_repo_id_spelt_the_same(tiny, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    write_hf_cache(cache, "org/hand", tiny)
    shutil.copytree(tiny, tmp_path / "org" / "hand")
    monkeypatch.chdir(tmp_path)
    location = find_model("org/hand", cache_dir=cache)
    assert location.path == Path("org/hand") and not location.is_repo
    missing = find_model("no/such-folder-or-repo", cache_dir=cache)
    assert missing.path is None and "found no folder no/such-folder-or-repo" in _message(missing.require)


def test_a_missing_shard_is_one_line_naming_it_and_pull(tiny, tmp_path):
    cache = tmp_path / "cache"
    snapshot = write_hf_cache(cache, "org/hand", tiny)
    (snapshot / SHARD_2).unlink()  # the index names it: an interrupted download
    location = find_model("org/hand", cache_dir=cache)
    assert location.path is not None and location.missing == (SHARD_2,)
    message = _message(location.require)
    assert SHARD_2 in message and "run `longllava pull org/hand`" in message and "\n" not in message
    # The loader, given the snapshot folder itself, says the same pull (at that commit).
    from model.loading import open_checkpoint

    with pytest.raises(CheckpointError, match=rf"{SHARD_2}: shard listed .* `longllava pull org/hand@{snapshot.name}`"):
        open_checkpoint(snapshot)


def test_dangling_symlinks_and_refs_leading_out_are_not_followed(tiny, tmp_path):
    cache = tmp_path / "cache"
    snapshot = write_hf_cache(cache, "org/hand", tiny)
    (snapshot / "tokenizer.json").resolve().unlink()  # its blob deleted: a dangling symlink
    assert find_model("org/hand", cache_dir=cache).missing == ("tokenizer.json",)
    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny, outside)
    (cache / "models--org--hand" / "refs" / "main").write_text(os.path.relpath(outside, snapshot.parent))
    assert find_model("org/hand", cache_dir=cache).path is None


# --- pull against the stand-in ---------------------------------------------------------------


def test_pull_writes_the_cache_huggingface_hub_reads(hub, pulled, tiny):
    repo = pulled / "models--org--tiny"
    commit = (repo / "refs" / "main").read_text()
    snapshot = repo / "snapshots" / commit
    names = sorted(p.name for p in snapshot.iterdir())
    assert names == sorted(p.name for p in tiny.iterdir())  # no README, no pytorch_model.bin
    for name in names:
        link = snapshot / name
        assert os.readlink(link).startswith("../../blobs/")  # relative symlinks into blobs/
        data = (tiny / name).read_bytes()
        assert link.resolve().name == file_hash(name, data) and link.read_bytes() == data
    shard = (snapshot / SHARD_2).resolve().name
    assert shard == hashlib.sha256((tiny / SHARD_2).read_bytes()).hexdigest()  # LFS blobs: their sha256
    assert not [r for r in hub.requests if "README" in r or ".bin" in r]
    assert resolve_model("org/tiny", cache_dir=pulled) == snapshot.resolve()
    # A second revision is its own snapshot; its tag its own ref.
    v2 = pull_model(RepoReference("org/tiny", "v2"), endpoint=hub.url, cache_dir=pulled)
    assert v2 != snapshot.resolve() and (repo / "refs" / "v2").read_text() == v2.name
    assert resolve_model("org/tiny@v2", cache_dir=pulled) == v2


def test_a_truncated_blob_in_a_pulled_cache_is_incomplete(pulled):
    snapshot = resolve_model("org/tiny", cache_dir=pulled)
    blob = (snapshot / SHARD_2).resolve()
    blob.write_bytes(blob.read_bytes()[:1000])  # the listing huggingface_hub recorded says how long it is
    location = find_model("org/tiny", cache_dir=pulled)
    assert location.missing == (SHARD_2,)
    assert f"{SHARD_2} is incomplete in " in _message(location.require)


def test_a_truncated_blob_without_a_listing_is_caught_by_the_loader(tiny, tmp_path):
    """A hand-made cache records no sizes: the safetensors header check finds the cut, and says pull."""
    from model.loading import open_checkpoint

    snapshot = write_hf_cache(tmp_path / "cache", "org/hand", tiny)
    blob = (snapshot / SHARD_2).resolve()
    blob.write_bytes(blob.read_bytes()[:-100])
    folder = resolve_model("org/hand", cache_dir=tmp_path / "cache")
    with pytest.raises(CheckpointError, match=rf"{SHARD_2}: .* truncated .* `longllava pull org/hand@{snapshot.name}`"):
        open_checkpoint(folder)


def test_pull_reports_each_failure_in_one_line(hub, tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def failure(ref: str, endpoint: str = hub.url) -> str:
        reference = parse_repo_reference(ref)
        with pytest.raises(DownloadError) as error:
            pull_model(reference, endpoint=endpoint, cache_dir=cache)
        assert "\n" not in str(error.value)
        return str(error.value)

    assert "no such model repo" in failure("org/nope")
    assert "gated repo" in failure("org/gated")
    assert "has no revision 'v9'" in failure("org/tiny@v9")
    assert "no *.safetensors weights" in failure("org/no-weights")
    assert "cannot reach http://127.0.0.1" in failure("org/tiny", endpoint=f"http://127.0.0.1:{_closed_port()}")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE is set" in failure("org/tiny")


def test_pull_on_a_full_disk(hub, tmp_path, monkeypatch):
    """The one transport patch: the write of a file fails as on a full disk."""
    import huggingface_hub

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", full)
    with pytest.raises(DownloadError, match=r"no space left in .*cache"):
        pull_model(RepoReference("org/tiny"), endpoint=hub.url, cache_dir=tmp_path / "cache")


# --- the listing -------------------------------------------------------------------------------


def test_cached_models_lists_jamba_snapshots_complete_or_not(pulled, tiny, tmp_path):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    write_hf_cache(pulled, "other/bert", bert)  # not a Jamba model: not listed
    partial = write_hf_cache(pulled, "org/partial", tiny)
    (partial / SHARD_2).unlink()
    found = {m.repo_id: m for m in list_cached_models(pulled)}
    assert sorted(found) == ["org/partial", "org/tiny"]
    tiny_size = sum(p.stat().st_size for p in tiny.iterdir())
    assert (
        found["org/tiny"].complete and found["org/tiny"].refs == ("main",) and found["org/tiny"].size_bytes == tiny_size
    )
    assert found["org/partial"].missing == (SHARD_2,) and found["org/partial"].size_bytes < tiny_size
    assert list_cached_models(tmp_path / "none") == []


# --- helpers -----------------------------------------------------------------------------------


def _message(call) -> str:
    with pytest.raises(ModelNotDownloadedError) as error:
        call()
    return str(error.value)


def _closed_port() -> int:
    """A local port with nothing listening (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
