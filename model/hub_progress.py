"""huggingface_hub's progress bars (its `tqdm_class` argument) routed to a `PullProgress`, or off.

`hf_hub_download` makes one bar per file through `tqdm_class` (`file_download.http_get`; for Xet
storage `_xet_progress_reporting.XetDownloadProgressReporter`) and calls `update(n)` with the
bytes written. A class that also has `update_transfer` is treated like huggingface_hub's own
aggregating bar (`_snapshot_download._AggregatedTqdm`): it gets the network bytes there, and Xet
then makes one bar instead of two, so counting `update` alone counts each byte once.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from huggingface_hub.utils import tqdm as hf_tqdm

if TYPE_CHECKING:
    from model.hub_pull import PullProgress


def byte_counter(progress: PullProgress | None) -> type:
    """A `tqdm_class` whose bars add the bytes they see to `progress` (nothing when None)."""

    class ByteCounter:
        def __init__(self, *args: Any, initial: int = 0, **kwargs: Any) -> None:
            self.n = initial
            if initial and progress is not None:
                progress.advance(int(initial))

        def update(self, n: float | None = 1) -> None:
            self.n += int(n or 0)
            if progress is not None and n:
                progress.advance(int(n))

        def update_transfer(self, n: float | None = 1) -> None:
            """Network bytes (compressed or deduplicated): `update` counts what reaches the disk."""

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            """Rates are the caller's to show."""

        set_transfer_postfix_str = set_postfix_str

        def refresh(self) -> None:
            """Nothing drawn here."""

        def close(self) -> None:
            """Nothing to release."""

        def __enter__(self) -> ByteCounter:
            return self

        def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
            self.close()

    return ByteCounter


class QuietBars(hf_tqdm):
    """huggingface_hub's own bar class, always disabled: for calls whose progress is not shown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "disable": True})
