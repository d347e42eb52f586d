"""The state cache through the CLI. The installed `longllava`: `ask --json` says "off", "miss", then
"hit" with the same answer as `--no-cache`, a damaged state is one warning line and the right
answer, `cache ls` and `cache clear` (which leaves other files alone), and the default folder
honours XDG_CACHE_HOME. In process, with the fake library: the requests the options build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from longllava_cli.app import app

ASK = ("--frames", "4", "--max-new-tokens", "5", "--json")


def ask_json(run_cli, tiny_model, video, *extra, env=None, question="What happens?"):
    # One thread: tiny chunks on a shared 2-core machine (and the same arithmetic in every run).
    env = {"OMP_NUM_THREADS": "1", **(env or {})}
    result = run_cli("ask", str(video), question, "--model", str(tiny_model), *ASK, *extra, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_follow_up_ask_is_served_from_the_cache(run_cli, tiny_model, video, tmp_path):
    states = tmp_path / "chosen"
    plain, _ = ask_json(run_cli, tiny_model, video, "--no-cache", question="Who?")
    first, _ = ask_json(run_cli, tiny_model, video, "--cache-dir", str(states))
    again, _ = ask_json(run_cli, tiny_model, video, "--cache-dir", str(states), question="Who?")
    assert (plain["cache"], first["cache"], again["cache"]) == ("off", "miss", "hit")
    assert again["answers"] == plain["answers"] and again["inputs"] == plain["inputs"]

    (path,) = states.glob("state-*.safetensors")
    os.truncate(path, path.stat().st_size - 100)
    damaged, stderr = ask_json(run_cli, tiny_model, video, "--cache-dir", str(states), question="Who?")
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert damaged["cache"] == "miss" and damaged["answers"] == plain["answers"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "truncated" in warnings[0], stderr
    assert "Traceback" not in stderr

    listing = run_cli("cache", "ls", "--cache-dir", str(states), "--json")
    assert listing.returncode == 0, listing.stderr
    (entry,) = json.loads(listing.stdout)["states"]
    assert entry["model"] == tiny_model.name and entry["inputs"] == [str(video)] and entry["readable"]
    table = run_cli("cache", "ls", "--cache-dir", str(states)).stdout
    assert entry["key"][:12] in table and str(video) in table

    (states / "keep-me.txt").write_text("not ours")
    cleared = run_cli("cache", "clear", "--cache-dir", str(states))
    assert cleared.returncode == 0 and "removed" in cleared.stdout
    assert sorted(p.name for p in states.iterdir()) == ["keep-me.txt"]


def test_on_by_default_in_the_user_cache_folder(run_cli, tiny_model, video, tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg-cache"), "LONGLLAVA_CACHE_DIR": ""}  # empty: not set
    first, _ = ask_json(run_cli, tiny_model, video, env=env)
    assert first["cache"] == "miss"
    assert len(list((tmp_path / "xdg-cache" / "longllava" / "states").glob("state-*.safetensors"))) == 1


def test_cache_options_build_the_request(runner, fake, video, tmp_path, monkeypatch):
    monkeypatch.delenv("LONGLLAVA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    args = ["ask", str(video), "q", "--model", "m"]
    for extra in ([], ["--cache-dir", "~/states", "--cache-size", "512MB"], ["--no-cache"]):
        assert runner.invoke(app, [*args, *extra]).exit_code == 0
    default, chosen, off = (r.run for r in fake.requests)
    assert (default.cache_dir, default.cache_size) == (tmp_path / "xdg-cache" / "longllava" / "states", 20 * 2**30)
    assert (chosen.cache_dir, chosen.cache_size) == (Path("~/states").expanduser(), 512 * 2**20)
    assert off.cache_dir is None


def test_cache_settings_from_the_config_file_and_environment(runner, fake, video, tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(f"cache_dir: {tmp_path / 'from-config'}\ncache-size: 1GB\n")
    args = ["ask", str(video), "q", "--model", "m", "--config", str(config)]
    monkeypatch.delenv("LONGLLAVA_CACHE_DIR")
    assert runner.invoke(app, args).exit_code == 0
    monkeypatch.setenv("LONGLLAVA_CACHE_DIR", str(tmp_path / "from-env"))
    assert runner.invoke(app, args).exit_code == 0
    config.write_text("cache: false\n")
    assert runner.invoke(app, args).exit_code == 0
    from_config, from_env, off = (r.run for r in fake.requests)
    assert (from_config.cache_dir, from_config.cache_size) == (tmp_path / "from-config", 2**30)
    assert from_env.cache_dir == tmp_path / "from-env" and off.cache_dir is None


def test_bad_cache_size_is_a_usage_error(runner, fake, video):
    result = runner.invoke(app, ["ask", str(video), "q", "--model", "m", "--cache-size", "lots"])
    assert result.exit_code == 2 and "--cache-size" in result.output and not fake.requests


def test_listing_and_clearing_never_load_torch(tmp_path):
    code = (
        "import sys; from pathlib import Path; from longllava_cli.cache_listing import describe_states, clear_states; "
        f"describe_states(Path({str(tmp_path)!r})); clear_states(Path({str(tmp_path)!r})); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
