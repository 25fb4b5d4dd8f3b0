"""Leaderboard: turn predictions into rows and write CSV, Markdown and PNG results.

Pure functions, no model code: the benchmark runs models and hands their predicted
and ground-truth (N, 10) distributions here (one array per training seed). Rows carry
mean ± std over seeds, 95 % bootstrap intervals and the paired-bootstrap gap to the best
row (`add_intervals`), cost columns, and a status: measured, quick smoke output, a
published number not reproduced here (its own block, hollow in plots), or skipped with
its reason (a model that could not be scored here: listed, never plotted or ranked). The
human split-half ceiling (`human_ceiling`) is the reference every model row is read against.
Besides the project's own files, `<name>_pyiqa.csv` repeats the measured rows in the exact
shape of pyiqa's `tests/IAA_benchmark_results.csv`, so the two concatenate or merge.

Every file is written atomically (temporary file in the same folder, then
`os.replace`), so no reader ever sees a half-written file, and all files are rendered
in memory before the first one is written, so a failure while building the results
leaves the previous ones untouched.
"""
import csv
import io
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from iaa_bench.evaluation.bootstrap import interval, resample_indices, resampled_correlations
from iaa_bench.evaluation.metrics import NUM_BINS, compute_metrics, mean_score
from iaa_bench.utils.atomic import atomic_write

MODALITIES = ("image", "image+text", "text", "votes")
CEILING_MODALITY = "votes"
CEILING_NAME = "human split-half ceiling"
COMPARABILITY_NOTE = (
    "Multimodal (image+text) and image-only numbers are not directly comparable: "
    "AVA comments often state or hint the score."
)
NO_COMMENTS_NOTE = (
    "*No comments*: every test image scored again with its comments withheld (what a user with only the photo "
    "gets); image-only models read no comments, so theirs equal their main scores."
)
_CEILING_MARK = "†"
MEASURED = "measured"
PUBLISHED = "published, not reproduced here"
SKIPPED = "skipped: "  # followed by the reason
BEST, SIGNIFICANT, NOT_SIGNIFICANT = "best", "lower (significant)", "not significant"


def quick_status(iterations: int) -> str:
    """The status of every output of a smoke run (`benchmark.py --quick N`)."""
    return f"quick ({iterations} iterations): not a result"


# pyiqa's benchmark table (`benchmark_results.py --update_benchmark` in chaofengc/IQA-PyTorch writes
# tests/IAA_benchmark_results.csv): index column `Metric name`, one `<dataset>(PLCC/SRCC/KRCC)` column.
PYIQA_INDEX = "Metric name"


def pyiqa_column(dataset: str) -> str:
    return f"{dataset}(PLCC/SRCC/KRCC)"

_PLOT_DPI = 150
_PLOT_FILES = ("pred_vs_gt.png", "correlation_bars.png")


@dataclass
class LeaderboardRow:
    """One leaderboard entry. Metrics use iaa_bench.evaluation.metrics conventions (acc is a fraction,
    emd uses r=2, rmse is on the 1..10 scale); NaN means "not applicable" (the ceiling has
    no KRCC, accuracy, EMD or speed)."""

    name: str
    modality: str
    trainable_params: int
    total_params: int
    srcc: float
    plcc: float
    krcc: float = math.nan
    acc: float = math.nan
    emd: float = math.nan
    rmse: float = math.nan
    images_per_s: float = math.nan
    seeds: int = 1
    srcc_std: float = math.nan  # over seeds (NaN with one seed)
    plcc_std: float = math.nan
    srcc_low: float = math.nan  # 95 % bootstrap interval over test images
    srcc_high: float = math.nan
    plcc_low: float = math.nan
    plcc_high: float = math.nan
    srcc_vs_best: float = math.nan  # this row's SRCC minus the best row's, and its paired-bootstrap interval
    srcc_vs_best_low: float = math.nan
    srcc_vs_best_high: float = math.nan
    significance: str = ""  # BEST, SIGNIFICANT or NOT_SIGNIFICANT
    macs_per_sample: float = math.nan  # trainable part only
    train_samples_per_s: float = math.nan  # from the run's final_metrics.json
    status: str = MEASURED
    source: str = ""
    srcc_no_comments: float = math.nan  # comments withheld: what a user with only the photo gets
    plcc_no_comments: float = math.nan
    pred_mean: np.ndarray | None = field(default=None, repr=False, compare=False)
    gt_mean: np.ndarray | None = field(default=None, repr=False, compare=False)
    pred_seeds: np.ndarray | None = field(default=None, repr=False, compare=False)  # (seeds, N) mean scores

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"LeaderboardRow {self.name!r}: modality must be one of {MODALITIES}, "
                             f"got {self.modality!r}")
        if (self.pred_mean is None) != (self.gt_mean is None):
            raise ValueError(f"LeaderboardRow {self.name!r}: give both pred_mean and gt_mean or neither")
        if self.modality == "image" and math.isnan(self.srcc_no_comments):  # reads no comments: nothing to withhold
            self.srcc_no_comments, self.plcc_no_comments = self.srcc, self.plcc

    @property
    def is_reference(self) -> bool:
        return self.status == PUBLISHED

    @property
    def is_ceiling(self) -> bool:
        return self.modality == CEILING_MODALITY and not self.is_reference

    @property
    def is_skipped(self) -> bool:
        return self.status.startswith(SKIPPED)

    @property
    def is_model(self) -> bool:
        """A model scored here (not the ceiling, a published number or a skipped model)."""
        return not (self.is_ceiling or self.is_reference or self.is_skipped)


# The CSV's columns (before the pyiqa-style one): the scalar fields, so a CSV row maps back onto LeaderboardRow.
ROW_FIELDS = tuple(f.name for f in fields(LeaderboardRow) if f.name not in ("pred_mean", "gt_mean", "pred_seeds"))
_ROW_METRICS = {"srcc": "srcc", "plcc": "plcc", "krcc": "krcc", "acc": "acc", "emd": "emd2", "rmse": "rmse"}


def row_from_predictions(name: str, modality: str, pred_dist, gt_dist, seconds: float,
                         trainable: int, total: int, **extra) -> LeaderboardRow:
    """Score one model's test-set predictions with the project's metrics.

    `seconds` is the wall time of the prediction pass over all N images.
    """
    return row_from_seeds(name, modality, [pred_dist], gt_dist, seconds, trainable, total, **extra)


def row_from_seeds(name: str, modality: str, preds: list, gt_dist, seconds: float, trainable: int, total: int,
                   **extra) -> LeaderboardRow:
    """One row from a model's predictions with each training seed on the same images: metrics are
    the mean over seeds (SRCC / PLCC also their std); `seconds` is the prediction time of all
    of them; `extra` sets further fields (cost columns, status)."""
    if seconds <= 0:
        raise ValueError(f"row_from_seeds {name!r}: seconds must be > 0, got {seconds}")
    per_seed = [compute_metrics(pred, gt_dist) for pred in preds]
    mean = {field_name: float(np.mean([m[key] for m in per_seed])) for field_name, key in _ROW_METRICS.items()}
    spread = {f"{k}_std": float(np.std([m[k] for m in per_seed], ddof=1)) if len(preds) > 1 else math.nan
              for k in ("srcc", "plcc")}
    return LeaderboardRow(
        name=name, modality=modality, trainable_params=int(trainable), total_params=int(total), **mean, **spread,
        images_per_s=sum(len(p) for p in preds) / seconds, seeds=len(preds), pred_mean=mean_score(preds[0]),
        gt_mean=mean_score(gt_dist), pred_seeds=np.stack([mean_score(p) for p in preds]), **extra,
    )


def reference_row(entry: dict) -> LeaderboardRow:
    """A published result (benchmark `references:` entry): shown apart, never ranked against measured rows."""
    return LeaderboardRow(name=entry["name"], modality=entry["modality"], trainable_params=0, total_params=0,
                          srcc=float(entry["srcc"]), plcc=float(entry["plcc"]),
                          acc=float(entry["acc"]) if entry.get("acc") is not None else math.nan,
                          status=PUBLISHED, source=entry["source"])


def skipped_row(name: str, modality: str, reason: str) -> LeaderboardRow:
    """A model that could not be scored on this machine: no numbers, the reason in its status."""
    return LeaderboardRow(name=name, modality=modality, trainable_params=0, total_params=0, srcc=math.nan,
                          plcc=math.nan, status=SKIPPED + reason)


def add_intervals(rows, rounds: int = 2000, seed: int = 0) -> None:
    """Set each scored row's 95 % bootstrap intervals and its paired-bootstrap SRCC gap to the best row.

    All rows are resampled with the same image indices (they were scored on the same
    images, in the same order); a gap is significant when its interval excludes 0.
    """
    scored = [row for row in rows if row.pred_seeds is not None]
    if not scored:
        return
    indices = resample_indices(len(scored[0].gt_mean), rounds, seed)
    samples = [resampled_correlations(row.pred_seeds, row.gt_mean, indices) for row in scored]
    for row, sample in zip(scored, samples):
        row.srcc_low, row.srcc_high = interval(sample["srcc"])
        row.plcc_low, row.plcc_high = interval(sample["plcc"])
    best = max(range(len(scored)), key=lambda i: -math.inf if math.isnan(scored[i].srcc) else scored[i].srcc)
    for row, sample in zip(scored, samples):
        row.srcc_vs_best = row.srcc - scored[best].srcc
        if row is scored[best]:
            row.srcc_vs_best_low = row.srcc_vs_best_high = 0.0
            row.significance = BEST
            continue
        row.srcc_vs_best_low, row.srcc_vs_best_high = interval(sample["srcc"] - samples[best]["srcc"])
        row.significance = SIGNIFICANT if row.srcc_vs_best_high < 0 else NOT_SIGNIFICANT


def spearman_brown(r: float) -> float:
    """Reliability of the full vote set from the correlation between its two halves."""
    return 2.0 * r / (1.0 + r)


def _validated_vote_counts(vote_counts) -> np.ndarray:
    counts = np.asarray(vote_counts)
    if counts.ndim != 2 or counts.shape[1] != NUM_BINS:
        raise ValueError(f"human_ceiling: vote_counts must be (N, {NUM_BINS}), got shape {counts.shape}")
    if counts.shape[0] < 3:
        raise ValueError(f"human_ceiling: need at least 3 images for a correlation, got {counts.shape[0]}")
    if not np.all(counts == np.round(counts)) or np.any(counts < 0):
        raise ValueError("human_ceiling: vote_counts must be non-negative integer counts")
    counts = counts.astype(np.int64)
    if np.any(counts.sum(axis=1) < 2):
        raise ValueError("human_ceiling: every image needs at least 2 votes to split into halves")
    return counts


def _draw_half(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw floor(n/2) of each image's votes without replacement.

    A multivariate hypergeometric draw taken bin by bin (each bin's count conditioned on
    the bins before it), vectorised over images so all of AVA takes milliseconds.
    """
    half = np.zeros_like(counts)
    left_in_pool = counts.sum(axis=1)
    left_to_draw = left_in_pool // 2
    for k in range(counts.shape[1]):
        half[:, k] = rng.hypergeometric(counts[:, k], left_in_pool - counts[:, k], left_to_draw)
        left_in_pool = left_in_pool - counts[:, k]
        left_to_draw = left_to_draw - half[:, k]
    return half


def human_ceiling(vote_counts, seed: int = 0) -> dict:
    """How well humans agree with humans: the best SRCC/PLCC any model can expect.

    Each image's votes are split into two random halves; the mean scores of the halves
    are correlated across images and Spearman-Brown corrected to the full vote count.
    Returns `srcc`, `plcc` (corrected) and `split_half_srcc`, `split_half_plcc` (raw).
    """
    counts = _validated_vote_counts(vote_counts)
    half_a = _draw_half(counts, np.random.default_rng(seed))
    mean_a, mean_b = mean_score(half_a), mean_score(counts - half_a)
    raw_srcc = float(stats.spearmanr(mean_a, mean_b)[0])
    raw_plcc = float(stats.pearsonr(mean_a, mean_b)[0])
    return {"srcc": spearman_brown(raw_srcc), "plcc": spearman_brown(raw_plcc),
            "split_half_srcc": raw_srcc, "split_half_plcc": raw_plcc}


def ceiling_row(vote_counts, seed: int = 0, name: str = CEILING_NAME) -> LeaderboardRow:
    """The human ceiling as a leaderboard row (no parameters, no speed)."""
    ceiling = human_ceiling(vote_counts, seed)
    return LeaderboardRow(name=name, modality=CEILING_MODALITY, trainable_params=0, total_params=0,
                          srcc=ceiling["srcc"], plcc=ceiling["plcc"])


def sorted_rows(rows) -> list:
    """Models by SRCC descending (NaN last), the human ceiling after them, then published references."""
    return sorted(rows, key=lambda r: (r.is_reference, r.is_ceiling, math.inf if math.isnan(r.srcc) else -r.srcc))


def pyiqa_benchmark_cell(row: LeaderboardRow, absolute: bool = False) -> str:
    """PLCC/SRCC/KRCC as pyiqa's tests/IAA_benchmark_results.csv writes them (`round(x, 4)` joined
    by '/', e.g. "0.7172/0.7126/0.5213"; empty for a skipped row). pyiqa also takes abs(), which
    `absolute` repeats for its own file; leaderboard.csv keeps the sign so a model that ranks
    backwards stays visible."""
    if row.is_skipped:
        return ""
    return "/".join(str(abs(round(v, 4)) if absolute else round(v, 4)) for v in (row.plcc, row.srcc, row.krcc))


def csv_value(value):
    """Floats in full precision (repr round-trips exactly), NaN as 'nan'."""
    return repr(float(value)) if isinstance(value, float) else value


def _csv_bytes(rows, dataset: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*ROW_FIELDS, pyiqa_column(dataset)])
    for row in rows:
        writer.writerow([*(csv_value(getattr(row, name)) for name in ROW_FIELDS), pyiqa_benchmark_cell(row)])
    return buffer.getvalue().encode("utf-8")


def _pyiqa_csv_bytes(rows, dataset: str) -> bytes:
    """The models scored here in pyiqa's benchmark table shape (absolute values, as pyiqa writes them);
    the ceiling, published and skipped rows have no place in it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([PYIQA_INDEX, pyiqa_column(dataset)])
    for row in rows:
        if row.is_model:
            writer.writerow([row.name, pyiqa_benchmark_cell(row, absolute=True)])
    return buffer.getvalue().encode("utf-8")


def fmt(value: float, spec: str) -> str:
    return "–" if math.isnan(value) else format(value, spec)


def mean_std_cell(value: float, std: float) -> str:
    return fmt(value, ".4f") + ("" if math.isnan(std) else f" ± {std:.4f}")


def ci_cell(low: float, high: float) -> str:
    return "–" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"


def vs_best_cell(row: LeaderboardRow) -> str:
    if row.significance == BEST or not row.significance:
        return row.significance or "–"
    mark = " *" if row.significance == SIGNIFICANT else " (n.s.)"
    return f"{row.srcc_vs_best:+.4f} {ci_cell(row.srcc_vs_best_low, row.srcc_vs_best_high)}{mark}"


def params_cell(row: LeaderboardRow) -> str:
    return f"{row.trainable_params / 1e6:.2f} / {row.total_params / 1e6:.2f}"


def _table_name(row: LeaderboardRow) -> str:
    name = row.name.replace("|", "\\|")  # a '|' in a name would split the table cell
    return f"*{name}* {_CEILING_MARK}" if row.is_ceiling else name


def _markdown_bytes(rows, note: str = "") -> bytes:
    lines = [f"**{note}**", ""] if note else []
    lines += [
        "| model | input | seeds | SRCC | SRCC 95 % CI | PLCC | PLCC 95 % CI | SRCC − best (paired 95 % CI) | KRCC "
        "| Acc % | EMD | params (M) trainable / total | MMACs / sample | train samples/s | images/s "
        "| SRCC no comments | PLCC no comments |",
        "|---|---|---:|---:|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in [r for r in rows if not (r.is_reference or r.is_skipped)]:
        measured = not row.is_ceiling
        lines.append(
            f"| {_table_name(row)} | {row.modality} | {row.seeds if measured else '–'} "
            f"| {mean_std_cell(row.srcc, row.srcc_std)} | {ci_cell(row.srcc_low, row.srcc_high)} "
            f"| {mean_std_cell(row.plcc, row.plcc_std)} | {ci_cell(row.plcc_low, row.plcc_high)} | {vs_best_cell(row)} "
            f"| {fmt(row.krcc, '.4f')} | {fmt(100 * row.acc, '.2f')} | {fmt(row.emd, '.4f')} "
            f"| {params_cell(row) if measured else '–'} | {fmt(row.macs_per_sample / 1e6, '.2f')} "
            f"| {fmt(row.train_samples_per_s, '.1f')} | {fmt(row.images_per_s, '.1f')} "
            f"| {fmt(row.srcc_no_comments, '.4f')} | {fmt(row.plcc_no_comments, '.4f')} |"
        )
    lines.append("")
    if any(row.significance for row in rows):
        lines.append("SRCC − best: this row's SRCC minus the best row's, with the 95 % interval of a paired bootstrap "
                     "over the same test images; * the interval excludes 0 (significantly lower), n.s. it does not. "
                     "Mean ± std over training seeds where seeds > 1.")
    if any(row.is_ceiling for row in rows):
        lines.append(f"{_CEILING_MARK} Agreement between two random halves of each image's human votes, "
                     "Spearman-Brown corrected: an upper bound, not a model.")
    lines.append(COMPARABILITY_NOTE)
    lines.append(NO_COMMENTS_NOTE)
    skipped = [row for row in rows if row.is_skipped]
    if skipped:
        lines += ["", "Not scored here:", ""]
        lines += [f"- {row.name}: {row.status[len(SKIPPED):]}" for row in skipped]
    references = [row for row in rows if row.is_reference]
    if references:
        lines += ["", f"Published results ({PUBLISHED}; other data pipelines and splits may differ):", "",
                  "| model | input | SRCC | PLCC | Acc % | source |", "|---|---|---:|---:|---:|---|"]
        lines += [f"| {row.name} | {row.modality} | {row.srcc:.3f} | {row.plcc:.3f} | {fmt(100 * row.acc, '.2f')} "
                  f"| {row.source} |" for row in references]
    return ("\n".join(lines) + "\n").encode("utf-8")


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # Agg without touching pyplot's global backend or figure list
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_PLOT_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _scatter_limits(rows) -> tuple:
    """Shared axis range for every subplot: the data range, padded, within 1..10."""
    values = np.concatenate([np.concatenate([r.pred_mean, r.gt_mean]) for r in rows])
    values = values[np.isfinite(values)]
    low, high = (1.0, 10.0) if values.size == 0 else (values.min(), values.max())
    pad = max(0.25, 0.05 * (high - low))
    return max(1.0, low - pad), min(10.0, high + pad)


def _pred_vs_gt_png(rows, note: str = "") -> bytes:
    ncols = min(3, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 4.3 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    low, high = _scatter_limits(rows)
    marker_alpha = float(np.clip(300 / max(len(rows[0].gt_mean), 1), 0.08, 0.7))
    for ax, row in zip(axes.flat, rows):
        ax.scatter(row.gt_mean, row.pred_mean, s=6, alpha=marker_alpha, color="tab:blue",
                   edgecolors="none", rasterized=True)
        ax.plot([low, high], [low, high], color="0.3", linestyle="--", linewidth=1)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelbottom=True, labelleft=True)
        ax.set_title(f"{row.name} ({row.modality})\nSRCC {row.srcc:.3f}   PLCC {row.plcc:.3f}", fontsize=10)
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    fig.suptitle((f"{note}\n" if note else "") + "Predicted vs ground-truth mean score (dashed line: prediction = "
                 "truth; first seed)", fontsize=11)
    fig.supxlabel("ground-truth mean score", fontsize=10)
    fig.supylabel("predicted mean score", fontsize=10)
    return png_bytes(fig)


def _label_bar(ax, position: float, value: float) -> None:
    """Value inside the bar (clear of the ceiling line and tick labels); above a bar too short to hold it."""
    if math.isnan(value):
        return
    inside = abs(value) >= 0.15
    y = value / 2 if inside else value + math.copysign(0.02, value)
    ax.text(position, y, f"{value:.3f}", ha="center", va="center" if inside else
            ("bottom" if value >= 0 else "top"), fontsize=8, color="white" if inside else "0.15")


def _significance_mark(row: LeaderboardRow) -> str:
    return {BEST: "best", SIGNIFICANT: "*", NOT_SIGNIFICANT: "n.s."}.get(row.significance, "")


def _correlation_bars_png(models, ceiling, references=(), note: str = "") -> bytes:
    """SRCC / PLCC bars with 95 % intervals and the gap-to-best mark; published references hollow."""
    bars = [*models, *references]
    x = np.arange(len(bars))
    width = 0.38
    fig = Figure(figsize=(max(6.0, 1.5 * len(bars) + 2.5), 4.8), layout="constrained")
    ax = fig.subplots()
    for offset, metric, color in ((-width / 2, "srcc", "tab:blue"), (width / 2, "plcc", "tab:orange")):
        values = np.array([getattr(row, metric) for row in models])
        low = np.array([getattr(row, f"{metric}_low") for row in models])
        high = np.array([getattr(row, f"{metric}_high") for row in models])
        error = np.nan_to_num(np.stack([values - low, high - values]), nan=0.0)
        ax.bar(x[:len(models)] + offset, values, width, yerr=error, capsize=3, label=metric.upper(), color=color)
        for position, value in zip(x + offset, values):
            _label_bar(ax, position, value)
        if references:
            ax.bar(x[len(models):] + offset, [getattr(row, metric) for row in references], width, fill=False,
                   edgecolor=color, linestyle="--", label=f"{metric.upper()} ({PUBLISHED})")
    for position, row in zip(x, models):
        mark = _significance_mark(row)
        if mark and not math.isnan(row.srcc_high):
            ax.text(position - width / 2, row.srcc_high + 0.02, mark, ha="center", va="bottom", fontsize=8)
    if ceiling is not None:
        ax.axhline(ceiling.srcc, color="0.2", linestyle="--", linewidth=1.2,
                   label=f"human ceiling (SRCC {ceiling.srcc:.3f} / PLCC {ceiling.plcc:.3f})")
    lowest = min([0.0] + [v for row in bars for v in (row.srcc, row.plcc) if not math.isnan(v)])
    ax.set_ylim(lowest - 0.05 if lowest < 0 else 0.0, 1.15)
    ax.set_xticks(x, [f"{row.name}\n({row.modality})" for row in bars], fontsize=9)
    ax.set_ylabel("correlation with ground-truth mean score")
    ax.set_title((f"{note}\n" if note else "") + "SRCC and PLCC per model (95 % bootstrap intervals; "
                 "* SRCC significantly below the best, n.s. not)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=3, fontsize=8, frameon=False)
    return png_bytes(fig)


def write_results(rows, out_dir, dataset: str = "ava", note: str = "", name: str | None = None) -> list:
    """Write leaderboard.csv, leaderboard.md, pred_vs_gt.png, correlation_bars.png and `<name>_pyiqa.csv`
    (pyiqa's benchmark table; `name` defaults to out_dir's folder name).

    Rows are ordered by SRCC with the human ceiling, then published references, last.
    `note` (a quick run's status) heads the Markdown and every plot. pred_vs_gt.png is
    written only when some row carries mean-score arrays, correlation_bars.png only when
    there is a model row; a plot this call does not produce is removed, so a stale plot
    from an earlier run never sits beside the new table. Returns the paths written.
    """
    rows = sorted_rows(rows)
    if not rows:
        raise ValueError("write_results: no rows to write")
    models = [row for row in rows if row.is_model]
    references = [row for row in rows if row.is_reference]
    ceiling = next((row for row in rows if row.is_ceiling), None)
    with_scores = [row for row in models if row.pred_mean is not None]

    files = {"leaderboard.csv": _csv_bytes(rows, dataset), "leaderboard.md": _markdown_bytes(rows, note),
             f"{name or Path(out_dir).name}_pyiqa.csv": _pyiqa_csv_bytes(rows, dataset)}
    if with_scores:
        files["pred_vs_gt.png"] = _pred_vs_gt_png(with_scores, note)
    if models:
        files["correlation_bars.png"] = _correlation_bars_png(models, ceiling, references, note)
    return write_files(files, out_dir, stale=_PLOT_FILES)


def write_files(files: dict, out_dir, stale=()) -> list:
    """Write {name: bytes} atomically into out_dir (all rendered before the first write); remove
    the `stale` names this call did not produce. Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, data in files.items():
        atomic_write(out_dir / file_name, lambda f, data=data: f.write(data))
        written.append(out_dir / file_name)
    for file_name in set(stale) - set(files):
        (out_dir / file_name).unlink(missing_ok=True)
    return written
