"""Offline by construction: nothing downloads unless the user asks for it.

Hugging Face hub clients (used by timm and transformers) retry for about a minute
before giving up when there is no network. iaa_bench turns the hub's offline mode on
before any hub import, so a missing weight fails in seconds; `IAA_BENCH_ALLOW_DOWNLOAD=1`
restores normal downloading on a connected machine. `weights_required` turns the
resulting low-level errors into one message naming the option that takes a local path.
"""
import contextlib
import os

from iaa_bench.utils.errors import WeightsUnavailableError

ALLOW_DOWNLOAD = os.environ.get("IAA_BENCH_ALLOW_DOWNLOAD", "0") == "1"

if not ALLOW_DOWNLOAD:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@contextlib.contextmanager
def weights_required(option: str, what: str):
    """Run a weight-loading block; on a download failure name the option for a local path.

    option: the option path a user sets to a local file or folder (e.g. `network.image_encoder.weights`).
    what: the weights being loaded, for the message.
    """
    try:
        yield
    except WeightsUnavailableError:
        raise
    except Exception as err:  # hub, urllib and torch.hub errors have no common base class
        if not _looks_like_download_failure(err):
            raise
        hint = "" if ALLOW_DOWNLOAD else " (downloads are off; set IAA_BENCH_ALLOW_DOWNLOAD=1 on a connected machine to fetch them)"
        raise WeightsUnavailableError(
            f"Cannot load {what}: not found locally{hint}. Set `{option}` to a local file or folder. "
            f"Cause: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err


def _looks_like_download_failure(err: BaseException) -> bool:
    import urllib.error

    names = {type(e).__name__ for e in _chain(err)}
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "URLError", "ConnectionError",
                "HfHubHTTPError", "RepositoryNotFoundError", "gaierror"}:
        return True
    if any(isinstance(e, (urllib.error.URLError, ConnectionError)) for e in _chain(err)):
        return True
    text = " ".join(str(e) for e in _chain(err)).lower()
    return any(k in text for k in ("offline", "internet connection", "name or service not known",
                                   "couldn't connect", "cannot find the requested files"))


def _chain(err):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__
