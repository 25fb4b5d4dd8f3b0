"""Command-line wrapper: expected failures print one clear line, not a traceback."""
import sys

from iaa_bench.checkpoint import CheckpointError
from iaa_bench.loaders import BadImageError
from iaa_bench.models import NonFiniteLossError
from iaa_bench.offline import WeightsUnavailableError
from iaa_bench.options import OptionError

EXPECTED_ERRORS = (OptionError, WeightsUnavailableError, CheckpointError, NonFiniteLossError, BadImageError,
                   FileNotFoundError)


def run(pipeline, argv=None) -> int:
    try:
        pipeline(argv)
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
