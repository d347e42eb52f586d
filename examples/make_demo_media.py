"""Write the small demo media used by the README into this folder, drawn like the demo model's
training data from fixed seeds (the files and their questions: `model/training/demo_media.py`).
Run from the repository root:

    python examples/make_demo_media.py
"""

from pathlib import Path

from model.training.demo_media import write_demo_media

if __name__ == "__main__":
    write_demo_media(Path(__file__).parent)
