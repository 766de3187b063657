"""train_spec dotted keys, including ``name[i]`` list entries (TAO's per-class cls_weight)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tao_aoi.errors import UserError
from tao_aoi.tao import train_spec


def test_list_entry_set_and_get():
    spec = {"train": {"classify": {"cls_weight": [2.0, 10.0]}}}
    out = train_spec.with_values(spec, {"train.classify.cls_weight[1]": 5.0, "train.optim.lr": 1e-3})
    assert out["train"]["classify"]["cls_weight"] == [2.0, 5.0]  # the PASS weight stays the spec's
    assert spec["train"]["classify"]["cls_weight"] == [2.0, 10.0]  # the input is not changed
    assert train_spec.get(out, "train.classify.cls_weight[0]") == 2.0
    assert train_spec.get(out, "train.classify.cls_weight[2]") is None
    assert train_spec.get(out, "train.optim.lr") == 1e-3
    fresh: dict = {}
    train_spec.set_dotted(fresh, "train.classify.cls_weight[1]", 4.0)
    assert fresh == {"train": {"classify": {"cls_weight": [1.0, 4.0]}}}  # padded with TAO's neutral weight
    grid: dict = {"m": [[0, 1], [2, 3]]}
    train_spec.set_dotted(grid, "m[1][0]", 9)
    assert grid == {"m": [[0, 1], [9, 3]]} and train_spec.get(grid, "m[1][0]") == 9


@pytest.mark.parametrize("key", ["a[x]", "a[1", "a[-1]", "a[1]b"])
def test_bad_index_is_a_user_error(key):
    with pytest.raises(UserError, match="list index"):
        train_spec.get({}, key)


names = st.text("abcdef_", min_size=1, max_size=4)


@given(st.lists(st.tuples(names, st.one_of(st.none(), st.integers(0, 3))), min_size=1, max_size=4),
       st.floats(allow_nan=False, allow_infinity=False))
def test_set_then_get_round_trips(path, value):
    dotted = ".".join(n if i is None else f"{n}[{i}]" for n, i in path)
    spec: dict = {}
    train_spec.set_dotted(spec, dotted, value)
    assert train_spec.get(spec, dotted) == value
