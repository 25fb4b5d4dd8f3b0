"""The one exit path of every script: process policy first, then expected errors print `error:` and exit 2.

`IAABenchError` (and its subclasses) are mistakes a user can fix, so they get a message,
not a traceback; any other exception is a bug and keeps its traceback. Process-wide
policy (hub offline mode, see `iaa_bench.utils.offline`) is set here, by the command
line, never by `import iaa_bench`.
"""
import sys

from iaa_bench.utils.errors import IAABenchError
from iaa_bench.utils.offline import use_offline_policy


def run(pipeline, argv=None) -> int:
    """Run `pipeline(argv)` as a script; returns the exit status (0, or 2 for a user error)."""
    use_offline_policy()
    try:
        pipeline(argv)
    except IAABenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
