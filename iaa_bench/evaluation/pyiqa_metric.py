"""Trained runs as pyiqa metrics: `pyiqa.create_metric('mmlq', pretrained_model_path=RUN)`.

pyiqa 0.1.16 builds a metric by name from its `DEFAULT_CONFIGS` table: `build_network` of the
entry's `metric_opts` updated with the caller's keyword arguments. `import iaa_bench` adds one
entry per name in `METRICS` (a registration like the registries', nothing else is changed);
the entry's arch, `IAABenchMetric`, rebuilds the network from the run's resolved options,
loads the run's weights, and preprocesses images and tokenises comments with the run's own
test-dataset transform and text settings, so a score equals `infer.py`'s for the same file.
A run trained with `network.missing_text: retrieve` scores an image without comments with the
comments of its nearest training images, from the run's `retrieval_index.pt`, as infer.py does;
`last_lenders` names them.
"""
import logging
import sys

import torch
from torch import nn

from iaa_bench.utils.errors import OptionError, WeightsUnavailableError
from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, LOGGER_NAME, register_metric_config

log = logging.getLogger(LOGGER_NAME)

METRICS = {"mmlq": "MMLQ", "nima_baseline": "NIMABaseline"}  # pyiqa metric name -> network.type of the run
SCORE_RANGE = "1, 10"


def register_metrics(**metric_opts) -> None:
    """Add `METRICS` to pyiqa's table; `metric_opts` (e.g. pretrained_model_path) become their defaults."""
    for name, network_type in METRICS.items():
        register_metric_config(name, {"type": "IAABenchMetric", "network_type": network_type, **metric_opts},
                               SCORE_RANGE)


def pyiqa_command(argv=None) -> None:
    """pyiqa's own command line (`pyiqa METRIC -t IMG ...`), which cannot see plugins, with iaa_bench's
    metrics added; `--pretrained_model_path RUN` gives them the run to score with."""
    import argparse

    from iaa_bench.utils.pyiqa_adapter import pyiqa_cmd_main

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--pretrained_model_path", default=None)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.pretrained_model_path:
        register_metrics(pretrained_model_path=args.pretrained_model_path)
    sys.argv = [sys.argv[0], *rest]  # pyiqa's main parses sys.argv
    pyiqa_cmd_main()


@ARCH_REGISTRY.register()
class IAABenchMetric(nn.Module):
    """A trained run's network behind pyiqa's metric interface: `metric(img[, comments=[...]])` -> mean score.

    pretrained_model_path: a run folder `<root>/experiments/<name>` or a checkpoint inside it
        (`models/net_best.pth`); required: an untrained network has no score to give.
    options: the option file, for a checkpoint that is not inside a run folder.
    network_type: what the run must have trained (set by the metric name).

    `last_lenders`: after a call on a retrieving run, per image the training images whose comments
    it read (empty for an image given comments); None before.
    """

    def __init__(self, network_type: str, pretrained_model_path: str = None, options: str = None):
        super().__init__()
        from iaa_bench.data.retrieval import run_retriever
        from iaa_bench.evaluation.evaluate import eval_checkpoint
        from iaa_bench.evaluation.infer import Preprocessor, RunSource, eval_dataset_options, resolve_run
        from iaa_bench.models import checkpoint as ckpt
        from iaa_bench.models import contract
        from iaa_bench.models.iaa_model import build_net

        name = next((k for k, v in METRICS.items() if v == network_type), network_type)
        if not pretrained_model_path:
            raise WeightsUnavailableError(
                f"pyiqa metric '{name}' scores a trained run: pass pretrained_model_path=<root>/experiments/<name> "
                "(or its models/net_best.pth); an untrained network's scores mean nothing")
        source = resolve_run(options) if options else resolve_run(pretrained_model_path)
        if options:
            source = RunSource(source.option_file, source.root, pretrained_model_path)
        rng = ckpt.rng_state()  # seeded as the run was (random-init frozen encoders), then given back
        try:
            opt = source.load()
            if opt["network"]["type"] != network_type:
                raise OptionError(f"pyiqa metric '{name}' needs a {network_type} run; {source.option_file} trained "
                                  f"{opt['network']['type']}")
            # a run folder is scored with its own weights, never its training init (path.pretrain_network_g)
            checkpoint = source.checkpoint if source.name else eval_checkpoint(opt, source.checkpoint)
            if not checkpoint:
                raise WeightsUnavailableError(f"{pretrained_model_path}: the run has no net_best.pth or "
                                              "net_latest.pth yet")
            self.net = build_net(opt["network"])
        finally:
            ckpt.set_rng_state(rng)
        ckpt.load_network_checkpoint(self.net, checkpoint)
        self.net.eval()
        self.uses_text = contract.uses_text(self.net)
        self.prep = Preprocessor(eval_dataset_options(opt))
        self.checkpoint = checkpoint
        self.retriever, self.last_lenders = run_retriever(opt, self.net), None
        retrieves = ", retrieving comments for images without" if self.retriever else ""
        log.info(f"pyiqa metric '{name}': {opt['name']} with the weights of {checkpoint}{retrieves}")

    def forward(self, x: torch.Tensor, comments=None) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1]; comments: one image's list of strings (shared by the batch),
        or one list per image; none = MMLQ's learned "no comment" token, or for a retrieving run the
        comments of the nearest training images (`last_lenders`). Returns (B, 1) mean scores."""
        img = torch.stack([self.prep.tensor_image(one) for one in x]).to(x.device)
        kwargs = {}
        if self.uses_text:
            per_image = self._per_image(comments, len(x))
            tokens = [self.prep.text(list(c)) for c in per_image]
            kwargs = {k: torch.cat([t[k] for t in tokens]).to(x.device) for k in tokens[0]}
            if self.retriever is not None:
                self.last_lenders = [[] for _ in per_image]
            if self.retriever is not None and not all(per_image):
                kwargs.update(self.retriever.inputs(self.net, {"img": img}, None))  # a tensor has no file to hash
                self.last_lenders = [[] if c else names for c, names in zip(per_image, self.retriever.last_lenders)]
                log.info(f"no comments: read the comments of training images {self.last_lenders} (retrieved)")
        elif comments:
            log.warning(f"{type(self.net).__name__} reads images only; comments are ignored")
        return self.net(img, **kwargs).reshape(-1, 1)

    @staticmethod
    def _per_image(comments, batch_size: int) -> list:
        """One list of comments per image of the batch."""
        if isinstance(comments, str):
            comments = [comments]
        per_image = comments if comments and isinstance(comments[0], (list, tuple)) else [comments or []] * batch_size
        if len(per_image) != batch_size:
            raise OptionError(f"comments: {len(per_image)} lists for a batch of {batch_size} images")
        return per_image
