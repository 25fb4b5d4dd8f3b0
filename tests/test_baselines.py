"""Baselines beside MMLQ: hashed n-grams of whole comment sets, and pooled heads on MMLQ's own cached encoders."""
import torch
import yaml
from conftest import TINY_MMLQ, run_script
from iaa_bench.archs.bag_of_ngrams_arch import BagOfNgrams
from iaa_bench.archs.mmlq_arch import MMLQ
from iaa_bench.archs.pooled_mlp_arch import PooledFeatureMLP
from test_feature_cache import cached, dataset, loader_of

from iaa_bench.data import feature_cache as fc
from iaa_bench.data.loaders import collate_skipping_bad_images, dataset_options
from iaa_bench.data.ngrams import HashedNgrams

ENCODERS = {k: TINY_MMLQ[k] for k in ("image_encoder", "text_encoder")}


def test_hashed_ngrams_cover_the_whole_text_stably():
    hasher = HashedNgrams(buckets=1000, ngram=2)
    words = " ".join(f"w{i}" for i in range(3000))  # far beyond any encoder's max_length
    ids = hasher.ids(words)
    assert len(ids) == 3000 + 2999 and all(0 <= i < 1000 for i in ids)
    assert hasher.ids("Great light, GREAT light") == hasher.ids("great light great light")
    assert hasher.ids("a b") == [*hasher.ids("a"), *hasher.ids("b"), hasher.ids("a b")[-1]]
    assert HashedNgrams(1000, 1).ids("great light") == hasher.ids("great light")[:2]


def test_ragged_texts_are_padded_per_batch():
    hasher = HashedNgrams(100)
    batch = collate_skipping_bad_images([{"x": torch.zeros(1), **hasher("one two three")}, {"x": torch.zeros(1), **hasher("")}])
    assert batch["text_ids"].shape == batch["text_mask"].shape == (2, 5)
    assert batch["text_mask"].tolist() == [[1] * 5, [0] * 5]


def test_bag_of_ngrams_ignores_padding_and_gives_the_prior_without_comments():
    torch.manual_seed(0)
    net = BagOfNgrams({"buckets": 50}, dim=8).eval()
    torch.nn.init.normal_(net.head.weight)
    ids, mask = torch.tensor([[3, 7, 9]]), torch.ones(1, 3, dtype=torch.long)
    padded = net(None, torch.tensor([[3, 7, 9, 0, 0]]), torch.tensor([[1, 1, 1, 0, 0]]), return_dist=True, return_mos=False)
    assert torch.allclose(net(None, ids, mask, return_dist=True, return_mos=False), padded)
    no_text = net(torch.zeros(2, 3, 8, 8), return_dist=True, return_mos=False)
    assert torch.allclose(no_text, net.forward_head(torch.zeros(2, 8)))
    empty = net(None, torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, dtype=torch.long), return_dist=True,
                return_mos=False)
    assert torch.allclose(empty, no_text[:1])


def test_dataset_hashes_the_whole_comment_set(demo_data):
    opt = dataset_options({"network": {"type": "BagOfNgrams", "text_encoder": {"name": "hashed-ngrams", "buckets": 64}}},
                          {"type": "AVACommentsDataset"})
    assert opt["text"] == {"tokenizer": "hashed-ngrams", "max_length": None, "buckets": 64, "ngram": 2}
    ds = dataset(demo_data)
    ds.text_opt, ds.tokenizer = {**ds.text_opt, **opt["text"]}, HashedNgrams(64)
    index = max(range(len(ds)), key=lambda i: len(" ".join(ds.comments(i))))
    sample = ds.tokens(index)
    assert sample["text_ids"].tolist() == HashedNgrams(64).ids(" ".join(ds.comments(index)))


def test_pooled_baselines_share_mmlq_caches_and_match_uncached(demo_data, tmp_path):
    def seeded(build):  # the tiny encoders are random-init: the same seed makes them the same encoders
        torch.manual_seed(0)
        return build().eval()

    mmlq = seeded(lambda: MMLQ(**TINY_MMLQ))
    late = seeded(lambda: PooledFeatureMLP(**ENCODERS, modality="both", hidden=[16], dropout=[0.0]))
    image_only = seeded(lambda: PooledFeatureMLP(image_encoder=TINY_MMLQ["image_encoder"], hidden=[16, 8],
                                                 dropout=[0.1, 0.0]))
    assert not image_only.uses_text and late.uses_text
    ds = dataset(demo_data)
    for kind in ("image", "text"):
        assert fc.cache_folder("c", fc.describe(late, ds, "float16", (kind,))) == \
            fc.cache_folder("c", fc.describe(mmlq, ds, "float16", (kind,)))
    # float32: LayerNorm of pooled random-init features would amplify float16 rounding past any tight bound
    mmlq_loader = cached(tmp_path, mmlq, loader_of(ds), dtype="float32")
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    for net in (late, image_only):
        from_cache = next(iter(cached(tmp_path, net, loader_of(ds), dtype="float32")))
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == folders  # nothing encoded again
        plain = next(iter(loader_of(ds)))
        with torch.no_grad():
            ref = net(plain["img"], plain["text_ids"], plain["text_mask"], return_dist=True, return_mos=False)
            out = net(image_feats=from_cache["image_feats"], text_feats=from_cache.get("text_feats"),
                      text_mask=from_cache.get("text_mask"), return_dist=True, return_mos=False)
        assert ref.shape == (4, 10) and (out - ref).abs().max() < 1e-5
    assert len(mmlq_loader.dataset) == len(ds)


def test_bag_of_ngrams_trains_with_train_py(demo_data, tmp_path):
    data = {"type": "AVACommentsDataset", "dataroot": str(demo_data), "augment": {"resize": [32, 32]}, "img_range": 1}
    opt = {"name": "bow", "model_type": "IAAModel", "num_gpu": 0, "manual_seed": 1,
           "datasets": {"train": {**data, "name": "t", "split": "train", "batch_size_per_gpu": 4},
                        "val": {**data, "name": "v", "split": "val", "batch_size_per_gpu": 8}},
           "network": {"type": "BagOfNgrams", "text_encoder": {"name": "hashed-ngrams", "buckets": 512}, "dim": 8},
           "path": {}, "train": {"optim": {"type": "AdamW", "lr": 1e-2}, "total_iter": 4, "warmup_iter": -1,
                                 "mos_loss_opt": {"type": "ScoreDistEMDLoss", "r": 2}},
           "val": {"val_freq": 4, "metrics": {"srcc": {"type": "aesthetic_srcc"}}},
           "logger": {"print_freq": 2, "save_checkpoint_freq": 100, "save_latest_freq": 100, "use_tb_logger": False}}
    (tmp_path / "bow.yml").write_text(yaml.safe_dump(opt))
    result = run_script("train.py", "-opt", tmp_path / "bow.yml", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FINAL bow iter=4 val: srcc=" in result.stdout
