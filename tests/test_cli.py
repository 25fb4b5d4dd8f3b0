"""The scripts' one exit path, and an import of iaa_bench that changes nothing in its host process."""
import os
import subprocess
import sys

import pytest
from conftest import REPO, run_script

from iaa_bench.utils.cli import run

# Snapshot of what a library import must leave alone: environment, PIL's process-wide flags,
# the hub's offline switch and every logger's level / handlers.
SNAPSHOT = """
import logging, os, sys
from PIL import Image, ImageFile
import huggingface_hub.constants as hub
def snapshot():
    loggers = {n: (l.level, tuple(l.handlers), l.propagate, l.disabled)
               for n, l in logging.Logger.manager.loggerDict.items() if isinstance(l, logging.Logger)}
    root = logging.getLogger()
    return (dict(os.environ), ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS, hub.HF_HUB_OFFLINE,
            root.level, tuple(root.handlers), logging.root.manager.disable, loggers)
def compare(before, after):
    env_b, env_a = before[0], after[0]
    changed = sorted(k for k in set(env_b) | set(env_a) if env_b.get(k) != env_a.get(k))
    old_loggers = {n: v for n, v in after[7].items() if n in before[7] and before[7][n] != v}
    assert not changed, f"environment changed: {changed}"
    assert before[1:7] == after[1:7], (before[1:7], after[1:7])
    assert not old_loggers, old_loggers
    print("UNCHANGED")
"""


def _fresh_interpreter(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                             "IAA_BENCH_ALLOW_DOWNLOAD")}
    return subprocess.run([sys.executable, "-c", SNAPSHOT + code], capture_output=True, text=True, timeout=120,
                          env=env, cwd=REPO)


IMPORTS = {  # how a process comes to import iaa_bench
    "import iaa_bench": "import iaa_bench\nassert 'MMLQ' in pyiqa.utils.registry.ARCH_REGISTRY\n",
    "pyiqa entry point": ("assert 'iaa_bench' not in sys.modules\n"
                          "from pyiqa.utils.registry import ARCH_REGISTRY\nARCH_REGISTRY.get('MMLQ')\n"
                          "assert 'iaa_bench' in sys.modules  # loaded through pyiqa's entry points\n"),
}


@pytest.mark.parametrize("how", list(IMPORTS))
def test_importing_iaa_bench_leaves_the_process_unchanged(how):
    # pyiqa's own imports (torch, cv2, timm, transformers) change the environment themselves: baseline after them.
    out = _fresh_interpreter("import pyiqa, timm, transformers\nbefore = snapshot()\n" + IMPORTS[how]
                             + "compare(before, snapshot())\n")
    assert "UNCHANGED" in out.stdout, out.stderr[-3000:]


def test_the_command_line_entry_turns_the_hub_offline():
    out = _fresh_interpreter("import iaa_bench\nfrom iaa_bench.utils.cli import run\n"
                             "assert not hub.HF_HUB_OFFLINE and 'HF_HUB_OFFLINE' not in os.environ\n"
                             "assert run(lambda argv: None) == 0\n"
                             "print('OFFLINE', hub.HF_HUB_OFFLINE, os.environ['HF_HUB_OFFLINE'])\n")
    assert "OFFLINE True 1" in out.stdout, out.stderr[-3000:]


def test_user_error_is_a_message_and_status_2(capsys):
    def pipeline(argv):
        from iaa_bench.utils.errors import OptionError

        raise OptionError(f"bad option in {argv[0]}")

    assert run(pipeline, ["x.yml"]) == 2
    assert capsys.readouterr().err == "error: bad option in x.yml\n"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError):
        run(lambda argv: {}["missing"])


def test_prepare_ava_user_errors_exit_through_run(tmp_path):
    out = run_script("prepare_ava.py", "--ava-txt", tmp_path / "absent.txt", "--comments", tmp_path / "c.txt",
                     "--images", tmp_path, "--out", tmp_path / "out", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("error: ") and "absent.txt" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


def test_make_demo_data_refusal_exits_through_run(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep").write_text("x")
    out = run_script("make_demo_data.py", "--out", tmp_path / "demo", "--n", "5", cwd=tmp_path)
    assert out.returncode == 2 and "--overwrite" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_bench_speed_option_error_is_a_message_not_a_traceback(tmp_path):
    out = run_script("bench_speed.py", "-opt", tmp_path / "absent.yml", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == f"error: Option file not found: {tmp_path / 'absent.yml'}"
