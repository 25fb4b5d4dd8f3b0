"""A user's own architecture, outside the repository, trains and joins the leaderboard via `plugins:`."""
import csv
import textwrap

import yaml
from conftest import REPO, run_script, tiny_options, write_options, write_tiny_ava

USER_ARCH = textwrap.dedent('''
    """A user's aesthetics net: registered with pyiqa's own decorator, nothing imported from iaa_bench."""
    import torch
    from torch import nn
    from pyiqa.utils.registry import ARCH_REGISTRY


    @ARCH_REGISTRY.register()
    class MyColourStatsNet(nn.Module):
        outputs_dist = True  # iaa_bench's architecture contract: a 10-bin distribution on request

        def __init__(self, hidden: int = 16):
            super().__init__()
            self.head = nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 10))

        def forward(self, x, return_mos=True, return_dist=False):
            stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
            dist = self.head(stats).softmax(dim=-1)
            mos = (dist * torch.arange(1, 11, device=x.device)).sum(dim=-1, keepdim=True)
            out = ([mos] if return_mos else []) + ([dist] if return_dist else [])
            return out if len(out) > 1 else out[0]
''')


def test_user_arch_trains_and_is_benchmarked(tmp_path):
    assert REPO not in tmp_path.resolve().parents  # run as a user would, from their own folder
    (tmp_path / "my_arch.py").write_text(USER_ARCH)
    data = write_tiny_ava(tmp_path / "ava", n=30)
    opt = tiny_options(data, name="my_colour_net", network={"type": "MyColourStatsNet", "hidden": 8},
                       total_iter=6, plugins=["my_arch.py"])  # relative to the option file's folder
    opt["datasets"]["test"] = {**opt["datasets"]["val"], "name": "tiny_test"}
    write_options(tmp_path / "my_colour_net.yml", opt)

    train = run_script("train.py", "-opt", "my_colour_net.yml", cwd=tmp_path, timeout=180)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-4000:]
    assert (tmp_path / "experiments" / "my_colour_net" / "models" / "net_best.pth").is_file()

    bench = {"name": "mine", "models": [{"name": "my colour net", "opt": "my_colour_net.yml", "modality": "image"}]}
    (tmp_path / "bench.yml").write_text(yaml.safe_dump(bench))
    result = run_script("benchmark.py", "-opt", "bench.yml", "--no-progress", cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    out = tmp_path / "results" / "mine"
    with open(out / "leaderboard.csv", newline="") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"my colour net", "human split-half ceiling"}
    mine = rows["my colour net"]
    assert int(mine["trainable_params"]) == 6 * 8 + 8 + 8 * 10 + 10  # the user's net, counted exactly
    assert -1 <= float(mine["srcc"]) <= 1 and float(mine["images_per_s"]) > 0
    assert "| my colour net | image |" in (out / "leaderboard.md").read_text()
