"""The restricted unpickler: NVlabs' EasyDict and persistence records become plain data;
every other global is refused before anything runs."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import pytest

from stylegate.export import safe_pickle
from tests.support import nvlabs_pickle as NP


def _dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def test_easydict_is_a_dict_subclass_rebuilt_by_newobj(tmp_path):
    with NP.nvlabs_modules():
        path = _dump({"kw": NP.EasyDict(num_layers=2, inner=NP.EasyDict(a=1))}, tmp_path / "e.pkl")
    data = path.read_bytes()
    assert b"EasyDict" in data and pickle.NEWOBJ in data
    kw = safe_pickle.load(path)["kw"]
    assert isinstance(kw, dict) and isinstance(kw, safe_pickle.EasyDict)
    assert kw.num_layers == 2 and kw.inner.a == 1 and kw == {"num_layers": 2, "inner": {"a": 1}}
    with pytest.raises(AttributeError):
        kw.missing  # noqa: B018


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: _Call(os.system, f"touch {m}"),
        lambda m: _Call(builtins.eval, f"open({str(m)!r}, 'w')"),
        lambda m: _Call(subprocess.call, ["touch", str(m)]),
        lambda m: _Call(builtins.open, str(m), "w"),
    ],
    ids=["os.system", "builtins.eval", "subprocess.call", "builtins.open"],
)
def test_other_globals_are_refused_and_nothing_runs(tmp_path, make):
    marker = tmp_path / "pwned"
    path = _dump({"G_ema": make(marker)}, tmp_path / "evil.pkl")
    with pytest.raises(safe_pickle.UnsafePickleError, match="refusing to load") as e:
        safe_pickle.load(path)
    assert e.value.global_name and not marker.exists()


def test_persistence_record_is_data_and_its_source_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = NP.write_malicious_persistent(tmp_path / "r.pkl", marker)
    obj = safe_pickle.load(path)["G_ema"]
    assert isinstance(obj, safe_pickle.PersistentObject) and obj.class_name == "Generator"
    assert str(marker) in obj.module_src and obj.version == NP.PERSISTENCE_VERSION
    assert not marker.exists()
    assert safe_pickle.module_state_dict(obj) == {}
