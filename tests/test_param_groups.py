"""timm-style weight-decay groups, the same for every arch: the MMLQ and NIMA twins regularise alike."""
from conftest import REPO, TINY_MMLQ

import iaa_bench  # noqa: F401  (registers MMLQ, NIMABaseline)
from iaa_bench.config.options import load_yaml
from iaa_bench.models.iaa_model import IAAModel

TINY_NIMA = {"type": "NIMABaseline", "base_model_name": "resnet10t", "backbone_weights": None}


def model_with(option_file: str, network: dict) -> IAAModel:
    """An IAAModel with the optimiser section of a shipped option file, on a tiny network."""
    train = load_yaml(str(REPO / "options" / option_file))["train"]
    return IAAModel({"is_train": True, "num_gpu": 0, "network": network, "path": {},
                     "train": {"optim": train["optim"], "mos_loss_opt": train["mos_loss_opt"]}})


def decay_of(model: IAAModel) -> dict:
    """{parameter name: (weight decay, lr)} as the optimiser will apply them."""
    names = {id(p): k for k, p in model.net.named_parameters()}
    return {names[id(p)]: (g["weight_decay"], g["lr"]) for g in model.optimizer.param_groups for p in g["params"]}


def test_mmlq_decays_weights_but_not_queries_null_token_norms_or_biases():
    model = model_with("mmlq_demo.yml", {"type": "MMLQ", **TINY_MMLQ})
    decay = decay_of(model)
    trainable = {k for k, p in model.net.named_parameters() if p.requires_grad}
    assert set(decay) == trainable  # every trainable parameter once, no frozen one
    exempt = {"queries.visual", "queries.textual", "null_text", "context_proj.visual.1.weight",
              "blocks.0.self_attn.norm.weight", "blocks.0.cross_attn.textual.layer.q.bias", "head.layers.0.bias"}
    decayed = {"blocks.0.self_attn.layer.q.weight", "blocks.1.ffn.layer.fc2.weight", "context_proj.textual.0.weight",
               "head.layers.3.weight"}
    assert all(decay[k] == (0.0, 3e-4) for k in exempt)
    assert all(decay[k] == (0.05, 3e-4) for k in decayed)
    assert {k for k, (wd, _) in decay.items() if wd} == {k for k in trainable if k.endswith(".weight")
                                                        and model.net.get_parameter(k).ndim == 2}


def test_nima_lr_groups_decay_at_the_top_level_weight_decay():
    model = model_with("nima_demo.yml", TINY_NIMA)
    decay = decay_of(model)
    assert decay["base_model.conv1.0.weight"] == (0.05, 3e-5) and decay["base_model.bn1.weight"] == (0.0, 3e-5)
    assert decay["classifier.2.weight"] == (0.05, 3e-4) and decay["classifier.2.bias"] == (0.0, 3e-4)


def test_a_module_weight_decay_option_overrides_the_top_level_one():
    optim = {"type": "AdamW", "lr": 1e-3, "lr_classifier": 1e-2, "weight_decay": 0.05, "weight_decay_classifier": 0.1}
    model = IAAModel({"is_train": True, "num_gpu": 0, "network": TINY_NIMA, "path": {},
                      "train": {"optim": optim, "mos_loss_opt": {"type": "ScoreDistEMDLoss"}}})
    decay = decay_of(model)
    assert decay["classifier.2.weight"] == (0.1, 1e-2) and decay["classifier.2.bias"] == (0.0, 1e-2)
    assert decay["base_model.conv1.0.weight"] == (0.05, 1e-3) and decay["base_model.bn1.bias"] == (0.0, 1e-3)
