"""The training loop (what `iaa_bench/train.py` runs).

A drop-in for `pyiqa.train.train_pipeline` that keeps pyiqa's option schema and its
`experiments/<name>/` + `tb_logger/<name>` layout, and fixes what pyiqa gets wrong for
long runs (see README "pyiqa defects fixed"):
- resume works on CPU and restores network weights, optimizers, schedulers, grad scaler,
  counters, best metrics and RNG states, continuing mid-epoch at the exact batch;
- `--auto_resume` looks under the run's own output root, newest *good* state first;
- the LR scheduler unit is explicit: `train.scheduler.unit: iter` steps it once per
  iteration (iaa_bench's default; milestones, periods and warmup_iter in iterations),
  `epoch` once per epoch as pyiqa's trainer does (the default for pyiqa's model types);
- DDP works on CPU (gloo) as on CUDA (nccl); only rank 0 writes files;
- pyiqa's `DistIQAModel` / `GeneralIQAModel` option files run on `IAAModel`, which keeps
  their contract with these fixes.
"""
import datetime
import logging
import os
import signal
import sys
import time
from os import path as osp

from tqdm import tqdm

from iaa_bench.config.options import parse_options
from iaa_bench.data.loaders import create_dataloaders
from iaa_bench.data.retrieval import attach_retriever
from iaa_bench.evaluation.evaluate import evaluate_best_on_test
from iaa_bench.models import checkpoint as ckpt
from iaa_bench.models.iaa_model import build_iaa_model
from iaa_bench.training.run_folder import (
    RESOLVED_OPTIONS,
    RunLock,
    SkippedImages,
    archive_if_exists,
    check_resume_options,
    find_resume_state,
    setup_run_logging,
    use_progress_bar,
    write_resolved_options,
)
from iaa_bench.training.train_log import SAMPLES_PER_S
from iaa_bench.utils.atomic import atomic_write_json
from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import (
    LOGGER_NAME,
    AvgTimer,
    MessageLogger,
    get_env_info,
)

log = logging.getLogger(LOGGER_NAME)


class StopRequest:
    """SIGINT/SIGTERM ask the loop to save a training state and exit cleanly."""

    def __init__(self):
        self.signum = None

    def install(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signum = signum


def message_logger(name: str, print_freq: int, start_iter: int, total_iters: int) -> MessageLogger:
    """pyiqa's (BasicSR's) training-line logger, its eta made right; TensorBoard is written by the loop.

    Its eta is (elapsed / (iter - start_iter + 1)) * (total_iter - iter - 1): one iteration short at both
    ends (negative on the last line). Counting from `start_iter + 1` to `total_iters + 1` makes it the mean
    time per iteration of this process times the iterations left.
    """
    return MessageLogger({"name": name, "logger": {"print_freq": print_freq, "use_tb_logger": False},
                          "train": {"total_iter": total_iters + 1}}, start_iter + 1)


def train_pipeline(argv=None):
    """Train from an option file; returns the last validation metrics (rank 0) or {}."""
    from iaa_bench.config.schema import validate_options

    opt, args = parse_options(is_train=True, argv=argv, validate=validate_options)
    rank = opt["rank"]
    # everything that can be answered from the options and the data is answered before any folder is touched
    train_loader, val_loaders = create_dataloaders(opt)
    sampler = train_loader.sampler  # kept when the feature cache swaps the loader
    iters_per_epoch = len(sampler) // train_loader.batch_size
    if iters_per_epoch == 0:
        train_opt = opt["datasets"]["train"]  # pyiqa's AVADataset moves val_num (default 2000) images into val
        val_num = train_opt.get("val_num", 2000 if train_opt.get("type") == "AVADataset" else None)
        hint = f" (datasets.train.val_num: {val_num} moves that many training images into val)" if val_num else ""
        raise OptionError(f"{args.opt}: option `datasets.train.batch_size_per_gpu` ({train_loader.batch_size}) is "
                          f"larger than the {len(sampler)} training samples per process{hint}")
    lock = RunLock(opt["path"]["experiments_root"]).acquire() if rank == 0 else None
    try:
        return _train(opt, args, train_loader, val_loaders, sampler, iters_per_epoch)
    finally:
        if lock is not None:
            lock.release()


def _train(opt, args, train_loader, val_loaders, sampler, iters_per_epoch):
    """The run itself, under the run's lock: resume check, folders, model, loop, final test."""
    rank = opt["rank"]
    resume_path, resume_state = find_resume_state(opt)
    if resume_state is not None:
        check_resume_options(args, resume_path, args.force_resume)
    if resume_state is None and rank == 0:
        archive_if_exists(opt["path"]["experiments_root"])
        if opt["logger"].get("use_tb_logger", True):
            archive_if_exists(opt["path"]["tb_logger"], into=osp.join(opt["root_path"], "tb_logger_archived"))
    if rank == 0:
        for key in ("experiments_root", "models", "training_states"):
            os.makedirs(opt["path"][key], exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    setup_run_logging(osp.join(opt["path"]["log"], f"train_{opt['name']}_{stamp}.log"), rank)
    log.info(get_env_info())
    opt["show_progress"] = use_progress_bar(opt)

    tb_logger = None
    if rank == 0 and opt["logger"].get("use_tb_logger", True):
        from torch.utils.tensorboard import SummaryWriter

        tb_logger = SummaryWriter(log_dir=opt["path"]["tb_logger"])

    train_opt = opt["train"]
    if train_opt.get("total_epoch") is not None:
        train_opt["total_iter"] = int(train_opt["total_epoch"]) * iters_per_epoch
    total_iters = int(train_opt["total_iter"])

    model = build_iaa_model(opt)
    train_split = train_loader.dataset  # the feature cache swaps the loader's dataset
    if (opt.get("feature_cache") or {}).get("enabled"):
        from iaa_bench.data.feature_cache import apply_feature_cache

        train_loader, val_loaders = apply_feature_cache(opt, model, train_loader, val_loaders)
    attach_retriever(opt, model, train_split)
    start_iter = 0
    if resume_state is not None:
        model.resume_training(resume_state)
        start_iter = resume_state["iter"]
        ckpt.set_rng_state(resume_state["rng"])
        log.info(f"Resumed from {resume_path}: epoch {resume_state['epoch']}, iter {start_iter}")
    if rank == 0:  # once the state has loaded, so a failed resume leaves the run's own option files as they were
        with open(osp.join(opt["path"]["experiments_root"], osp.basename(args.opt)), "w", encoding="utf-8") as f:
            f.write(f"# {' '.join(sys.argv)}\n")
            f.write(open(args.opt, encoding="utf-8").read())
        write_resolved_options(args, osp.join(opt["path"]["experiments_root"], RESOLVED_OPTIONS))
    skipped_images = SkippedImages(opt)

    log_cfg = opt["logger"]
    print_freq = int(log_cfg.get("print_freq", 100))
    ckpt_freq = int(float(log_cfg.get("save_checkpoint_freq", 5e9)))
    latest_freq = int(float(log_cfg.get("save_latest_freq", 1e3)))
    keep_states = int(log_cfg.get("keep_states", 3))
    val_freq = int(float((opt.get("val") or {}).get("val_freq", 5e9)))
    warmup = int(train_opt.get("warmup_iter", -1))
    batch_size = train_loader.batch_size * opt["world_size"]

    per_epoch = getattr(model, "scheduler_unit", "iter") == "epoch"
    stop = StopRequest()
    stop.install()
    bar = tqdm(total=total_iters, initial=start_iter, desc=opt["name"], unit="it", disable=not opt["show_progress"])
    log.info(f"Training {opt['name']}: {len(train_loader.dataset)} images, {iters_per_epoch} iters/epoch, "
             f"{total_iters} iters, batch {batch_size}; start at iter {start_iter}")
    current_iter = start_iter
    epoch = current_iter // iters_per_epoch
    t_start, it_start = time.time(), current_iter
    msg_logger = message_logger(opt["name"], print_freq, start_iter, total_iters)
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    metrics, saved_iter = {}, None
    while current_iter < total_iters and stop.signum is None:
        epoch = current_iter // iters_per_epoch
        sampler.set_epoch(epoch, skip=(current_iter % iters_per_epoch) * train_loader.batch_size)
        if hasattr(train_loader.dataset, "set_epoch"):  # per-epoch draws, e.g. the kept comments
            train_loader.dataset.set_epoch(epoch)
        for batch in train_loader:
            data_timer.record()
            if "skipped_images" in batch:
                skipped_images.record(batch.pop("skipped_images"))
                if "mos_label" not in batch:
                    continue  # every image of this batch was unreadable
            current_iter += 1
            if not per_epoch:
                model.update_learning_rate(current_iter, warmup_iter=warmup)
            model.feed_data(batch)
            model.optimize_parameters(current_iter)
            if per_epoch and current_iter % iters_per_epoch == 0:
                model.update_learning_rate(epoch + 2, warmup_iter=warmup)  # pyiqa's call at the end of an epoch
            iter_timer.record()
            bar.update(1)
            if current_iter % print_freq == 0:
                rate = (current_iter - it_start) * batch_size / max(time.time() - t_start, 1e-9)
                losses = model.get_current_log()
                msg_logger({"epoch": epoch, "iter": current_iter, "lrs": model.get_current_learning_rate(),
                            "time": iter_timer.get_avg_time(), "data_time": data_timer.get_avg_time(),
                            **losses, SAMPLES_PER_S: rate})
                if tb_logger is not None:
                    for k, v in losses.items():
                        tb_logger.add_scalar(f"losses/{k}", v, current_iter)
                    tb_logger.add_scalar("train/samples_per_s", rate, current_iter)
            if current_iter % ckpt_freq == 0 or current_iter % latest_freq == 0:
                model.save(epoch, current_iter, keep_states, snapshot=current_iter % ckpt_freq == 0)
                saved_iter = current_iter
            if val_loaders and current_iter % val_freq == 0:
                for loader in val_loaders:
                    metrics = model.validation(loader, current_iter, tb_logger)
            if current_iter >= total_iters or stop.signum is not None:
                break
            data_timer.start()
            iter_timer.start()
    bar.close()
    # samples/s of this process's training loop (validation and checkpoints included, as the log's rate)
    train_rate = (current_iter - it_start) * batch_size / max(time.time() - t_start, 1e-9) if current_iter > it_start \
        else None
    if saved_iter != current_iter:
        model.save(epoch, current_iter, keep_states)
    if stop.signum is not None:
        log.warning(f"Stopped by signal {stop.signum} at iter {current_iter}; state saved, resume with --auto_resume")
        raise SystemExit(128 + stop.signum)
    for loader in val_loaders:
        if current_iter % val_freq != 0 or not metrics:
            metrics = model.validation(loader, current_iter, tb_logger)
    elapsed = datetime.timedelta(seconds=int(time.time() - t_start))
    if tb_logger is not None:
        tb_logger.close()
    test_metrics = evaluate_best_on_test(opt, model)
    if rank == 0:
        log.info(f"End of training ({elapsed}).")
        print(f"FINAL {opt['name']} iter={current_iter} val: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
              flush=True)
        for phase, values in test_metrics.items():
            metrics_only = {k: v for k, v in values.items() if k not in ("images", "unreadable_images")}
            print(f"FINAL {opt['name']} {phase} (best val checkpoint): "
                  + " ".join(f"{k}={v:.4f}" for k, v in metrics_only.items())
                  + f" ({values['images']} images, {len(values['unreadable_images'])} unreadable)", flush=True)
        atomic_write_json(osp.join(opt["path"]["experiments_root"], "final_metrics.json"),
                          {"iter": current_iter, "val": metrics, "best": model.best_metric_results, "test": test_metrics,
                           "train_samples_per_s": train_rate})
    return metrics if rank == 0 else {}
