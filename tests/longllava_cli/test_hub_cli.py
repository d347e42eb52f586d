"""Models by Hugging Face repo id on the command line: `pull` from a local stand-in of the Hub
(HF_ENDPOINT on 127.0.0.1), `--model ORG/NAME[@REVISION]` resolved offline from the cache in
`ask`, `info`, `estimate` and `frames`, partial downloads, and `models`.

The installed entry point answers `ask --model ORG/NAME` exactly as `--model FOLDER` with
HF_HUB_OFFLINE=1 and no reachable endpoint, from a cache that huggingface_hub itself wrote (the
pull); the in-process checks use a cache laid out by hand."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from longllava_cli.app import app
from model.hub_testing import HubStandIn, write_hf_cache
from model.testing import write_tiny_longllava

SHARD_2 = "model-00002-of-00002.safetensors"
ASK = ["--frames", "4", "--max-new-tokens", "6", "--json"]


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hand_cache(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A cache laid out by hand, made this process's: org/hand at main (the tiny model) and at tag
    v2 (another model). Returns the folders and snapshots."""
    v2 = write_tiny_longllava(tmp_path / "v2", seed=1, lm={"num_hidden_layers": 2})
    cache = tmp_path / "cache"
    main_snapshot = write_hf_cache(cache, "org/hand", tiny_model)
    v2_snapshot = write_hf_cache(cache, "org/hand", v2, refs=("v2",))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")  # a pull would fail, not leave
    return {"cache": cache, "v2": v2, "main_snapshot": main_snapshot, "v2_snapshot": v2_snapshot}


def test_pull_then_ask_offline_answers_as_the_folder(run_cli, tiny_model, video, tmp_path):
    home = tmp_path / "hf"
    with HubStandIn() as hub:
        hub.add_repo("org/tiny", tiny_model)
        pulled = run_cli("pull", "org/tiny", env={"HF_HOME": str(home), "HF_ENDPOINT": hub.url})
    assert pulled.returncode == 0, pulled.stderr
    snapshot = Path(pulled.stdout.strip())
    assert snapshot.parent == (home / "hub" / "models--org--tiny" / "snapshots").resolve()
    progress = pulled.stderr.splitlines()  # stderr is no terminal here: one plain line per file
    assert progress[0].startswith("pulling org/tiny: 7 files, ") and progress[-1].startswith("[7/7] model-")
    offline = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    by_repo = run_cli("ask", str(video), "What happens?", *ASK, "--model", "org/tiny", env=offline)
    by_folder = run_cli("ask", str(video), "What happens?", *ASK, "--model", str(tiny_model), env=offline)
    assert by_repo.returncode == 0 and by_folder.returncode == 0, by_repo.stderr + by_folder.stderr
    repo, folder = json.loads(by_repo.stdout), json.loads(by_folder.stdout)
    assert repo["model"] == "org/tiny" and folder["model"] == tiny_model.name
    for key in ("answers", "inputs", "num_prompt_tokens", "num_visual_tokens"):
        assert repo[key] == folder[key], key


def test_ask_at_a_revision_answers_as_that_revision(runner, hand_cache, tiny_model, video):
    by_revision = invoke(runner, "ask", video, "What happens?", *ASK, "--model", "org/hand@v2")
    by_folder = invoke(runner, "ask", video, "What happens?", *ASK, "--model", hand_cache["v2"])
    by_main = invoke(runner, "ask", video, "What happens?", *ASK, "--model", "org/hand")
    assert by_revision.exit_code == by_folder.exit_code == by_main.exit_code == 0, by_revision.output
    revision, folder, main = (json.loads(r.stdout) for r in (by_revision, by_folder, by_main))
    assert revision["model"] == "org/hand@v2" and revision["answers"] == folder["answers"]
    assert main["answers"] != revision["answers"]  # another model: main is not what was asked for


def test_info_estimate_and_frames_take_a_repo_id(runner, hand_cache, image):
    info = invoke(runner, "info", "--model", "org/hand@v2", "--json")
    assert info.exit_code == 0, info.output
    model = json.loads(info.stdout)["model"]
    assert (model["repo_id"], model["revision"], model["num_layers"]) == ("org/hand", "v2", 2)
    assert model["path"] == str(hand_cache["v2_snapshot"].resolve())
    text = invoke(runner, "info", "--model", "org/hand")
    assert f"org/hand ({hand_cache['main_snapshot'].resolve()})" in text.stdout
    estimate = invoke(runner, "estimate", "--model", "org/hand", "--frames", "8", "--gpu-memory", "1GB", "--json")
    assert estimate.exit_code == 0 and json.loads(estimate.stdout)["model"] == "org/hand", estimate.output
    frames = invoke(runner, "frames", image, "--model", "org/hand@v2", "--json")
    assert frames.exit_code == 0 and json.loads(frames.stdout)["tokens_per_image"] == 4, frames.output


def test_absent_and_partial_downloads_are_one_line_errors(runner, hand_cache, video):
    absent = invoke(runner, "ask", video, "q", "--model", "org/absent")
    assert absent.exit_code == 1 and "not downloaded: run `longllava pull org/absent`" in one_line(absent)
    (hand_cache["v2_snapshot"] / SHARD_2).unlink()  # named by the index: an interrupted download
    for command in (["ask", video, "q"], ["info"], ["estimate"]):
        partial = invoke(runner, *command, "--model", "org/hand@v2")
        line = one_line(partial)
        assert partial.exit_code == 1 and SHARD_2 in line and "run `longllava pull org/hand@v2`" in line, line


def test_models_lists_the_cached_repo_and_the_demo(runner, hand_cache):
    from model.demo import DEMO_MODEL_DIR

    (hand_cache["v2_snapshot"] / SHARD_2).unlink()
    listed = invoke(runner, "models", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["cache_dir"] == str(hand_cache["cache"])
    rows = {(m["name"], tuple(m["refs"])): m for m in data["models"]}
    assert set(rows) == {("org/hand", ("main",)), ("org/hand", ("v2",)), ("demo", ())}
    assert rows["org/hand", ("main",)]["complete"] and rows["org/hand", ("v2",)]["missing"] == [SHARD_2]
    assert rows["demo", ()]["path"] == str(DEMO_MODEL_DIR) and rows["demo", ()]["size_bytes"] > 0
    text = invoke(runner, "models").stdout.splitlines()
    assert text[0].split() == ["MODEL", "REVISION", "SIZE", "STATUS"]
    assert [line.split()[0] for line in text[1:4]] == ["org/hand", "org/hand", "demo"]
    assert f"incomplete: lacks {SHARD_2}" in text[2] and text[-1] == f"Hugging Face cache: {hand_cache['cache']}"


def test_pull_errors_and_quiet(runner, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with HubStandIn() as hub:
        hub.add_repo("org/tiny", tiny_model)
        hub.add_repo("org/gated", tiny_model, gated=True)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        quiet = invoke(runner, "pull", "org/tiny", "--quiet")
        assert quiet.exit_code == 0 and quiet.stderr == "" and Path(quiet.stdout.strip()).is_dir()
        for ref, message in [("org/nope", "no such model repo"), ("org/gated", "gated repo")]:
            result = invoke(runner, "pull", ref, "-q")
            assert result.exit_code == 1 and message in one_line(result)
    usage = invoke(runner, "pull", "not-a-repo-id")
    assert usage.exit_code == 2 and "is not a Hugging Face repo id" in one_line(usage)


def test_pull_and_models_do_not_load_torch(tmp_path):
    """`models` reads the cache layout only; `pull` needs huggingface_hub, not the model code."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from longllava_cli.app import app\n"
        "for args in (['pull', '--help'], ['models', '--help'], ['models', '--json']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "False"
