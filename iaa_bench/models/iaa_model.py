"""The training model: pyiqa's `DistIQAModel` contract, multimodal and fixed.

`IAAModel` (registered in pyiqa's MODEL_REGISTRY) feeds a batch to any registered
architecture as its declarations say (the contract in `iaa_bench.models.contract`):
every arch gets `net(img, ...)`, archs that read text also `text_ids` / `text_mask`, and
cached frozen features (`image_feats`, `text_feats`) when the batch carries them. Archs
that output a 10-bin distribution train with a distribution loss (EMD) and are validated
on distributions; scalar archs train on the mean score.

What it fixes in pyiqa's models (kept here, in one place): CPU and gloo DDP (pyiqa
passes CUDA device ids), `pretrain_network_g`/`strict_load_g` honoured, only trainable
parameters optimised and checkpointed (frozen encoders are neither), network weights
included in training states, atomic checkpoint writes, metrics gathered across ranks,
no host sync per step (losses are logged at `print_freq`), and optional AMP.
"""
import logging
import math
from collections import OrderedDict
from contextlib import nullcontext
from os import path as osp

import numpy as np
import torch
from tqdm import tqdm

from iaa_bench.config.options import resolve_device
from iaa_bench.evaluation.metrics import DEFAULT_VAL_METRICS, compute_metrics
from iaa_bench.models import checkpoint as ckpt
from iaa_bench.models import contract
from iaa_bench.utils.errors import NonFiniteLossError, OptionError
from iaa_bench.utils.offline import weights_required
from iaa_bench.utils.pyiqa_adapter import (
    LOGGER_NAME,
    MODEL_REGISTRY,
    BaseModel,
    build_loss,
    build_model,
    build_network,
    log_validation_metric_values,
)

log = logging.getLogger(LOGGER_NAME)

TEXT_KEYS = ("text_ids", "text_mask")
FEATURE_KEYS = ("image_feats", "text_feats")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DISTRIBUTION_LOSSES = ("ScoreDistEMDLoss", "EMDLoss")  # losses between score distributions


# pyiqa 0.1.16 archs that load pre-trained weights whatever their options say (timm's `pretrained=True`
# or `clip.load` hard-coded in pyiqa/archs/{nima,topiq,laion_aes}_arch.py), and what to do instead.
# `{hub}` is torch.hub's cache folder, where those loaders look before downloading.
OFFLINE_ALTERNATIVES = {
    "NIMA": "Use network.type: NIMABaseline with network.backbone_weights (a local file, or "
            "offline-efficientnet-lite0): pyiqa's NIMA downloads its backbone even with pretrained: false.",
    "CFANet": "pyiqa's CFANet (TOPIQ) loads the weights of a Swin or CLIP `network.semantic_model_name` whatever "
              "`backbone_pretrain` says: put the file named in the URL into {hub}/checkpoints (Swin) or "
              "{hub}/clip (CLIP), or use a timm CNN (e.g. semantic_model_name: resnet50) with "
              "network.backbone_pretrain: false.",
    "LAIONAes": "pyiqa's LAIONAes always loads OpenAI CLIP ViT-L/14 (clip.load): put ViT-L-14.pt into {hub}/clip; "
                "with `pretrained: true` its aesthetic head too, into {hub}/pyiqa (or give "
                "network.pretrained_model_path).",
}


def build_net(network_opt: dict) -> torch.nn.Module:
    """Build a registered architecture; a needed download fails fast, naming the option or the file to provide."""
    arch = network_opt.get("type")
    advice = OFFLINE_ALTERNATIVES.get(arch)
    with weights_required(f"network.* (the local-weights option of {arch})", f"the pre-trained weights of {arch}",
                          advice=advice and advice.format(hub=torch.hub.get_dir())):
        return build_network(network_opt)


def param_groups(named, weight_decay: float, no_decay=(), **group) -> list:
    """timm's split: no weight decay on biases, norms and other 1-D parameters, nor on `no_decay` names.

    named: (name, parameter) pairs; group: further settings of both groups (e.g. lr). Empty groups are left out.
    """
    decay = [p for k, p in named if p.ndim > 1 and not k.endswith(".bias") and k not in no_decay]
    rest = [p for k, p in named if p.ndim <= 1 or k.endswith(".bias") or k in no_decay]
    return [{"params": params, "weight_decay": wd, **group}
            for params, wd in ((decay, weight_decay), (rest, 0.0)) if params]


# pyiqa model types whose contract IAAModel keeps (with the fixes above).
FIXED_PYIQA_MODEL_TYPES = ("DistIQAModel", "GeneralIQAModel")


def build_iaa_model(opt):
    """The registered model of `opt` (pyiqa's DistIQAModel / GeneralIQAModel run on IAAModel)."""
    if opt.get("model_type") in FIXED_PYIQA_MODEL_TYPES:
        log.info(f"model_type {opt['model_type']} runs on IAAModel (same contract, iaa_bench's fixes)")
        scheduler = (opt.get("train") or {}).get("scheduler")
        if scheduler and "unit" not in scheduler:
            scheduler["unit"] = "epoch"  # pyiqa's own trainer steps its schedulers once per epoch
        opt = {**opt, "model_type": "IAAModel"}
    return build_model(opt)


@MODEL_REGISTRY.register()
class IAAModel(BaseModel):
    """Train / validate / checkpoint one aesthetics network (see module docstring)."""

    def __init__(self, opt):
        self.opt = opt
        self.is_train = opt["is_train"]
        self.device = resolve_device(opt)
        self.schedulers, self.optimizers = [], []
        self.log_dict = OrderedDict()
        self.best_metric_results = {}
        self.key_metric = (opt.get("val") or {}).get("key_metric")

        net = build_net(opt["network"])
        self.uses_text = contract.uses_text(net)
        self.returns_dist = contract.outputs_dist(net)
        self.retriever = None  # lends training images' comments (iaa_bench.data.retrieval.attach_retriever)
        self._load_pretrained(net)
        self.net = self._to_device(net)
        if self.is_train and (opt.get("train") or {}).get("compile"):
            # in place, so state-dict keys are unchanged; dynamic: cached text lengths vary per batch
            ckpt.bare(self.net).compile(dynamic=True)

        amp = (opt.get("train") or {}).get("amp", "none") if self.is_train else (opt.get("val") or {}).get("amp", "none")
        self.amp_dtype = AMP_DTYPES.get(amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16 and self.device.type == "cuda")
        if self.is_train:
            self.init_training_settings()

    # ------------------------------------------------------------------ setup
    def _load_pretrained(self, net):
        paths = self.opt.get("path", {})
        load_path = paths.get("pretrain_network") or paths.get("pretrain_network_g")
        if load_path:
            strict = paths.get("strict_load", paths.get("strict_load_g", True))
            param_key = paths.get("param_key", paths.get("param_key_g", "params"))
            ckpt.load_network_checkpoint(net, load_path, strict=strict, param_key=param_key)
            log.info(f"Loaded network weights from {load_path} (strict={strict})")

    def _to_device(self, net):
        net = net.to(self.device)
        if self.opt.get("dist"):
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=device_ids, find_unused_parameters=self.opt.get("find_unused_parameters", False))
        return net

    def init_training_settings(self):
        self.net.train()
        train_opt = self.opt["train"]
        self.nonfinite_policy = train_opt.get("nonfinite_loss", "stop")
        if self.nonfinite_policy == "skip" and self.opt.get("dist"):
            # one rank skipping its backward would leave the others waiting in DDP's all-reduce
            raise ValueError("train.nonfinite_loss: skip works in single-process runs only; use stop under DDP")
        self._loss_sum = torch.zeros((), device=self.device)  # summed on the device, read at print_freq
        self._loss_count = 0
        if not train_opt.get("mos_loss_opt"):
            raise ValueError("train.mos_loss_opt is required (e.g. {type: ScoreDistEMDLoss, r: 2})")
        if train_opt["mos_loss_opt"]["type"] in DISTRIBUTION_LOSSES and not self.returns_dist:
            raise OptionError(f"train.mos_loss_opt.type {train_opt['mos_loss_opt']['type']} compares score "
                              f"distributions, but network {self.opt['network']['type']} does not declare "
                              "`outputs_dist = True` (see the README's architecture contract)")
        self.cri_mos = build_loss(train_opt["mos_loss_opt"]).to(self.device)
        self.setup_optimizers()
        self.scheduler_unit = "iter"
        if train_opt.get("scheduler"):
            self.setup_schedulers()

    def setup_schedulers(self):
        """pyiqa's schedulers; `unit` is iaa_bench's (iter: the training loop steps them every
        iteration, the default; epoch: once per epoch, as pyiqa's trainer) and no constructor argument."""
        scheduler = self.opt["train"]["scheduler"]
        self.scheduler_unit = scheduler.pop("unit", "iter")
        name = scheduler.get("type")
        super().setup_schedulers()
        log.info(f"LR scheduler {name} steps once per {'iteration' if self.scheduler_unit == 'iter' else 'epoch'} "
                 f"(train.scheduler.unit: {self.scheduler_unit}): its milestones / periods / T_max count "
                 f"{self.scheduler_unit}s")

    def setup_optimizers(self):
        """Only trainable parameters, in timm-style weight-decay groups (`param_groups`).

        `lr_<name>` keys (pyiqa) give parameters whose name contains <name> their own lr; every
        group decays at `weight_decay` unless `weight_decay_<name>` says otherwise (pyiqa's own
        default there is 0, which silently switched decay off for archs trained with lr groups).
        """
        optim_opt = dict(self.opt["train"]["optim"])
        optim_type = optim_opt.pop("type")
        net = ckpt.bare(self.net)
        no_decay = contract.no_weight_decay(net)
        weight_decay = optim_opt.pop("weight_decay", 0.0)
        named = [(k, p) for k, p in net.named_parameters() if p.requires_grad]
        groups = []
        for key in [k for k in optim_opt if k.startswith("lr_")]:
            module_key = key[3:]
            members = [(k, p) for k, p in named if module_key in k]
            named = [(k, p) for k, p in named if module_key not in k]
            groups += param_groups(members, optim_opt.pop(f"weight_decay_{module_key}", weight_decay), no_decay,
                                   lr=optim_opt.pop(key))
        groups += param_groups(named, weight_decay, no_decay)
        self.optimizer = getattr(torch.optim, optim_type)(groups, **optim_opt)
        self.optimizers.append(self.optimizer)
        n_train = sum(p.numel() for g in groups for p in g["params"])
        n_decay = sum(p.numel() for g in groups if g["weight_decay"] for p in g["params"])
        n_total = sum(p.numel() for p in net.parameters())
        log.info(f"Optimising {n_train:,d} of {n_total:,d} parameters ({optim_type}); weight decay on {n_decay:,d} "
                 f"(none on biases, norms, 1-D parameters and the arch's no_weight_decay())")

    # --------------------------------------------------------------- forward
    def feed_data(self, data):
        self.batch = {k: v.to(self.device, non_blocking=True) for k, v in data.items() if torch.is_tensor(v)}
        self.img_paths = data.get("img_path")

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def net_forward(self, net):
        """(mos, dist) from the batch; dist is None for scalar archs."""
        b = self.batch
        kwargs = {k: b[k] for k in FEATURE_KEYS if k in b}  # cached frozen features, when present
        if self.uses_text:
            kwargs.update({k: b[k] for k in TEXT_KEYS if k in b})
            if "text_ids" not in kwargs and "text_feats" not in kwargs:
                # no comments are tokenised as empty text; a batch without text is a dataset without text settings
                raise OptionError(f"network {type(ckpt.bare(net)).__name__} reads comments but the batch has no "
                                  "text_ids: its dataset was built without `text:` settings; it would train and score "
                                  "on images alone")
        if self.retriever is not None:
            kwargs.update(self.retriever.inputs(ckpt.bare(net), b, self.img_paths))
        img = b.get("img")
        with self._autocast():
            if self.returns_dist:
                mos, dist = net(img, return_mos=True, return_dist=True, **kwargs)
                return mos.float(), dist.float()
            return net(img, **kwargs).float(), None

    def _targets(self):
        gt_dist = self.batch.get("mos_dist")
        gt_mos = self.batch["mos_label"].reshape(-1, 1)
        return gt_mos, gt_dist

    def optimize_parameters(self, current_iter):
        self.optimizer.zero_grad(set_to_none=True)
        mos, dist = self.net_forward(self.net)
        gt_mos, gt_dist = self._targets()
        loss = self.cri_mos(dist, gt_dist) if dist is not None else self.cri_mos(mos, gt_mos)
        if self.nonfinite_policy != "ignore" and not torch.isfinite(loss):
            names = ", ".join(osp.basename(p) for p in (self.img_paths or [])[:8])
            if self.nonfinite_policy == "skip":
                log.warning(f"Non-finite loss at iter {current_iter} (images: {names}); batch skipped")
                return
            raise NonFiniteLossError(f"Non-finite loss ({loss.item()}) at iter {current_iter}; batch images: {names}. "
                                     "Nothing was saved from this step (train.nonfinite_loss: skip to skip such batches)")
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._loss_sum += loss.detach()
        self._loss_count += 1

    def get_current_log(self):
        """Mean loss since the previous call (the one host sync, at log intervals)."""
        if self._loss_count:
            mean = self._loss_sum / self._loss_count
            if self.opt.get("dist"):
                torch.distributed.all_reduce(mean)
                mean = mean / self.opt["world_size"]
            self.log_dict = OrderedDict(l_mos=float(mean))
            self._loss_sum.zero_()
            self._loss_count = 0
        return self.log_dict

    def test(self):
        self.net.eval()
        with torch.no_grad():
            self.output_mos, self.output_dist = self.net_forward(self.net)
        self.net.train(self.is_train)

    # ------------------------------------------------------------ validation
    def predict(self, dataloader, desc="Test", show_progress=False):
        """Predictions and targets over a loader, gathered from every rank.

        Returns (pred, gt, img_paths, unreadable): (N, 10) distributions when the arch has
        them and the data has `mos_dist`, otherwise (N,) mean scores; `unreadable` the paths
        skipped by `bad_image: skip` (not in pred).
        """
        preds, gts, paths, unreadable = [], [], [], []
        bar = tqdm(total=len(dataloader), desc=desc, unit="batch", disable=not show_progress, leave=False)
        for data in dataloader:
            unreadable.extend(data.get("skipped_images", []))
            if "mos_label" not in data:  # every image of the batch was unreadable (bad_image: skip)
                continue
            self.feed_data(data)
            self.test()
            gt_mos, gt_dist = self._targets()
            use_dist = self.output_dist is not None and gt_dist is not None
            preds.append((self.output_dist if use_dist else self.output_mos.reshape(-1)).cpu())
            gts.append((gt_dist if use_dist else gt_mos.reshape(-1)).cpu())
            paths.extend(self.img_paths or [])
            bar.update(1)
        bar.close()
        pred, gt = torch.cat(preds).numpy(), torch.cat(gts).numpy()
        if self.opt.get("dist"):
            gathered = [None] * self.opt["world_size"]
            torch.distributed.all_gather_object(gathered, (pred, gt, paths, unreadable))
            pred = np.concatenate([g[0] for g in gathered])
            gt = np.concatenate([g[1] for g in gathered])
            paths = [p for g in gathered for p in g[2]]
            unreadable = [p for g in gathered for p in g[3]]
        if unreadable and self.opt.get("rank", 0) == 0:
            log.warning(f"{desc}: {len(unreadable)} unreadable image(s) left out of the metrics: {', '.join(unreadable)}")
        return pred, gt, paths, unreadable

    def validation(self, dataloader, current_iter, tb_logger=None, save_img=False):
        dataset_name = dataloader.dataset.opt["name"]
        val_opt = self.opt.get("val") or {}
        metric_opts = val_opt.get("metrics") or DEFAULT_VAL_METRICS
        show = bool(val_opt.get("pbar", True)) and self.opt.get("rank", 0) == 0 and self.opt.get("show_progress", False)
        pred, gt, _, unreadable = self.predict(dataloader, desc=f"Val {dataset_name}", show_progress=show)
        self.metric_results = compute_metrics(pred, gt, metric_opts)
        self._record_best(dataset_name, metric_opts, current_iter)
        if self.opt.get("rank", 0) == 0:
            log_validation_metric_values(self, current_iter, dataset_name, tb_logger)  # pyiqa's lines, Best included
            left_out = f", {len(unreadable)} unreadable left out" if unreadable else ""
            log.info(f"{dataset_name} @ iter {current_iter}: metrics on {len(pred)} images{left_out}")
        return self.metric_results

    def _record_best(self, dataset_name, metric_opts, current_iter):
        record = self.best_metric_results.setdefault(dataset_name, {
            name: {"better": o.get("better", "higher"), "val": -math.inf if o.get("better", "higher") == "higher" else math.inf,
                   "iter": -1} for name, o in metric_opts.items()})
        improved = [name for name, v in self.metric_results.items() if not math.isnan(v) and (
            v >= record[name]["val"] if record[name]["better"] == "higher" else v <= record[name]["val"])]
        key = self.key_metric
        if key is not None:
            if key not in self.metric_results:
                raise KeyError(f"val.key_metric `{key}` is not one of val.metrics: {list(self.metric_results)}")
            improved = list(self.metric_results) if key in improved else []
        for name in improved:
            record[name].update(val=self.metric_results[name], iter=current_iter)
        if improved and self.is_train and self.opt.get("rank", 0) == 0:
            self.save_network_file("net_best")

    # ---------------------------------------------------------- checkpoints
    def save_network_file(self, label):
        path = osp.join(self.opt["path"]["models"], f"{label}.pth")
        ckpt.atomic_torch_save(ckpt.network_checkpoint(self.net), path)
        return path

    def training_state(self, epoch, current_iter):
        return {
            "epoch": epoch, "iter": current_iter,
            "network": ckpt.network_checkpoint(self.net),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.scaler.state_dict(),
            "best_metric_results": self.best_metric_results,
            "rng": ckpt.rng_state(),
        }

    def save(self, epoch, current_iter, keep_states=0, snapshot=False):
        """Save `net_latest.pth` and `training_states/<iter>.state` (the newest `keep_states` kept),
        plus a lasting `net_<iter>.pth` when `snapshot` (rank 0 only)."""
        if self.opt.get("rank", 0) != 0:
            return
        if snapshot:
            self.save_network_file(f"net_{current_iter}")
        self.save_network_file("net_latest")
        folder = self.opt["path"]["training_states"]
        ckpt.atomic_torch_save(self.training_state(epoch, current_iter), osp.join(folder, f"{current_iter}{ckpt.STATE_SUFFIX}"))
        ckpt.prune_states(folder, keep_states)

    def resume_training(self, state):
        """Restore network weights (pyiqa restores none), optimizers, schedulers, scaler, best metrics."""
        ckpt.load_network_checkpoint(self.net, state["network"])
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"], strict=True):
            sch.load_state_dict(s)
        self.scaler.load_state_dict(state["scaler"])
        self.best_metric_results = state.get("best_metric_results", {})
