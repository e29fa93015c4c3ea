"""The CSV/TSV readers: the fast chunk split must read exactly what the csv module reads.

Pure Python (no database): every file is read by ``read_batches`` with tiny chunks (so chunk
boundaries fall everywhere, and the switch to the csv module happens mid-file) and compared
with ``csv.reader`` over the same file.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import pytest

from pyembed_db import load_formats
from pyembed_db.errors import LoadError
from pyembed_db.load_formats import read_batches

PLAIN = "".join(f"u{n},i{n * 7 % 13},view,{n % 5},2024-01-0{n % 9 + 1}T10:00:00Z\n"
                for n in range(300))
HEADER = "user,item,event_type,value,occurred_at\n"


def expected(path: Path, delimiter: str) -> list[list[Any]]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [r for r in csv.reader(handle, delimiter=delimiter, quoting=quoting)][1:]
    width = len(HEADER.split(","))
    return [r + [None] * (width - len(r)) for r in rows if r]


def read(path: Path) -> tuple[list[list[Any]], list[int]]:
    columns, batches = read_batches(path)
    rows: list[list[Any]] = []
    firsts = []
    for first, values in batches:
        firsts.append(first)
        assert first == len(rows) + 1
        rows += [list(r) for r in zip(*(values[c] for c in columns), strict=True)]
    return rows, firsts


CASES = {
    "plain": PLAIN,
    "no final newline": PLAIN.rstrip("\n"),
    "crlf": PLAIN.replace("\n", "\r\n"),
    "quote late": PLAIN + 'u9,i9,view,1,"2024-01-01T10:00:00Z"\n' + PLAIN,
    "quoted newline late": PLAIN + 'u9,"i\n9",view,1,2024-01-01\n' + PLAIN,
    "blank lines": PLAIN[:500] + "\n\n" + PLAIN[500:] + "\n",
    "short row": PLAIN + "u1,i1\n" + PLAIN,
    "bom": "\ufeff" + PLAIN,
    "long line": PLAIN + "u1,i1,view,1," + "x" * 5000 + "\n" + PLAIN,
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_fast_split_reads_what_the_csv_module_reads(tmp_path: Path, monkeypatch: Any,
                                                    case: str, suffix: str) -> None:
    monkeypatch.setattr(load_formats, "CHUNK_CHARS", 97)
    monkeypatch.setattr(load_formats, "BATCH_ROWS", 50)
    text = HEADER + CASES[case]
    if suffix == ".tsv":
        text = text.replace(",", "\t")
    path = tmp_path / f"events{suffix}"
    path.write_bytes(text.encode())
    rows, _ = read(path)
    assert rows == expected(path, "," if suffix == ".csv" else "\t")


def test_random_files_read_like_the_csv_module(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(load_formats, "CHUNK_CHARS", 61)
    rng = random.Random(5)
    alphabet = ["a", "b", ",", '"', "\n", "\r\n", " ", "é"]
    for n in range(200):
        body = "".join(rng.choice(alphabet) if rng.random() < 0.05 else rng.choice("xyz,")
                       for _ in range(rng.randint(0, 400)))
        lines = [",".join(line.split(",")[:5]) for line in body.split("\n")]
        path = tmp_path / f"r{n}.csv"
        path.write_text(HEADER + "\n".join(lines), encoding="utf-8", newline="")
        try:
            want: Any = expected(path, ",")
        except csv.Error:
            want = csv.Error
        try:
            got: Any = read(path)[0]
        except LoadError:
            got = csv.Error
        if want is not csv.Error and any(len(r) > 5 for r in want):
            want = csv.Error  # more fields than the header: a LoadError
        assert got == want, path.read_text()


def test_more_fields_than_the_header_names_the_line(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(load_formats, "CHUNK_CHARS", 64)
    path = tmp_path / "events.csv"
    path.write_text(HEADER + PLAIN[:2000].rsplit("\n", 1)[0] + "\nu,i,view,1,2024-01-01,extra\n")
    line = PLAIN[:2000].rsplit("\n", 1)[0].count("\n") + 3
    with pytest.raises(LoadError, match=f"more fields than the header has, at line {line}$"):
        read(path)
