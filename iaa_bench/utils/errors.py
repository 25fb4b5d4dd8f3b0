"""Every error iaa_bench raises on purpose: one base class, one subclass per kind of mistake.

Command-line scripts catch `IAABenchError` (see `iaa_bench.utils.cli`): its message is printed
as `error: ...` and the script exits with status 2. Anything else is a bug and keeps its traceback.
"""


class IAABenchError(Exception):
    """Base of iaa_bench's expected errors: the message says what to fix."""


class OptionError(IAABenchError, ValueError):
    """An option file or command-line option is wrong; the message names where."""


class InputFormatError(IAABenchError, ValueError):
    """A raw input file is malformed; the message names the file and 1-based line."""

    def __init__(self, path, line_no: int, message: str):
        super().__init__(f"{path}:{line_no}: {message}")


class WeightsUnavailableError(IAABenchError, RuntimeError):
    """Pre-trained weights are needed but are neither local nor downloadable."""


class DependencyError(IAABenchError, ImportError):
    """A component's module cannot be imported here (a package it needs is missing or broken)."""


class CheckpointError(IAABenchError, RuntimeError):
    """A checkpoint or training state cannot be written or read."""


class FrozenEncoderMismatchError(IAABenchError, ValueError):
    """A checkpoint was trained on top of different frozen encoders than the network has."""


class FeatureCacheError(IAABenchError, ValueError):
    """The option file asks for a cache that cannot reproduce what the uncached run sees."""


class BadImageError(IAABenchError, RuntimeError):
    """An image cannot be decoded and the dataset's `bad_image` policy is `fail`."""


class NonFiniteLossError(IAABenchError, RuntimeError):
    """The loss became NaN or infinite; nothing from that step was applied."""


class MissingInputError(IAABenchError, FileNotFoundError):
    """A file or folder the user named (or that a run needs) does not exist."""


class OutputExistsError(IAABenchError, FileExistsError):
    """An output folder or file is in the way and replacing it was not asked for."""


class FileAccessError(IAABenchError, OSError):
    """A file cannot be read or written (permissions, full disk, a folder where a file was expected)."""


class RunInProgressError(IAABenchError, RuntimeError):
    """Another live process is writing the same `experiments/<name>` folder."""


class UnreadableImageError(IAABenchError, OSError):
    """An image file cannot be used as it is (e.g. above the pixel limit); `bad_image` applies to it."""
