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
