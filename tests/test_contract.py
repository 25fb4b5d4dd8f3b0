"""The architecture contract: declarations are read as declared, defaults fit pyiqa's archs, text follows the arch."""
import pytest
import torch
from torch import nn

import iaa_bench  # noqa: F401  (registers MMLQ, NIMABaseline, AVACommentsDataset)
from iaa_bench.data.loaders import dataset_options
from iaa_bench.models import contract
from iaa_bench.models.iaa_model import IAAModel
from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, build_network, is_registered


@ARCH_REGISTRY.register()
class CommentLengthNet(nn.Module):
    """A plugin arch that reads only comments: its score depends on how many tokens each text has."""

    uses_image, uses_text, outputs_dist = False, True, False

    def __init__(self, tokenizer: str = "offline-minilm", max_length: int = 16):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    @classmethod
    def text_settings(cls, network_opt):
        return {"tokenizer": network_opt.get("tokenizer", "offline-minilm"), "max_length": network_opt.get("max_length", 16)}

    def forward(self, img=None, text_ids=None, text_mask=None):
        return 1 + self.scale * text_mask.sum(dim=1, keepdim=True).float()


@ARCH_REGISTRY.register()
class UndeclaredTextNet(CommentLengthNet):
    """Says it reads text but not which tokenizer."""

    text_settings = None


def test_a_plain_module_is_an_image_only_scalar_model():
    net = nn.Linear(2, 1)
    assert contract.modality(net) == "image" and not contract.uses_text(net) and not contract.outputs_dist(net)
    assert contract.frozen_encoders(net) == {} and contract.no_weight_decay(net) == set()


def test_pyiqa_archs_follow_their_forward():
    cnniqa = build_network({"type": "CNNIQA", "pretrained": None})
    assert contract.modality(cnniqa) == "image" and not contract.outputs_dist(cnniqa)
    assert is_registered("arch", "NIMA")
    nima = ARCH_REGISTRY.get("NIMA").__new__(ARCH_REGISTRY.get("NIMA"))  # its __init__ always downloads
    nn.Module.__init__(nima)
    nima.num_classes = 10
    assert contract.outputs_dist(nima)
    nima.num_classes = 1
    assert not contract.outputs_dist(nima)


@pytest.mark.parametrize("modality,reads", [("both", "image+text"), ("image", "image"), ("text", "text")])
def test_mmlq_declares_what_it_reads_from_its_options(tiny_mmlq, modality, reads):
    net = tiny_mmlq(modality=modality)
    assert contract.modality(net) == reads and contract.outputs_dist(net)
    assert set(contract.frozen_encoders(net)) == {"image+text": {"image", "text"}, "image": {"image"},
                                                   "text": {"text"}}[reads]
    network_opt = {"type": "MMLQ", "modality": modality, "text_encoder": {"name": "offline-minilm", "max_length": 24}}
    expected = None if modality == "image" else {"tokenizer": "offline-minilm", "max_length": 24}
    assert contract.text_settings(network_opt) == expected
    names = dict(net.named_parameters())
    assert contract.no_weight_decay(net) <= set(names) and any(n.startswith("queries.") for n in contract.no_weight_decay(net))


def test_datasets_get_the_text_settings_of_any_arch_that_reads_text():
    opt = {"network": {"type": "CommentLengthNet", "max_length": 20}}
    assert dataset_options(opt, {"type": "AVACommentsDataset"})["text"] == {"tokenizer": "offline-minilm",
                                                                            "max_length": 20}
    own = dataset_options(opt, {"text": {"comment_fraction": 0.5, "max_length": 12}})["text"]
    assert own == {"tokenizer": "offline-minilm", "max_length": 12, "comment_fraction": 0.5}
    with pytest.raises(OptionError, match=r"datasets.train.text.*at most 20 tokens"):
        dataset_options(opt, {"text": {"max_length": 32}}, "train")
    with pytest.raises(OptionError, match="tokenizer"):
        dataset_options(opt, {"text": {"tokenizer": "bert-base-uncased"}}, "train")
    chunked = {"network": {"type": "MMLQ", "text_encoder": {"max_length": 16, "max_chunks": 4, "max_tokens": 48}}}
    assert dataset_options(chunked, {})["text"]["max_chunks"] == 4  # chunking reaches the datasets
    with pytest.raises(OptionError, match="does not fit network MMLQ"):
        dataset_options(chunked, {"text": {"max_tokens": None}}, "train")  # 4 x 16 > the network's budget
    assert "text" not in dataset_options({"network": {"type": "NIMABaseline"}}, {"type": "AVACommentsDataset"})
    with pytest.raises(OptionError, match=r"declares no `text_settings`: set `datasets.val.text"):
        dataset_options({"network": {"type": "UndeclaredTextNet"}}, {}, "val")


def test_iaa_model_feeds_text_to_a_text_arch_and_scores_its_scalar():
    model = IAAModel({"is_train": False, "num_gpu": 0, "network": {"type": "CommentLengthNet"}, "path": {}})
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    model.feed_data({"text_ids": torch.ones(2, 4, dtype=torch.long), "text_mask": mask, "mos_label": torch.ones(2)})
    model.test()
    assert model.output_dist is None and model.output_mos.flatten().tolist() == [4.0, 3.0]


def test_a_distribution_loss_needs_a_declared_distribution():
    opt = {"is_train": True, "num_gpu": 0, "network": {"type": "CommentLengthNet"}, "path": {},
           "train": {"optim": {"type": "Adam", "lr": 1e-3}, "mos_loss_opt": {"type": "ScoreDistEMDLoss"}}}
    with pytest.raises(OptionError, match="outputs_dist"):
        IAAModel(opt)
