"""service/signatures.py: the contract's seed rule and the one served-signature check."""

from __future__ import annotations

import numpy as np
import pytest

from stylegate.service import signatures
from stylegate.service.signatures import MAPPING_CONDITIONAL, check_served

META = {
    "z_dim": 8,
    "w_dim": 8,
    "num_ws": 4,
    "resolution": 8,
    "feature_channels": 2,
    "feature_resolution": 4,
    "c_dim": 0,
}


def served(sig, meta):
    return {t.name: (t.dtype, [-1, *t.shape(meta)]) for t in sig}


def test_z_from_seed_is_numpy_random_state_and_range_checked():
    z = signatures.z_from_seed(7, 8)
    np.testing.assert_array_equal(z, np.random.RandomState(7).standard_normal(8).astype("f4"))
    assert z.dtype == np.float32
    for bad in (-1, signatures.MAX_SEED + 1):
        with pytest.raises(ValueError, match="outside"):
            signatures.z_from_seed(bad, 8)


def test_check_served_accepts_the_contract_and_names_every_difference():
    sig = signatures.SYNTHESIS
    good = served(sig.inputs, META), served(sig.outputs, META)
    assert check_served("synthesis", META, inputs=good[0], outputs=good[1]) == []
    inputs = dict(good[0])
    inputs["ws"] = ("FP16", [-1, 5, 8])
    inputs["extra"] = ("FP32", [-1, 1])
    del inputs["noise_gain"]
    problems = check_served("synthesis", META, inputs=inputs, outputs={})
    text = "\n".join(problems)
    assert "input 'ws' has dtype FP16" in text
    assert "input 'ws' has shape [-1, 5, 8], expected [-1, 4, 8] ([batch, num_ws, w_dim])" in text
    assert "input 'noise_gain' is missing" in text
    assert "input 'extra' is not in the synthesis signature" in text
    assert "output 'image' is missing" in text
    # a fixed batch dim is a mismatch: every served model batches dynamically
    fixed = {k: (d, [1, *s[1:]]) for k, (d, s) in good[0].items()}
    assert check_served("synthesis", META, inputs=fixed, outputs=good[1])


def test_conditional_generators_serve_the_mapping_with_c():
    meta = {**META, "c_dim": 5}
    assert signatures.signature("mapping", meta) is MAPPING_CONDITIONAL
    plain = served(signatures.MAPPING.inputs, meta)
    outputs = served(signatures.MAPPING.outputs, meta)
    problems = check_served("mapping", meta, inputs=plain, outputs=outputs)
    assert problems == ["input 'c' is missing (served: ['z'])"]
    both = served(MAPPING_CONDITIONAL.inputs, meta)
    assert both["c"] == ("FP32", [-1, 5])
    assert check_served("mapping", meta, inputs=both, outputs=outputs) == []
