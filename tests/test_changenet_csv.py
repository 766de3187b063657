"""changenet_csv: the pandas-free reader (read_columns) holds to read()'s rules and messages.

Random CSV text with the awkward parts of real exports: spaces around cells, quoted commas and
newlines, empty cells, label case, a BOM, blank lines, short rows, repeated header names, rows with
too many fields. Both readers must give the same columns, or both refuse with the same message.
"""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_aoi.data import changenet_csv
from tao_aoi.errors import UserError

CELL = st.one_of(st.sampled_from(["", " ", "pass", " Pass ", "MISSING", "bridge", "a,b", 'say "hi"', "x\ny", "007",
                                  "nan", "NA", "1.5", "b0/test", "é"]),
                 st.text(alphabet="abcXYZ019 ._-/", max_size=6))
HEADER = st.lists(st.sampled_from(["input_path", "golden_path", "label", "object_name", "boardname", " label ",
                                   "siamese_score", "input_path"]), min_size=1, max_size=6)


def _csv_text(header, rows, bom, blank_after):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for i, r in enumerate(rows):
        w.writerow(r)
        if i in blank_after:
            buf.write("\n")
    return ("\ufeff" if bom else "") + buf.getvalue()


def both(path, required):
    out = []
    for reader in (changenet_csv.read, changenet_csv.read_columns):
        try:
            res = reader(path, required, what="test CSV")
        except UserError as exc:
            out.append(("error", str(exc)))
            continue
        cols = {str(c): [str(v) for v in res[c].tolist()] for c in res} if reader is changenet_csv.read_columns \
            else {str(c): [str(v) for v in res[c].tolist()] for c in res.columns}
        out.append(("ok", cols))
    return out


@settings(max_examples=300, deadline=None)
@given(header=HEADER, data=st.data(), bom=st.booleans(), required=st.sampled_from([("label",), ("input_path", "label"),
                                                                                    changenet_csv.REQUIRED, ()]))
def test_read_columns_equals_read(tmp_path_factory, header, data, bom, required):
    n = len(header)
    rows = data.draw(st.lists(st.lists(CELL, min_size=max(1, n - 1), max_size=n), max_size=6))
    blank_after = set(data.draw(st.lists(st.integers(0, 5), max_size=2)))
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    path.write_text(_csv_text(header, rows, bom, blank_after), encoding="utf-8")
    (ka, a), (kb, b) = both(path, required)
    assert ka == kb, (a, b)
    assert a == b


def test_a_large_file_gives_the_same_columns(tmp_path, monkeypatch):
    p = tmp_path / "x.csv"
    p.write_text("input_path,label,boardname\n" + "".join(f" b{i % 7}/t ,{'pass' if i % 3 else 'Missing'},00{i}\n"
                                                        for i in range(2000)))
    small = changenet_csv.read_columns(p, ("input_path", "label"))
    monkeypatch.setattr(changenet_csv, "PANDAS_PARSE_BYTES", 10)
    large = changenet_csv.read_columns(p, ("input_path", "label"))
    assert list(small) == list(large) == ["input_path", "label", "boardname"]
    assert all(small[c].tolist() == large[c].tolist() for c in small)
    assert small["label"][0] == "MISSING" and small["boardname"][1] == "001"


def test_too_many_fields_and_empty_file_are_refused_by_both(tmp_path):
    p = tmp_path / "x.csv"
    for text in ("input_path,label\na,PASS,extra\nb,PASS\n",  # pandas alone would shift the columns silently
                 "input_path,label\nb,PASS\na,PASS,extra\n"):
        p.write_text(text)
        for reader in (changenet_csv.read, changenet_csv.read_columns):
            with pytest.raises(UserError, match="cannot be parsed as CSV.*Expected 2 fields in line"):
                reader(p, ("label",))
    p.write_text("")
    msgs = set()
    for reader in (changenet_csv.read, changenet_csv.read_columns):
        with pytest.raises(UserError, match="is empty") as exc:
            reader(p, ("label",))
        msgs.add(str(exc.value))
    assert len(msgs) == 1


def test_factorize_is_first_appearance_order():
    codes, uniq = changenet_csv.factorize(np.array(["b", "a", "b", "c"], dtype=object))
    assert codes.tolist() == [0, 1, 0, 2] and uniq == ["b", "a", "c"]
