"""Readers for the raw AVA / AVA-Comments files and the prepared comments store.

Raw formats, as the AVA and AVA-Comments downloads ship them: `AVA.txt` (15 space-separated
integer columns: index, image id, ten vote counts, two tag ids, challenge id) or its CSV
variant `image_id,score2..score11,tag1,tag2,tag3`; `AVA_Comments_Full.txt` with one
`<n>#<image_id>#<c1>#<c2>...` line per image; `.jpgl` id lists. Every reader streams
line by line and raises `InputFormatError` naming the file and line of the first bad line.

Prepared comments store (written by `write_comment_store`, read by `CommentStore`):
`comments.jsonl` holds one JSON list of comment strings per image, and
`comments_index.npy` an int64 array of rows `(image_id, byte_offset, byte_length)`
sorted by id; ids without comments have no row. A reader keeps only the index in memory (24 bytes per image) and reads
one record with a single `os.pread`, so DataLoader workers share nothing mutable and
never hold all comments in RAM.
"""
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iaa_bench.utils.errors import InputFormatError

NUM_BINS = 10
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
COMMENTS_FILE = "comments.jsonl"
COMMENTS_INDEX_FILE = "comments_index.npy"
_TXT_COLUMNS = 15  # index, image_id, 10 vote counts, tag1, tag2, challenge_id
_CSV_COLUMNS = 14  # image_id, 10 vote counts, tag1, tag2, tag3


@dataclass
class AvaLabels:
    """Label rows in file order: image ids, 10-bin vote counts, two semantic tags."""

    ids: list = field(default_factory=list)
    votes: list = field(default_factory=list)
    tags: list = field(default_factory=list)


def mean_score(votes) -> float:
    """Vote-weighted mean on the 1..10 scale."""
    return sum((i + 1) * v for i, v in enumerate(votes)) / sum(votes)


def detect_labels_format(path) -> str:
    """'csv' if the first non-empty line contains a comma, else 'txt' (AVA.txt)."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                return "csv" if b"," in line else "txt"
    return "txt"


def _ints(fields, path, line_no):
    try:
        return [int(x) for x in fields]
    except ValueError:
        bad = next(x for x in fields if not _is_int(x))
        raise InputFormatError(path, line_no, f"non-integer value {bad!r}") from None


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def read_labels(path, fmt: str = "auto") -> AvaLabels:
    """Parse AVA.txt or the CSV variant (optional header) into `AvaLabels`.

    Wrong column counts, non-integer or negative votes, all-zero votes and duplicate
    ids raise `InputFormatError`.
    """
    fmt = detect_labels_format(path) if fmt == "auto" else fmt
    if fmt not in ("txt", "csv"):
        raise ValueError(f"unknown labels format {fmt!r} (expected 'txt', 'csv' or 'auto')")
    expected, id_col = (_TXT_COLUMNS, 1) if fmt == "txt" else (_CSV_COLUMNS, 0)
    labels, first_line = AvaLabels(), {}
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # -sig: a BOM is not part of the first id
        for line_no, line in enumerate(f, 1):
            fields = line.split(",") if fmt == "csv" else line.split()
            if fmt == "csv":
                fields = [x.strip() for x in fields]
                if line_no == 1 and fields and not _is_int(fields[0]):
                    continue  # header
            if not fields or fields == [""]:
                continue
            if len(fields) != expected:
                raise InputFormatError(path, line_no, f"expected {expected} columns ({fmt} labels), got {len(fields)}")
            values = _ints(fields, path, line_no)
            image_id, votes = values[id_col], values[id_col + 1:id_col + 1 + NUM_BINS]
            if min(votes) < 0:
                raise InputFormatError(path, line_no, f"negative vote count for image {image_id}")
            if sum(votes) == 0:
                raise InputFormatError(path, line_no, f"all vote counts are zero for image {image_id}")
            if image_id in first_line:
                raise InputFormatError(path, line_no, f"duplicate image id {image_id} (first on line {first_line[image_id]})")
            first_line[image_id] = line_no
            labels.ids.append(image_id)
            labels.votes.append(votes)
            labels.tags.append((values[id_col + 1 + NUM_BINS], values[id_col + 2 + NUM_BINS]))
    if not labels.ids:
        raise InputFormatError(path, 1, "no label rows")
    return labels


def read_id_list(path) -> list:
    """Image ids of a `.jpgl` list: one id per line, an optional `.jpg` suffix allowed."""
    ids = []
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            if text.lower().endswith(".jpg"):
                text = text[:-4]
            if not _is_int(text):
                raise InputFormatError(path, line_no, f"not an image id: {line.strip()!r}")
            ids.append(int(text))
    return ids


NUMERIC_ENTITY = re.compile(r"&#(?=(?:[0-9]+|[xX][0-9a-fA-F]+);)")


def split_comment_line(line: str) -> list:
    """`<n>#<id>#<c1>#...` split at `#`, except the `#` of numeric HTML entities (`&#39;`), then unescaped.

    AVA-Comments writes apostrophes and quotes as `&#39;` / `&quot;`: split naively, `it&#39;s`
    becomes two comments `it&` and `39;s`. The entities are unescaped after splitting, so an
    escaped `&#35;` stays a `#` inside its comment.
    """
    protected = NUMERIC_ENTITY.sub("&\0", line.replace("\0", ""))
    return [html.unescape(field.replace("&\0", "&#")) for field in protected.split("#")]


def write_comment_store(comments_path, known_ids, dest_dir) -> dict:
    """Stream `AVA_Comments_Full.txt` into the prepared store in `dest_dir`; return counters.

    HTML entities in comments are unescaped (`split_comment_line`); a UTF-8 BOM is ignored.
    `comments_path` None writes an empty store (an image-only dataset).

    Lines that are not valid UTF-8 are decoded with replacement characters and counted;
    lines whose id field is not an integer are skipped and counted; lines of ids not in
    `known_ids` are counted and ignored; empty comments are dropped. An id appearing on
    several lines gets all its comments (merged record appended at the end).
    """
    stats = {"comment_lines": 0, "comment_lines_skipped": 0, "undecodable_bytes_lines": 0,
             "comment_lines_unknown_id": 0, "comment_ids_repeated": 0, "comments_empty_dropped": 0,
             "comments_stored": 0}
    spans = {}
    repeated = set()
    store_path = Path(dest_dir) / COMMENTS_FILE
    with open(comments_path or os.devnull, "rb") as src, open(store_path, "wb") as out:
        offset = 0
        for raw in src:
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            stats["comment_lines"] += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="replace")
                stats["undecodable_bytes_lines"] += 1
            if stats["comment_lines"] == 1:
                line = line.removeprefix("\ufeff")
            fields = split_comment_line(line)
            image_id = fields[1].strip() if len(fields) > 1 else ""
            if not _is_int(image_id):
                stats["comment_lines_skipped"] += 1
                continue
            image_id = int(image_id)
            if image_id not in known_ids:
                stats["comment_lines_unknown_id"] += 1
                continue
            comments = [c.strip() for c in fields[2:]]
            kept = [c for c in comments if c]
            stats["comments_empty_dropped"] += len(comments) - len(kept)
            stats["comments_stored"] += len(kept)
            if not kept:
                continue
            if image_id in spans:
                stats["comment_ids_repeated"] += 1
                repeated.add(image_id)
            record = (json.dumps(kept, ensure_ascii=False) + "\n").encode("utf-8")
            out.write(record)
            spans.setdefault(image_id, []).append((offset, len(record)))
            offset += len(record)
    if repeated:
        _append_merged_records(store_path, spans, repeated)
    index = np.array(sorted((i, s[-1][0], s[-1][1]) for i, s in spans.items()), dtype=np.int64).reshape(-1, 3)
    np.save(Path(dest_dir) / COMMENTS_INDEX_FILE, index)
    return stats


def _append_merged_records(store_path, spans, repeated):
    """Append one merged record per repeated id and point its span at it (old ones become dead bytes)."""
    with open(store_path, "r+b") as f:
        offset = f.seek(0, os.SEEK_END)
        for image_id in sorted(repeated):
            merged = []
            for start, length in spans[image_id]:
                f.seek(start)
                merged += json.loads(f.read(length))
            record = (json.dumps(merged, ensure_ascii=False) + "\n").encode("utf-8")
            f.seek(offset)
            f.write(record)
            spans[image_id] = [(offset, len(record))]
            offset += len(record)


class CommentStore:
    """Read-only access to a prepared comments store; safe to use from forked workers."""

    def __init__(self, folder):
        folder = Path(folder)
        self.path = folder / COMMENTS_FILE
        index = np.load(folder / COMMENTS_INDEX_FILE)
        self.ids, self.offsets, self.lengths = index[:, 0], index[:, 1], index[:, 2]
        self._fd = None
        self._pid = None

    def spans(self, image_ids):
        """(offsets, lengths) arrays for many ids at once; length 0 = no comments."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        if not len(self.ids):  # a store without comments (image-only dataset)
            return np.zeros(len(image_ids), np.int64), np.zeros(len(image_ids), np.int64)
        pos = np.clip(np.searchsorted(self.ids, image_ids), 0, len(self.ids) - 1)
        found = self.ids[pos] == image_ids
        return np.where(found, self.offsets[pos], 0), np.where(found, self.lengths[pos], 0)

    def read(self, offset: int, length: int) -> list:
        """The comments of one record (empty list for length 0)."""
        if length == 0:
            return []
        if self._pid != os.getpid():  # a forked worker must not share the parent's descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return json.loads(os.pread(self._fd, int(length), int(offset)))

    def get(self, image_id: int) -> list:
        offsets, lengths = self.spans([image_id])
        return self.read(offsets[0], lengths[0])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fd"] = state["_pid"] = None
        return state

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
