"""Sweeps: a base option file with some options varied; every point is trained and scored like a model.

A benchmark file's `sweeps:` entry

    - name: mmib_depth                       # file stem of its plot
      title: "Number of MMIBs (paper Fig. 4)"
      base: options/mmlq_demo.yml
      vary: {network.depth: [1, 2, 4, 6, 8]}

trains the base file once per value (and per benchmark seed). Keys are dotted option
paths that must exist in the base file; a key "a,b" sets several options to the same
value (e.g. both query counts); several keys make a grid (their cross product), such as
the replaceable-layer table `{network.self_attn: [joint, separate], network.ffn: [shared,
separate]}`. A point equal to the base file is the base file's own run (trained once,
shared with a model entry of the same file). Frozen-feature caches are shared by all
points: the encoders do not change.

One varied key with numbers gives a plot of SRCC / PLCC against the value (95 % bootstrap
intervals as error bars); every sweep gets a table in `sweeps.md` and rows in `sweeps.csv`.
"""
import csv
import io
import itertools

import numpy as np
from matplotlib.figure import Figure

from iaa_bench.evaluation import leaderboard

SWEEP_KEYS = {"name", "title", "base", "vary"}


def option_keys(joined: str) -> list:
    return [key.strip() for key in joined.split(",")]


def lookup(opt: dict, dotted: str):
    """The value at a dotted option path; KeyError when absent."""
    node = opt
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def check_sweep(sweep, where: str, base_opt) -> list:
    """Problems of one `sweeps:` entry (base_opt: the loaded base file, or None when it is missing)."""
    if not isinstance(sweep, dict) or not isinstance(sweep.get("name"), str) or not sweep["name"].isidentifier():
        return [f"{where} must be a mapping with a `name` (letters, digits, _)"]
    errors = [f"{where}: unknown option `{k}` (known: {sorted(SWEEP_KEYS)})" for k in sweep if k not in SWEEP_KEYS]
    vary = sweep.get("vary")
    if not isinstance(vary, dict) or not vary:
        return errors + [f"{where}: `vary` must map option keys to lists of values"]
    for joined, values in vary.items():
        if not isinstance(values, list) or not values or len(set(map(repr, values))) != len(values):
            errors.append(f"{where}: vary.{joined} must be a non-empty list of distinct values")
        for key in option_keys(joined):
            if base_opt is not None:
                try:
                    lookup(base_opt, key)
                except KeyError:
                    errors.append(f"{where}: `{key}` is not an option of {sweep.get('base')}")
    return errors


def points(sweep: dict) -> list:
    """Each point as {dotted key: value}, the cross product of `vary` in file order."""
    axes = [[{key: value for key in option_keys(joined)} for value in values] for joined, values in sweep["vary"].items()]
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)]


def point_label(sweep: dict, point: dict) -> str:
    """'depth=2' or 'self_attn=joint, ffn=shared' (joined keys shown once)."""
    return ", ".join(f"{option_keys(joined)[0].split('.')[-1]}={point[option_keys(joined)[0]]}"
                     for joined in sweep["vary"])


def run_suffix(sweep: dict, point: dict, base_opt: dict) -> str:
    """'' when the point is the base file itself, else e.g. '__depth-2' (part of the run name)."""
    changed = [joined for joined in sweep["vary"] if any(lookup(base_opt, k) != point[k] for k in option_keys(joined))]
    return "".join(f"__{option_keys(j)[0].split('.')[-1]}-{point[option_keys(j)[0]]}" for j in changed)


def _png(sweep: dict, point_list: list, rows: list, note: str) -> bytes | None:
    """SRCC / PLCC against the single varied value (numbers only)."""
    if len(sweep["vary"]) != 1:
        return None
    values = [point[option_keys(next(iter(sweep["vary"])))[0]] for point in point_list]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for metric, color, marker in (("srcc", "tab:blue", "o"), ("plcc", "tab:orange", "s")):
        y = np.array([getattr(r, metric) for r in rows])
        low = np.array([getattr(r, f"{metric}_low") for r in rows])
        high = np.array([getattr(r, f"{metric}_high") for r in rows])
        ax.errorbar(values, y, yerr=np.nan_to_num(np.stack([y - low, high - y])), color=color, marker=marker,
                    capsize=3, label=metric.upper())
    ax.set_xticks(values)
    ax.set_xlabel(next(iter(sweep["vary"])))
    ax.set_ylabel("correlation with ground-truth mean score")
    ax.set_title((f"{note}\n" if note else "") + sweep.get("title", sweep["name"]), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    return leaderboard.png_bytes(fig)


def _grid_table(sweep: dict, point_list: list, rows: list) -> list:
    """Two varied keys: first key down, second across, cells SRCC / PLCC."""
    (first, across) = [option_keys(j)[0] for j in sweep["vary"]]
    cols = list(dict.fromkeys(p[across] for p in point_list))
    lines = [f"| {first.split('.')[-1]} \\ {across.split('.')[-1]} | " + " | ".join(map(str, cols)) + " |",
             "|---|" + "---:|" * len(cols)]
    for value in dict.fromkeys(p[first] for p in point_list):
        cells = {p[across]: f"{r.srcc:.4f} / {r.plcc:.4f}" for p, r in zip(point_list, rows) if p[first] == value}
        lines.append(f"| {value} | " + " | ".join(cells.get(c, "–") for c in cols) + " |")
    return lines + ["", "Cells: SRCC / PLCC (mean over seeds)."]


def _table(rows: list) -> list:
    lines = ["| point | seeds | SRCC | SRCC 95 % CI | PLCC | PLCC 95 % CI | SRCC − best (paired 95 % CI) "
             "| params (M) trainable / total | MMACs / sample |", "|---|---:|---:|---|---:|---|---|---|---:|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.seeds} | {leaderboard.mean_std_cell(r.srcc, r.srcc_std)} "
                     f"| {leaderboard.ci_cell(r.srcc_low, r.srcc_high)} | {leaderboard.mean_std_cell(r.plcc, r.plcc_std)} "
                     f"| {leaderboard.ci_cell(r.plcc_low, r.plcc_high)} | {leaderboard.vs_best_cell(r)} "
                     f"| {leaderboard.params_cell(r)} | {leaderboard.fmt(r.macs_per_sample / 1e6, '.2f')} |")
    return lines


def render(results: list, note: str = "") -> dict:
    """{file name: bytes} for [(sweep, its points, their rows)]."""
    lines = [f"**{note}**", ""] if note else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sweep", "point", *leaderboard.ROW_FIELDS])
    files = {}
    for sweep, point_list, rows in results:
        lines += [f"## {sweep.get('title', sweep['name'])}", "", f"Base: `{sweep['base']}`; varied: "
                  + ", ".join(f"`{k}`" for k in sweep["vary"]) + ".", ""]
        lines += _table(rows) + [""]
        if len(sweep["vary"]) == 2:
            lines += _grid_table(sweep, point_list, rows) + [""]
        png = _png(sweep, point_list, rows, note)
        if png is not None:
            files[f"sweep_{sweep['name']}.png"] = png
            lines += [f"![{sweep['name']}](sweep_{sweep['name']}.png)", ""]
        for r in rows:
            writer.writerow([sweep["name"], r.name, *(leaderboard.csv_value(getattr(r, f)) for f in leaderboard.ROW_FIELDS)])
    lines.append("SRCC − best: paired bootstrap over the same test images against the sweep's best point; "
                 "* the interval excludes 0.")
    files["sweeps.md"] = ("\n".join(lines) + "\n").encode("utf-8")
    files["sweeps.csv"] = buffer.getvalue().encode("utf-8")
    return files

