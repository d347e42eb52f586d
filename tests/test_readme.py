"""The README's library example runs as written, from the repository root, and answers as the
demo model does (the CLI examples are run by tests/longllava_cli/test_demo_model.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_library_example_runs_as_written():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Library") :]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:1]
    assert "AskRequest(" in code and "ask(model, request" in code
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    answer = result.stdout.split(" {")[0]
    assert answer == "purple triangle"  # the README's own comment on examples/shapes.mp4


def test_memory_table_is_what_estimate_computes():
    """README's memory table of the released models is benchmarks/estimate_table.py's output, which
    runs `longllava estimate`'s code on the built-in cards."""
    script = ROOT / "benchmarks" / "estimate_table.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    table = result.stdout.strip()
    assert table.count("\n") == 7 and "| LongLLaVA-53B-A13B | int8" in table
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")
