"""The one exit path of every script: expected errors print one `error:` line and exit 2.

`IAABenchError` (and its subclasses) are mistakes a user can fix, so they get a message,
not a traceback; any other exception is a bug and keeps its traceback.
"""
import sys

from iaa_bench.utils.errors import IAABenchError


def run(pipeline, argv=None) -> int:
    try:
        pipeline(argv)
    except IAABenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
