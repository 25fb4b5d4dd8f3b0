"""Option files: pyiqa's YAML schema and command line, parsed safely.

Same flags as pyiqa (`-opt`, `--launcher`, `--auto_resume`, `--debug`, `--force_yml`),
plus `--root` for the output root (default: the option `path.root`, else the working
directory; never site-packages). `--force_yml a:b=value` parses `value` as YAML instead
of pyiqa's `exec`, and names the key path when it does not exist.
"""
import argparse
import logging
import os
import random
import re
import subprocess
from os import path as osp

import numpy as np
import torch
import yaml

from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)


def build_arg_parser(is_train: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=("Train" if is_train else "Evaluate") + " a model from a pyiqa-style option file."
    )
    parser.add_argument("-opt", required=True, help="Path to the option YAML file.")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="none: one process; pytorch: torchrun (DistributedDataParallel).")
    parser.add_argument("--auto_resume", action="store_true", help="Resume from the newest good training state.")
    if is_train:
        parser.add_argument("--force_resume", action="store_true",
                            help="Resume even though the network / optimiser / scheduler / datasets options changed.")
    parser.add_argument("--debug", action="store_true", help="Prefix the run name with debug_ (pyiqa convention).")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--force_yml", nargs="+", default=None, metavar="KEY:SUB=VALUE",
                        help="Override options, e.g. train:total_iter=100 network:depth=2.")
    parser.add_argument("--root", default=None, help="Output root for experiments/, tb_logger/, results/.")
    if not is_train:
        parser.add_argument("--no-comments", action="store_true",
                            help="Withhold every image's comments (the score a user with only the photo gets).")
    return parser


class OptionLoader(yaml.SafeLoader):
    """yaml.SafeLoader that reads `1e-4` as a float (YAML 1.2 and Python do; YAML 1.1 reads a string)."""


OptionLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                   re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"),
                                   list("-+0123456789."))


def parse_yaml(text, where: str):
    """YAML text (or an open file) -> Python; a syntax error names `where` and the line."""
    try:
        return yaml.load(text, Loader=OptionLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark and osp.isfile(where) else where
        raise OptionError(f"{at}: invalid YAML: {getattr(err, 'problem', None) or err}") from None


def load_yaml(path: str) -> dict:
    if not osp.isfile(path):
        raise OptionError(f"Option file not found: {path}")
    with open(path, encoding="utf-8") as f:
        opt = parse_yaml(f, path)
    if not isinstance(opt, dict):
        raise OptionError(f"{path}: an option file must be a YAML mapping, got {type(opt).__name__}")
    return opt


def apply_overrides(opt: dict, entries) -> None:
    """Apply `key:sub=value` overrides; the value is parsed as YAML (`1e-4`, `[1, 2]`, `~`) like the file."""
    for entry in entries or []:
        if "=" not in entry:
            raise OptionError(f"--force_yml {entry!r}: expected KEY:SUB=VALUE")
        keys, value = (s.strip() for s in entry.split("=", 1))
        *parents, leaf = keys.split(":")
        node = opt
        for depth, key in enumerate(parents):
            if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
                raise OptionError(f"--force_yml {entry!r}: no option section `{'.'.join(parents[:depth + 1])}`")
            node = node[key]
        node[leaf] = parse_yaml(value, f"--force_yml {entry!r}")


def init_distributed(launcher: str, use_cuda: bool = True, dist_params: dict = None) -> tuple[int, int]:
    """Start torch.distributed: `pytorch` = torchrun's variables, `slurm` = srun's, set as pyiqa does.

    dist_params: `backend` (default nccl; CPU runs always use gloo, the one that works there)
    and, for slurm, `port` (else $MASTER_PORT, else 29500), pyiqa's `dist_params` section.
    """
    if launcher == "none":
        return 0, 1
    dist_params = dist_params or {}
    use_cuda = use_cuda and torch.cuda.is_available()
    if launcher == "slurm":
        _slurm_environment(dist_params.get("port"))
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=dist_params.get("backend", "nccl") if use_cuda else "gloo")
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _slurm_environment(port) -> None:
    """torch.distributed's variables from srun's (pyiqa.utils.dist_util._init_dist_slurm)."""
    try:
        proc_id, ntasks = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
        node_list = os.environ["SLURM_NODELIST"]
    except KeyError as err:
        raise OptionError(f"--launcher slurm: ${err.args[0]} is not set (start the job with srun)") from None
    first_node = subprocess.run(["scontrol", "show", "hostnames", node_list], capture_output=True, text=True)
    if first_node.returncode != 0 or not first_node.stdout.strip():
        raise OptionError(f"--launcher slurm: `scontrol show hostnames {node_list}` failed: {first_node.stderr.strip()}")
    os.environ["MASTER_ADDR"] = first_node.stdout.split()[0]
    if port is not None:
        os.environ["MASTER_PORT"] = str(port)
    os.environ.setdefault("MASTER_PORT", "29500")  # torch.distributed's default port
    os.environ["WORLD_SIZE"], os.environ["RANK"] = str(ntasks), str(proc_id)
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", str(proc_id % max(torch.cuda.device_count(), 1)))


def set_random_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def resolve_device(opt: dict) -> torch.device:
    """CUDA when `num_gpu` asks for it and a GPU exists; otherwise CPU (a GPU request warns)."""
    num_gpu = opt.get("num_gpu", 0)
    if num_gpu == "auto":
        num_gpu = torch.cuda.device_count()
    if num_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if num_gpu:
        log.warning(f"num_gpu: {num_gpu} asks for a GPU but none is available: running on the CPU")
    return torch.device("cpu")


def parse_options(is_train: bool, argv=None, validate=None):
    """Parse the command line and option file into pyiqa's `opt` dict (plus `args`)."""
    args = build_arg_parser(is_train).parse_args(argv)
    opt = load_options(args.opt, is_train, overrides=args.force_yml, root=args.root, validate=validate,
                       launcher=args.launcher, auto_resume=args.auto_resume, debug=args.debug)
    return opt, args


def load_options(opt_path, is_train, overrides=None, root=None, validate=None, launcher="none",
                 auto_resume=False, debug=False) -> dict:
    """Load, override, check and complete an option file (seeds set; torch.distributed started if asked)."""
    opt = load_yaml(opt_path)
    apply_overrides(opt, overrides)
    if validate is not None:
        validate(opt, is_train=is_train, source=opt_path)
    opt["opt_path"] = osp.abspath(opt_path)
    opt["is_train"] = is_train
    opt["auto_resume"] = auto_resume
    opt["dist"] = launcher != "none"
    opt["rank"], opt["world_size"] = init_distributed(launcher, use_cuda=opt.get("num_gpu", 0) not in (0, None),
                                                      dist_params=opt.get("dist_params"))
    if debug and not opt["name"].startswith("debug"):
        opt["name"] = "debug_" + opt["name"]
    seed = opt.get("manual_seed")
    if seed is None:
        seed = opt["manual_seed"] = random.randint(1, 10000)
    set_random_seed(seed + opt["rank"])

    opt.setdefault("path", {})
    opt.setdefault("logger", {})
    for phase, dataset_opt in opt.get("datasets", {}).items():
        dataset_opt["phase"] = phase.split("_")[0]
    for key, val in list(opt["path"].items()):
        if isinstance(val, str) and ("resume_state" in key or "pretrain_network" in key):
            opt["path"][key] = osp.expanduser(val)
    make_paths(opt, root or opt["path"].get("root") or os.getcwd())
    return opt


def make_paths(opt: dict, root: str) -> None:
    root = osp.abspath(osp.expanduser(root))
    opt["root_path"] = root
    paths = opt["path"]
    if opt["is_train"]:
        exp = osp.join(root, "experiments", opt["name"])
        paths.update(experiments_root=exp, models=osp.join(exp, "models"),
                     training_states=osp.join(exp, "training_states"), log=exp,
                     visualization=osp.join(exp, "visualization"))
        paths["tb_logger"] = osp.join(root, "tb_logger", opt["name"])
        if "debug" in opt["name"]:  # pyiqa's debug conventions: 8 iterations, no TensorBoard
            if "val" in opt:
                opt["val"]["val_freq"] = 7
            opt["logger"].update(print_freq=1, save_checkpoint_freq=7, use_tb_logger=False)
            if isinstance(opt.get("train"), dict):
                opt["train"].update(total_iter=min(int(opt["train"].get("total_iter") or 8), 8), total_epoch=None)
    else:
        results = osp.join(root, "results", opt["name"])
        paths.update(results_root=results, log=results, visualization=osp.join(results, "visualization"))
