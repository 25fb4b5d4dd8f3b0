"""Offline by default: nothing downloads unless the user asks for it.

Hugging Face hub clients (used by timm and transformers) retry for about a minute
before giving up when there is no network. Two places turn the hub's offline mode on,
and neither is `import iaa_bench` (a library import must not change its host process):
- `use_offline_policy()`, called by the command-line exit path (`iaa_bench.utils.cli.run`),
  for the whole process and its children (DataLoader workers, torchrun ranks);
- `weights_required(...)`, around every weight load, for that load only, so library
  callers get the same fast failure without a process-wide change.
`IAA_BENCH_ALLOW_DOWNLOAD=1` restores normal downloading on a connected machine.
Loaders outside the hub (torch.hub's URL cache, used by timm for weights hosted elsewhere and
by pyiqa; OpenAI CLIP's loader) open their URLs with urllib: inside `weights_required` urllib
refuses web URLs before any connection, so "downloads are off" is true for them too.
`weights_required` also turns the resulting low-level errors into one message naming
the option that takes a local path.
"""
import contextlib
import os
import sys

from iaa_bench.utils.errors import WeightsUnavailableError

ALLOW_DOWNLOAD = os.environ.get("IAA_BENCH_ALLOW_DOWNLOAD", "0") == "1"
HUB_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _offline_is_ours_to_set() -> bool:
    """Downloads not allowed and the user left the hub's own variables alone (theirs win)."""
    return not ALLOW_DOWNLOAD and not any(var in os.environ for var in HUB_OFFLINE_VARIABLES)


def use_offline_policy() -> None:
    """Process-wide hub offline mode, inherited by child processes: for command-line entry points only."""
    if not _offline_is_ours_to_set():
        return
    for var in HUB_OFFLINE_VARIABLES:
        os.environ[var] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # the hub reads the variables once, when it is imported
        constants.HF_HUB_OFFLINE = True


@contextlib.contextmanager
def _hub_offline():
    """The hub's offline mode for the enclosed block only (restored afterwards)."""
    if not _offline_is_ours_to_set():
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


class DownloadRefused(ConnectionError):
    """urllib was asked to fetch a web URL while downloads are off; no connection was attempted."""

    def __init__(self, url: str):
        super().__init__(f"downloads are off: {url} was not fetched")
        self.url = url


@contextlib.contextmanager
def _urls_refused():
    """In the block, urllib refuses http(s)/ftp URLs (torch.hub, timm's and pyiqa's URL loaders, CLIP's)."""
    if ALLOW_DOWNLOAD:
        yield
        return
    import urllib.request
    from urllib.parse import urlparse

    original = urllib.request.OpenerDirector.open

    def refuse(opener, fullurl, *args, **kwargs):
        url = getattr(fullurl, "full_url", fullurl)  # a str or a urllib Request
        if urlparse(str(url)).scheme in ("http", "https", "ftp"):
            raise DownloadRefused(str(url))
        return original(opener, fullurl, *args, **kwargs)

    urllib.request.OpenerDirector.open = refuse
    try:
        yield
    finally:
        urllib.request.OpenerDirector.open = original


@contextlib.contextmanager
def weights_required(option: str, what: str, advice: str | None = None):
    """Run a weight-loading block offline; on a download failure name the option for a local path.

    option: the option path a user sets to a local file or folder (e.g. `network.image_encoder.weights`).
    what: the weights being loaded, for the message.
    advice: what to do instead, when more than setting `option` (e.g. an arch that always downloads).
    """
    try:
        with _hub_offline(), _urls_refused():
            yield
    except WeightsUnavailableError:
        raise
    except Exception as err:  # hub, urllib and torch.hub errors have no common base class
        if not _looks_like_download_failure(err):
            raise
        refused = next((e for e in _chain(err) if isinstance(e, DownloadRefused)), None)
        where = f"is not on this machine and would be downloaded from {refused.url}" if refused else "is not found locally"
        hint = "" if ALLOW_DOWNLOAD else (" (downloads are off, so no connection was attempted; set "
                                          "IAA_BENCH_ALLOW_DOWNLOAD=1 on a connected machine to fetch them)")
        raise WeightsUnavailableError(
            f"Cannot load {what}: it {where}{hint}. {advice or f'Set `{option}` to a local file or folder.'} "
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
