"""iaa_bench: train and benchmark multi-modal image-aesthetics models inside pyiqa.

Importing this package registers every component (architectures, datasets, models,
losses, metrics) in pyiqa's registries, and the metric names `mmlq` / `nima_baseline` in
pyiqa's `create_metric` table (trained runs as pyiqa metrics). The same registration runs
through pyiqa's entry-point groups after `pip install`, so `pyiqa.archs.build_network({'type': 'MMLQ'})`
works without importing iaa_bench first. Importing changes nothing else in the process
(environment, PIL and logging settings are the command-line entry points' business).
"""
import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

_PKG_DIR = Path(__file__).resolve().parent


def _map_root_component_folders():
    """Expose the repository's `archs/` and `datasets/` as `iaa_bench.archs` / `iaa_bench.datasets`.

    They sit at the repository root (the product's layout) without `__init__.py`, so they can
    never become top-level packages (a top-level `datasets` would shadow Hugging Face
    `datasets`). A regular install copies them inside this package; a source checkout or
    editable install finds them beside it, and this maps them here.
    """
    for sub in ("archs", "datasets"):
        src = _PKG_DIR.parent / sub
        name = f"{__name__}.{sub}"
        if name in sys.modules or (_PKG_DIR / sub).is_dir() or not src.is_dir():
            continue
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(src)]
        sys.modules[name] = importlib.util.module_from_spec(spec)


_map_root_component_folders()

from iaa_bench.utils.registration import register_all  # noqa: E402

register_all()
