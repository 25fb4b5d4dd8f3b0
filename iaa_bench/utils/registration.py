"""Registers every iaa_bench component in pyiqa's registries (idempotent).

Called on `import iaa_bench` and by pyiqa's entry-point groups (`pyiqa.archs`, ...),
which pyiqa loads the first time a name is looked up. Besides the registries, it adds
iaa_bench's metric names to pyiqa's `DEFAULT_CONFIGS` table (see evaluation/pyiqa_metric.py). Architectures are discovered as
`*_arch.py` files in `archs/`, datasets as `*_dataset.py` files in `datasets/`, the
convention pyiqa itself follows.
"""
import importlib
import pkgutil

_CORE_MODULES = ("iaa_bench.models.iaa_model", "iaa_bench.models.losses", "iaa_bench.evaluation.metrics",
                 "iaa_bench.evaluation.pyiqa_metric")
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
    from iaa_bench.evaluation.pyiqa_metric import register_metrics

    register_metrics()  # trained runs as pyiqa metrics: pyiqa.create_metric('mmlq', pretrained_model_path=...)


def load_plugins(entries, option_file: str = "") -> None:
    """Import user components named in an option file's `plugins:` list.

    Each entry is a `.py` file (relative to the option file's folder, or absolute) or an
    importable module name; importing it runs its `@ARCH_REGISTRY.register()` decorators.
    """
    import os
    import sys
    from importlib.util import module_from_spec, spec_from_file_location

    from iaa_bench.utils.errors import MissingInputError

    base = os.path.dirname(os.path.abspath(option_file)) if option_file else os.getcwd()
    for entry in entries or []:
        if str(entry).endswith(".py"):
            path = entry if os.path.isabs(entry) else os.path.join(base, entry)
            if not os.path.isfile(path):
                raise MissingInputError(f"{option_file}: plugins: file not found: {path}")
            name = f"iaa_bench_plugin_{os.path.splitext(os.path.basename(path))[0]}"
            if name in sys.modules:
                continue
            spec = spec_from_file_location(name, path)
            module = module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(entry)
