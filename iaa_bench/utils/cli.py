"""Command-line wrapper: expected failures print one clear line, not a traceback."""
import sys

from iaa_bench.config.options import OptionError
from iaa_bench.data.loaders import BadImageError
from iaa_bench.models.checkpoint import CheckpointError
from iaa_bench.models.iaa_model import NonFiniteLossError
from iaa_bench.utils.offline import WeightsUnavailableError

EXPECTED_ERRORS = (OptionError, WeightsUnavailableError, CheckpointError, NonFiniteLossError, BadImageError,
                   FileNotFoundError)


def run(pipeline, argv=None) -> int:
    try:
        pipeline(argv)
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
