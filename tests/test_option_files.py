"""The shipped option files: valid, uniform (twins differ only where they must), and buildable offline."""
import pytest
from conftest import REPO

from iaa_bench.config.options import load_yaml
from iaa_bench.data.loaders import dataset_options
from iaa_bench.evaluation.benchmark import load_benchmark
from iaa_bench.evaluation.infer import validate_model_options
from iaa_bench.models.iaa_model import build_net

OPTIONS = REPO / "options"
MODEL_FILES = sorted(p for p in OPTIONS.glob("*.yml") if not p.name.startswith("benchmark_"))
DEMO_TWINS = sorted(p for p in MODEL_FILES if p.name.endswith("_demo.yml") and p.name != "mmlq_demo.yml")
AVA_TWINS = sorted(p for p in MODEL_FILES if p.name.endswith("_ava.yml") and p.name != "mmlq_ava.yml")


def flat(node, prefix=""):
    """{'a.b.c': leaf} of a nested option dict."""
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node}
    leaves = {}
    for key, value in node.items():
        leaves.update(flat(value, f"{prefix}{key}."))
    return leaves


def differing_keys(a: dict, b: dict) -> set:
    fa, fb = flat(a), flat(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}


def allowed_twin_difference(key: str) -> bool:
    """What a twin may change: its name, its network, and what that network strictly needs."""
    parts = key.split(".")
    return (key == "name" or key.startswith("network.") or key.startswith("train.mos_loss_opt.")
            or key.startswith("train.optim.lr_") or parts[0] == "datasets" and parts[2:3] == ["text"])


BASELINES = ("mmlq_retrieve", "mmlq_image", "mmlq_text", "nima", "cnniqa", "bag_of_ngrams", "pooled_image_mlp",
             "late_fusion")


def test_expected_files_exist():
    names = {p.stem for p in MODEL_FILES}
    for model in ("mmlq", *BASELINES):
        assert {f"{model}_demo", f"{model}_ava"} <= names


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_valid_except_data_a_user_prepares(path, monkeypatch):
    """Everything is checked but the existence of dataset folders (the AVA ones are prepared by the user)."""
    monkeypatch.chdir(REPO)
    opt = load_yaml(str(path))
    validate_model_options(opt, is_train=True, source=str(path))
    if path.stem.endswith("_ava"):
        for ds in opt["datasets"].values():
            assert ds["dataroot"] == "datasets/ava_prepared" and "build_demo_if_missing" not in ds
        assert "prepare_ava.py" in path.read_text()


@pytest.mark.parametrize("twins,reference", [(DEMO_TWINS, "mmlq_demo.yml"), (AVA_TWINS, "mmlq_ava.yml")],
                         ids=["demo", "ava"])
def test_twins_differ_only_in_allowed_keys(twins, reference):
    base = load_yaml(str(OPTIONS / reference))
    assert len(twins) == len(BASELINES)
    for path in twins:
        opt = load_yaml(str(path))
        extra = set()
        if "image_encoder" not in opt["network"]:  # no frozen encoder (the text of BagOfNgrams is hashed n-grams)
            extra = {"feature_cache.enabled"}  # nothing frozen to cache when the whole network trains
            assert opt["feature_cache"]["enabled"] is False
        wrong = {k for k in differing_keys(base, opt) if not allowed_twin_difference(k)} - extra
        assert not wrong, f"{path.name} differs from {reference} in {sorted(wrong)}"
        assert opt["name"] == path.stem


def test_difference_check_sees_a_changed_schedule():
    base = load_yaml(str(OPTIONS / "mmlq_demo.yml"))
    changed = {**base, "train": {**base["train"], "total_iter": 5}}
    assert differing_keys(base, changed) == {"train.total_iter"}
    assert not allowed_twin_difference("train.total_iter") and allowed_twin_difference("train.optim.lr_classifier")


def test_ablations_and_what_their_datasets_load():
    for suffix in ("demo", "ava"):
        for name, modality, tokenises in (("mmlq", "both", True), ("mmlq_image", "image", False),
                                          ("mmlq_text", "text", True), ("nima", None, False),
                                          ("cnniqa", None, False), ("bag_of_ngrams", None, True),
                                          ("pooled_image_mlp", "image", False), ("late_fusion", "both", True)):
            opt = load_yaml(str(OPTIONS / f"{name}_{suffix}.yml"))
            assert opt["network"].get("modality") == modality
            assert ("text" in dataset_options(opt, opt["datasets"]["test"])) == tokenises, name


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_datasets_state_the_text_their_network_reads(path):
    """pyiqa's own trainer builds each dataset from `datasets.<phase>` alone, so nothing may be left to fill in."""
    opt = load_yaml(str(path))
    for phase, ds in opt["datasets"].items():
        assert dataset_options(opt, ds, phase) == ds, phase


def test_paper_configuration():
    net = load_yaml(str(OPTIONS / "mmlq_ava.yml"))["network"]
    assert net["image_encoder"] == {"name": "vit_large_patch14_clip_quickgelu_224.openai", "weights": "timm",
                                    "img_size": 224}
    # the paper's 512-token budget, read in chunks of 128 tokens
    assert net["text_encoder"] == {"name": "bert-base-uncased", "max_length": 128, "max_chunks": 4, "max_tokens": 512}
    assert (net["num_visual_queries"], net["num_text_queries"], net["dim"], net["num_heads"], net["depth"]) == \
        (32, 32, 768, 12, 6)
    opt = load_yaml(str(OPTIONS / "mmlq_ava.yml"))
    text = dataset_options(opt, opt["datasets"]["train"])["text"]
    assert (text["max_length"], text["max_chunks"], text["max_tokens"]) == (128, 4, 512)
    assert opt["num_gpu"] == 1 and opt["train"]["amp"] == "bf16"
    assert opt["feature_cache"]["enabled"] is True and opt["feature_cache"]["dtype"] == "float16"


def test_authors_reconstruction_differs_from_the_paper_file_only_in_its_network():
    paper, authors = load_yaml(str(OPTIONS / "mmlq_ava.yml")), load_yaml(str(OPTIONS / "mmlq_ava_authors.yml"))
    # the datasets' `text` follows the network: the authors read 512 tokens in one pass, the paper file 4 x 128
    differing = {k for k in differing_keys(paper, authors) if k.split(".")[2:3] != ["text"]}
    assert {k.split(".")[0] for k in differing} == {"name", "network"}
    net = authors["network"]
    assert (net["image_encoder"]["feature_layer"], net["image_encoder"]["final_norm"]) == (-2, False)
    assert (net["cross_attention_freq"], net["context_proj"], net["null_text"], net["head"]) == (2, "linear_ln", False,
                                                                                                "mlp")


@pytest.mark.parametrize("name", ["benchmark_demo.yml", "benchmark_ava.yml"])
def test_benchmark_files(name, monkeypatch):
    monkeypatch.chdir(REPO)
    bench = load_benchmark(str(OPTIONS / name))
    listed = {m["opt"] for m in bench["models"] if "opt" in m}
    suffix = name.removeprefix("benchmark_").removesuffix(".yml")
    assert listed == {f"options/{m}_{suffix}.yml" for m in ("mmlq", *BASELINES)}
    assert bench["split"] == "test" and bench["train_missing"] is True and len(bench["seeds"]) == 3
    references = {r["name"]: (r["srcc"], r["plcc"]) for r in bench["references"]}
    if suffix == "ava":
        assert references == {"NIMA (Inception-ResNet-v2)": (0.713, 0.717), "TOPIQ-IAA (Swin)": (0.791, 0.790),
                              "Q-Align": (0.822, 0.819), "MMLQ": (0.876, 0.896), "AesMamba-M": (0.892, 0.899),
                              "VILA-R": (0.774, 0.774), "human split-half ceiling": (0.978, 0.980)}
    else:
        assert not references  # synthetic data: no published number applies


@pytest.mark.parametrize("suffix", ["demo", "ava"])
def test_ablation_benchmark_files(suffix, monkeypatch):
    from iaa_bench.evaluation.sweeps import points

    monkeypatch.chdir(REPO)
    bench = load_benchmark(str(OPTIONS / f"benchmark_ablations_{suffix}.yml"))
    by_name = {s["name"]: s for s in bench["sweeps"]}
    assert set(by_name) == {"mmib_depth", "queries", "layers"}
    assert all(s["base"] == f"options/mmlq_{suffix}.yml" for s in by_name.values())
    assert [p["network.depth"] for p in points(by_name["mmib_depth"])] == [1, 2, 4, 6, 8]
    assert all(p["network.num_visual_queries"] == p["network.num_text_queries"] for p in points(by_name["queries"]))
    assert {(p["network.self_attn"], p["network.ffn"]) for p in points(by_name["layers"])} == {
        ("joint", "shared"), ("joint", "separate"), ("separate", "shared"), ("separate", "separate")}


@pytest.mark.parametrize("path", [OPTIONS / "mmlq_demo.yml", *DEMO_TWINS], ids=lambda p: p.name)
def test_demo_networks_build_offline(path, forbid_sockets):
    """Build only (no training): the offline pre-trained weights load, nothing is downloaded."""
    net = build_net(load_yaml(str(path))["network"])
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable > 0
    if "image_encoder" in load_yaml(str(path))["network"]:
        frozen = [m for m in (net.image_encoder, net.text_encoder) if m is not None]
        assert frozen and not any(p.requires_grad for m in frozen for p in m.parameters())
