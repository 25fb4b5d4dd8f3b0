"""Retrieved comments: the index, no leakage (self, duplicates, other splits), lent features, MMLQ, infer."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, free_port, write_options
from test_infer import tiny_mmlq_options

from iaa_bench.data import demo as make_demo_data
from iaa_bench.data.feature_cache import open_cache
from iaa_bench.data.retrieval import Retriever
from iaa_bench.evaluation import evaluate
from iaa_bench.evaluation.infer import infer
from iaa_bench.training.loop import train_pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny retrieving MMLQ trained for 3 iterations on a 40-image demo (feature cache on)."""
    tmp = tmp_path_factory.mktemp("retrieval")
    data = tmp / "demo"
    make_demo_data.main(["--out", str(data), "--n", "40", "--size", "64", "--workers", "1", "--no-progress"])
    opt = tiny_mmlq_options(data)
    opt.update(name="tiny_retrieve", feature_cache={"enabled": True})
    opt["network"] = {**opt["network"], "missing_text": "retrieve", "retrieve_k": 2, "comment_dropout": 0.5}
    opt_file = write_options(tmp / "tiny_retrieve.yml", opt)
    train_pipeline(["-opt", str(opt_file), "--root", str(tmp)])
    index = torch.load(tmp / "experiments" / "tiny_retrieve" / "retrieval_index.pt", weights_only=True)
    return tmp, data, index


def test_index_holds_the_training_split_only(run):
    _, data, index = run
    import pandas as pd

    meta = pd.read_csv(data / "meta_info.csv")
    assert index["names"] == meta.loc[meta["official_split"] == 0, "img_name"].tolist()
    files = open_cache(index["cache_folder"])
    assert torch.equal(index["has_comments"], torch.from_numpy(files.text_lengths > 2))
    assert 0 < int(index["has_comments"].sum()) < len(index["names"])  # the demo has images without comments


def test_never_itself_nor_a_duplicate_only_images_with_comments(run, tmp_path):
    tmp, data, index = run
    retriever = Retriever(index, k=3, max_tokens=32)
    query = index["pooled"].float()  # each training image's own pooled features
    paths = [str(data / "raw" / "images" / name) for name in index["names"]]
    rows = retriever.neighbours(query, paths)
    assert not (rows == torch.arange(len(paths))[:, None]).any()
    assert index["has_comments"][rows].all()
    duplicate = tmp_path / "copy_under_another_name.jpg"
    shutil.copy(paths[5], duplicate)
    unguarded = (query[5:6] @ index["pooled"].float().T).topk(1).indices.item()
    assert unguarded == 5 or not index["has_comments"][5]  # without the hash check it would find itself
    assert 5 not in retriever.neighbours(query[5:6], [str(duplicate)]).tolist()[0]


def test_each_neighbour_lends_its_first_tokens_nearest_first(run):
    _, _, index = run
    retriever = Retriever(index, k=2, max_tokens=10)  # at most 5 tokens from each neighbour
    files = retriever.files
    rows = torch.tensor([[0, 1], [2, 0]])
    feats, mask = retriever.lend(rows, "cpu")
    for b, sample in enumerate(rows.tolist()):
        starts = files.text_offsets[sample]
        parts = [files.text[start:start + min(5, n)] for start, n in zip(starts, files.text_lengths[sample])]
        expected = torch.from_numpy(np.concatenate(parts).astype(np.float32))
        assert int(mask[b].sum()) == len(expected) and torch.equal(feats[b, :len(expected)], expected)


def test_mmlq_reads_lent_comments_only_without_its_own(tiny_mmlq):
    net = tiny_mmlq(missing_text="retrieve", comment_dropout=1.0, dropout=0.0).eval()
    assert "retrieved_text" in net.no_weight_decay()
    g = torch.Generator().manual_seed(0)
    img, ids = torch.rand(2, 3, 64, 64, generator=g), torch.randint(1000, 2000, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 2:] = 0  # sample 1: [CLS] [SEP] only, no comments
    lent = torch.randn(2, 5, net.text_encoder.out_dim, generator=g), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        plain = net(img, ids, mask, return_dist=True, return_mos=False)
        with_lent = net(img, ids, mask, return_dist=True, return_mos=False, lent_text_feats=lent[0],
                        lent_text_mask=lent[1])
        assert torch.allclose(plain[0], with_lent[0], atol=1e-6) and not torch.allclose(plain[1], with_lent[1])
        dropped = net.train()(img, ids, mask, return_dist=True, return_mos=False, lent_text_feats=lent[0],
                              lent_text_mask=lent[1])  # comment_dropout 1: every sample reads what is lent
        no_text = net.eval()(img, None, None, return_dist=True, return_mos=False, lent_text_feats=lent[0],
                             lent_text_mask=lent[1])
    assert torch.allclose(dropped, no_text, atol=1e-5) and torch.allclose(no_text[1], with_lent[1], atol=1e-5)


def test_infer_without_comments_names_the_training_images_that_lent_theirs(run, capsys):
    tmp, data, index = run
    photo = str(data / "raw" / "images" / index["names"][3])  # a training image: it must not lend to itself
    infer(["-opt", str(tmp / "experiments" / "tiny_retrieve"), "--img", photo])
    lenders = capsys.readouterr().out.split("no comments: read the comments of training images ")[1]
    names = lenders.split(" (retrieved)")[0].split(", ")
    assert len(names) == 2 and set(names) <= set(index["names"]) and index["names"][3] not in names
    infer(["-opt", str(tmp / "experiments" / "tiny_retrieve"), "--img", photo, "--comments", "lovely light"])
    assert "no comments" not in capsys.readouterr().out


def test_pyiqa_metric_of_a_retrieving_run_lends_comments_as_infer_does(run, capsys):
    """`pyiqa.create_metric('mmlq', pretrained_model_path=RUN)` on an image without comments: infer.py's
    lenders and score. pyiqa passes a tensor, with no file to hash: the picture itself is kept out by its features."""
    import pyiqa

    import iaa_bench  # noqa: F401  (adds `mmlq` to pyiqa's metrics)

    tmp, data, index = run
    own = int(index["has_comments"].nonzero()[0])  # a training image with comments: it could lend to itself
    photo = str(data / "raw" / "images" / index["names"][own])
    run_dir = str(tmp / "experiments" / "tiny_retrieve")
    metric = pyiqa.create_metric("mmlq", pretrained_model_path=run_dir, device="cpu")
    score = metric(photo).item()
    lenders = metric.net.last_lenders[0]
    scored = infer(["-opt", run_dir, "--img", photo])[0][1]
    printed = capsys.readouterr().out.split("comments of training images ")[1].split(" (retrieved)")[0].split(", ")
    assert lenders == printed and len(lenders) == 2 and index["names"][own] not in lenders
    assert score == pytest.approx(scored, abs=1e-5)
    assert metric(photo, comments=["lovely light"]).item() != pytest.approx(score, abs=1e-6)
    assert metric.net.last_lenders == [[]]  # its own comments: nothing lent


def test_two_process_ddp_builds_the_same_index_and_scores_as_one_process(run):
    """Retrieval under torchrun (2 CPU processes, gloo): each rank encodes half of the training split's caches,
    yet the index equals the single-process one (names, hashes, candidates; pooled features to fp16 precision),
    and the test split scored across both ranks equals test.py scoring the same checkpoint in one process."""
    tmp, _, index = run
    opt_file = tmp / "tiny_retrieve.yml"
    opt = yaml.safe_load(opt_file.read_text())
    opt["val"]["metrics"]["plcc"] = {"type": "aesthetic_plcc"}  # continuous: any changed prediction shows
    ddp_file = write_options(tmp / "tiny_retrieve_ddp.yml", opt)
    root = tmp / "ddp"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                          str(REPO / "iaa_bench/train.py"), "-opt", str(ddp_file), "--launcher", "pytorch",
                          "--root", str(root)], cwd=tmp, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ddp = torch.load(root / "experiments/tiny_retrieve/retrieval_index.pt", weights_only=True)
    assert ddp["names"] == index["names"] and ddp["sha256"] == index["sha256"]
    assert torch.equal(ddp["has_comments"], index["has_comments"])
    assert torch.allclose(ddp["pooled"].float(), index["pooled"].float(), atol=2e-3)
    assert ddp["cache_folder"].startswith(str(root))  # its own cache, built in two shards
    final = json.loads((root / "experiments/tiny_retrieve/final_metrics.json").read_text())["test"]["test"]
    single = evaluate.test_pipeline(["-opt", str(ddp_file), "--root", str(root)])["test"]
    assert final["images"] == single["images"] == 8
    for key in ("srcc", "plcc"):
        assert single[key] == pytest.approx(final[key], abs=1e-6), key
