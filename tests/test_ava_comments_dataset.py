"""AVACommentsDataset: sample fields, empty-comment text, comment_fraction, image-only mode."""
import numpy as np
import pytest
import torch
from PIL import Image

from iaa_bench.data import prepare as prepare_ava
from iaa_bench.datasets.ava_comments_dataset import TEXT_DEFAULTS, comment_tokens
from iaa_bench.utils.pyiqa_adapter import build_dataset

COMMENTS = {1: ["great light", "sharp", "nice colours", "too dark", "lovely", "well done"],
            2: ["boring"], 3: []}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    votes = {1: "0 0 1 2 5 8 4 2 1 0", 2: "3 5 8 4 1 0 0 0 0 0", 3: "0 0 0 1 1 2 3 4 2 1", 4: "0 1 2 3 4 3 2 1 0 0"}
    (root / "AVA.txt").write_text("".join(f"{k} {i} {v} 0 0 1\n" for k, (i, v) in enumerate(votes.items(), 1)))
    (root / "comments.txt").write_text("".join(f"{i}#{i}#{'#'.join(c)}\n" for i, c in COMMENTS.items()), encoding="utf-8")
    (root / "test.jpgl").write_text("4\n")
    for image_id in votes:
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / "images" / f"{image_id}.jpg")
    out = root / "prepared"
    prepare_ava.main(["--ava-txt", str(root / "AVA.txt"), "--comments", str(root / "comments.txt"),
                      "--images", str(root / "images"), "--test-list", str(root / "test.jpgl"),
                      "--out", str(out), "--val-fraction", "0", "--workers", "1", "--no-progress"])
    return out


def make(prepared, text=None, **extra):
    opt = {"name": "ava_comments", "type": "AVACommentsDataset", "phase": "train", "dataroot": str(prepared),
           "augment": {"resize": [32, 32]}, **extra}
    if text is not None:
        opt["text"] = {"tokenizer": "offline-minilm", "max_length": 16, **text}
    return build_dataset(opt)


def test_fields_shapes_and_dtypes(prepared):
    dataset = make(prepared, text={})
    assert len(dataset) == 3
    sample = dataset[0]
    assert sample["img"].shape == (3, 32, 32) and sample["img"].dtype == torch.float32
    assert 0.0 <= sample["img"].min() and sample["img"].max() <= 1.0
    assert sample["mos_dist"].shape == (10,) and float(sample["mos_dist"].sum()) == pytest.approx(1.0)
    votes = np.array([0, 0, 1, 2, 5, 8, 4, 2, 1, 0])
    assert sample["mos_label"].shape == (1,)
    assert float(sample["mos_label"]) == pytest.approx((votes * np.arange(1, 11)).sum() / votes.sum(), abs=1e-5)
    assert sample["img_path"].endswith("1.jpg")
    for key in ("text_ids", "text_mask"):
        assert sample[key].shape == (16,) and sample[key].dtype == torch.long
    assert dataset.comments(0) == COMMENTS[1]
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    assert batch["text_ids"].shape == (3, 16)


def test_image_without_comments_gets_special_tokens_only(prepared):
    dataset = make(prepared, text={})
    sample = dataset[2]  # id 3 has no comments
    assert dataset.comments(2) == []
    special = len(dataset.tokenizer("")["input_ids"])
    assert int(sample["text_mask"].sum()) == special == 2  # [CLS] [SEP]
    assert (sample["text_ids"][special:] == dataset.tokenizer.pad_token_id).all()


def test_comment_fraction_keeps_a_seeded_subset(prepared):
    dataset = make(prepared, text={"comment_fraction": 0.5, "seed": 7})
    kept = dataset.selected_comments(0)
    assert len(kept) == 3 and kept == [c for c in COMMENTS[1] if c in kept]  # original order
    assert make(prepared, text={"comment_fraction": 0.5, "seed": 7}).selected_comments(0) == kept
    assert dataset.selected_comments(1) == ["boring"]  # at least one comment is kept
    assert len(make(prepared, text={"comment_fraction": 0.2}).selected_comments(0)) == 2  # ceil(1.2), not round
    draws = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        draws.add(tuple(dataset.selected_comments(0)))
    assert len(draws) > 1  # training draws a new subset per epoch


def test_one_chunk_is_the_joined_comments_truncated(prepared):
    dataset = make(prepared, text={})
    joined = dataset.tokenizer(" ".join(COMMENTS[1]), max_length=16, truncation=True, padding="max_length",
                               return_tensors="pt")
    assert torch.equal(dataset.tokens(0)["text_ids"], joined["input_ids"][0])
    assert torch.equal(dataset.tokens(0)["text_mask"], joined["attention_mask"][0])


def test_chunks_end_between_comments_within_the_token_budget(prepared):
    comments = ["one two three", "four five six seven", "eight nine ten eleven twelve thirteen fourteen"]
    tokenizer = make(prepared, text={}).tokenizer
    opt = {**TEXT_DEFAULTS, "tokenizer": "offline-minilm", "max_length": 8, "max_chunks": 4}
    (tokens, kept, total) = comment_tokens(tokenizer, comments, opt)
    chunks = [tokenizer.decode(ids[mask.bool()]) for ids, mask in zip(tokens["text_ids"], tokens["text_mask"])]
    # "four ..." does not fit after "one two three": a new chunk; the 7-token comment fits no chunk: split
    assert chunks == ["[CLS] one two three [SEP]", "[CLS] four five six seven eight nine [SEP]",
                      "[CLS] ten eleven twelve thirteen fourteen [SEP]", ""]
    assert kept == total == 14
    tokens, kept, _ = comment_tokens(tokenizer, comments, {**opt, "max_tokens": 18})
    assert int(tokens["text_mask"].sum()) == 18 and kept == 12
    tokens, kept, _ = comment_tokens(tokenizer, comments, {**opt, "max_chunks": 1})
    assert tokens["text_ids"].shape == (8,) and kept == 6  # one chunk: today's truncation


def test_token_coverage_counts_what_the_budget_cuts(prepared):
    whole = make(prepared, text={"max_length": 16, "max_chunks": 2}).token_coverage()
    assert whole["share_kept"] == 1.0 and whole["images_cut"] == 0 and whole["images"] == 3
    cut = make(prepared, text={"max_length": 6}).token_coverage()  # one chunk of 4 comment tokens
    assert whole["tokens"] == cut["tokens"] == 11  # image 1: 10 tokens, image 2: 1, image 3: none
    assert cut["images_cut"] == 1 and cut["tokens_kept"] == 4 + 1 and cut["share_kept"] == 5 / 11


def test_withheld_comments_give_every_image_the_empty_text(prepared):
    dataset = make(prepared, text={"withhold_comments": True})
    empty = make(prepared, text={})[2]  # id 3 has no comments
    for index in range(2):
        assert dataset.selected_comments(index) == [] and dataset.comments(index) == COMMENTS[index + 1]
        assert torch.equal(dataset[index]["text_ids"], empty["text_ids"])


def test_fixed_draw_outside_training(prepared):
    dataset = make(prepared, text={"comment_fraction": 0.5}, phase="val", split="train")
    first = dataset.selected_comments(0)
    dataset.set_epoch(3)
    assert dataset.selected_comments(0) == first


def test_image_only_configuration_has_no_text(prepared):
    dataset = make(prepared, phase="test")
    assert len(dataset) == 1
    assert set(dataset[0]) == {"img", "mos_dist", "mos_label", "img_path"}


def test_dataroot_target_overrides_image_dir(prepared, tmp_path):
    with pytest.raises(FileNotFoundError):
        make(prepared, dataroot_target=str(tmp_path))[0]
