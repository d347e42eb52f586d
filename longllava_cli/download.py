"""`longllava pull`: check the repo id, download through the library (`model.hub_pull`), show the
progress on stderr and print the local folder on stdout.

Progress: a rich bar of bytes with speed and time left on a terminal; elsewhere one plain line per
file (`[2/7] model-00001-of-00004.safetensors 4.63 GiB`); nothing with --quiet. Files already in
the cache count as done at once.
"""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from longllava_cli.clickcompat import BadParameter
from longllava_cli.output import format_size, is_quiet, note, stderr_console, stderr_is_tty, write_text


def pull(text: str) -> None:
    """Download `ORG/NAME[@REVISION]` into the Hugging Face cache and print its snapshot folder."""
    from model.hub import parse_repo_reference
    from model.hub_pull import pull_model

    reference = parse_repo_reference(text)
    if reference is None:
        raise BadParameter(
            f"{text!r} is not a Hugging Face repo id: write ORG/NAME, or ORG/NAME@REVISION for a branch, tag or commit",
            param_hint="ORG/NAME[@REVISION]",
        )
    with PullBar() as bar:
        folder = pull_model(reference, progress=bar)
    write_text(f"{folder}\n")


class PullBar:
    """A `model.hub_pull.PullProgress` drawn on stderr (module docstring)."""

    def __init__(self) -> None:
        self.files: dict[str, int] = {}
        self.done = 0
        self.file_bytes = 0
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> PullBar:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, repo: str, files: dict[str, int]) -> None:
        self.files = dict(files)
        total = sum(files.values())
        if is_quiet():
            return
        if stderr_is_tty():
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=stderr_console(),
            )
            self._bar.start()
            self._task = self._bar.add_task(f"pulling {repo}", total=total)
        else:
            note(f"pulling {repo}: {len(files)} files, {format_size(total)}")

    def advance(self, num_bytes: int) -> None:
        self.file_bytes += num_bytes
        if self._bar is not None:
            self._bar.update(self._task, advance=num_bytes)

    def file_done(self, name: str) -> None:
        size = self.files.get(name, 0)
        cached = self.file_bytes == 0 and size > 0
        if self._bar is not None and size > self.file_bytes:  # already cached, or fewer bytes than listed
            self._bar.update(self._task, advance=size - self.file_bytes)
        self.done, self.file_bytes = self.done + 1, 0
        if self._bar is None:
            note(f"[{self.done}/{len(self.files)}] {name} {format_size(size)}{' (already cached)' if cached else ''}")
