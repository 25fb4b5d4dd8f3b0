"""Registers every iaa_bench component in pyiqa's registries (idempotent).

Called on `import iaa_bench` and by pyiqa's entry-point groups (`pyiqa.archs`, ...),
which pyiqa loads the first time a name is looked up. Architectures are discovered as
`*_arch.py` files in `archs/`, datasets as `*_dataset.py` files in `datasets/`, the
convention pyiqa itself follows.
"""
import importlib
import pkgutil

_CORE_MODULES = ("iaa_bench.models", "iaa_bench.losses", "iaa_bench.metrics")
_done = False


def _component_modules(package: str, suffix: str):
    pkg = importlib.import_module(package)
    return sorted(f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if m.name.endswith(suffix))


def register_all():
    global _done
    if _done:
        return
    _done = True
    import iaa_bench  # noqa: F401  (maps archs/ and datasets/ when called from an entry point)

    modules = [*_CORE_MODULES, *_component_modules("iaa_bench.archs", "_arch"),
               *_component_modules("iaa_bench.datasets", "_dataset")]
    for name in modules:
        importlib.import_module(name)
