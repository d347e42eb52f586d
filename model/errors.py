"""Typed errors of the model package. Each message is one line that names the file, tensor or
limit at fault and says what to do; the CLI maps each class to an exit code in one table."""

from __future__ import annotations

from sampling.errors import LongLLaVAError


class ModelError(LongLLaVAError):
    """Base class of the model package's errors."""


class CheckpointError(ModelError):
    """A checkpoint directory is missing, incomplete, corrupt or of an unsupported kind."""


class ContextTooLongError(ModelError):
    """A request needs more tokens than the caller allowed."""


class MemoryBudgetError(ModelError):
    """A request cannot fit the given memory budget; raised before any heavy work."""


class ModelNotDownloadedError(CheckpointError):
    """A model named by a Hugging Face repo id is not in the local cache, or only part of it is;
    the message names what is missing and the `longllava pull` command that fetches it."""


class DownloadError(ModelError):
    """`pull` could not fetch a model: no network, an unknown or gated repo, a full disk."""


class QuantizationError(ModelError):
    """A quantisation cannot be applied: its library is missing, or it does not run on the device."""


class StateCacheWarning(UserWarning):
    """The state cache could not use or keep a saved state (damaged, foreign, unwritable): the
    answer is computed afresh and is the same; the message is one line naming the file."""


class ConversationFullError(ContextTooLongError):
    """A chat's next turn (question and the longest answer allowed) would go past the model's
    context; the conversation is unchanged, and usable again after `reset()`."""
