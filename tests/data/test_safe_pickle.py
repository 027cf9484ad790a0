"""The restricted unpickler: plain values and numpy arrays in, any other callable refused."""

from __future__ import annotations

import builtins
import collections
import pickle

import numpy as np
import pytest

from effrep_hpc.data.safe_pickle import ForbiddenGlobalError, safe_load, safe_loads


class Custom:
    """An arbitrary user class: unpickling it would import and instantiate code named by the file."""

    def __init__(self) -> None:
        self.value = 3


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_arrays_and_plain_values_round_trip(protocol):
    obj = {
        b"data": np.arange(24, dtype=np.uint8).reshape(4, 6),
        "floats": np.linspace(0, 1, 5, dtype=np.float32),
        "scalar": np.int64(7),
        "labels": [1, 2, 3],
        "misc": (1.5, b"raw", "text", {4, 5}, frozenset({6}), bytearray(b"ab"), True, None, 2j),
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(back[b"data"], obj[b"data"])
    assert back[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(back["floats"], obj["floats"])
    assert back["scalar"] == 7 and back["labels"] == [1, 2, 3] and back["misc"] == obj["misc"]


@pytest.mark.parametrize(
    "payload, name",
    [
        (Custom(), "Custom"),
        (collections.OrderedDict(a=1), "OrderedDict"),
        (builtins.eval, "eval"),
        (getattr, "getattr"),
    ],
)
def test_other_callables_are_refused(payload, name):
    data = pickle.dumps(payload, protocol=2)
    assert pickle.loads(data) is not None  # plain pickle accepts it
    with pytest.raises(ForbiddenGlobalError, match=f"refusing to load .*{name}"):
        safe_loads(data)


def test_refusal_is_an_unpickling_error_and_names_the_file(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(Custom()))
    with pytest.raises(pickle.UnpicklingError, match=str(path)):
        safe_load(path)


def test_python2_strings_come_back_as_bytes():
    # A protocol-2 pickle as Python 2 wrote it: {'data': 'ab'} with str (SHORT_BINSTRING) values.
    py2 = b"\x80\x02}q\x00U\x04dataq\x01U\x02abq\x02s."
    assert safe_loads(py2) == {b"data": b"ab"}


def test_python2_builtin_module_name_is_accepted_for_plain_types():
    # Python 2 names the builtins module __builtin__: set([1]) as Python 2 pickled it.
    py2 = b"\x80\x02c__builtin__\nset\nq\x00]q\x01K\x01a\x85q\x02Rq\x03."
    assert safe_loads(py2) == {1}
    evil = b"\x80\x02c__builtin__\neval\nq\x00X\x03\x00\x00\x001+1q\x01\x85q\x02Rq\x03."
    assert pickle.loads(evil) == 2
    with pytest.raises(ForbiddenGlobalError, match="__builtin__.eval"):
        safe_loads(evil)


def test_codecs_encode_is_limited_to_latin1():
    rot13 = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    assert pickle.loads(rot13) == "nop"
    with pytest.raises(ForbiddenGlobalError, match="rot13"):
        safe_loads(rot13)
    latin1 = b"c_codecs\nencode\n(Vabc\nVlatin1\ntR."
    assert safe_loads(latin1) == b"abc"
