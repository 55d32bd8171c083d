"""Round trip of a user's checkpoint: our FIR-resampled base generator
(``checkpoints/base-fir.pt``, the ``resample`` recipe) written out as an NVlabs training
snapshot and as a rosinality checkpoint, imported back, and served: the same images as the
native model, inversion as good as on the native one, and an edit trained from labels.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylegate.cli.main import main
from stylegate.export import importers
from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.service.client import StylegateClient, image_array
from stylegate.service.metadata import load_repository
from stylegate.service.signatures import z_from_seed
from tests.support import transplant
from tests.support.gateway_harness import running_gateway

ROOT = Path(__file__).resolve().parents[1]
FIR_BASE = ROOT / "checkpoints" / "base-fir.pt"
CLASSIFIER = ROOT / "checkpoints" / "classifier.pt"
# The short budget of `stylegate train encoder` in the round trip: about 2 minutes on 2 cores
# (in iterations, so a busy machine gets the same encoder, only later).
ENCODER_ITERS = 600


@pytest.fixture(scope="module")
def fir_base():
    entry = ckpt.load(FIR_BASE)
    return ckpt.generator_from(entry["G_ema"]), ckpt.discriminator_from(entry["D"])


def test_the_fir_base_round_trips_through_both_formats(fir_base, tmp_path):
    G, D = fir_base
    z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        native = G(z)
        for writer, fmt in (
            (transplant.write_nvlabs_snapshot, "nvlabs"),
            (transplant.write_rosinality_checkpoint, "rosinality"),
        ):
            imported = importers.load_checkpoint(writer(G, D, tmp_path / fmt))
            assert imported.source_format == fmt and imported.discriminator is not None
            # conv_clamp 256 is never reached by these activations: the same function
            diff = (imported.generator(z) - native).abs().max().item()
            assert diff < 1e-4, (fmt, diff)


def _stylegate(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> [N, H, W, 3] uint8, as the gateway encodes images."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def _from_uint8(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


def _mean_psnr(client, model: str, targets, method: str) -> float:
    psnrs = []
    for target in targets:
        result = client.invert(_png(target), model=model, method=method, steps=100)
        psnrs.append(_psnr(image_array(result.reconstruction), target))
    return float(np.mean(psnrs))


@pytest.mark.slow
def test_an_imported_base_inverts_and_edits_like_the_native_one(
    fir_base, shipped_repository, tmp_path
):
    G, D = fir_base
    snapshot = transplant.write_nvlabs_snapshot(G, D, tmp_path / "network-snapshot-000120.pkl")
    repo = tmp_path / "repo"
    _stylegate("export", "--from", snapshot, "--name", "mine", "--out", repo, "--no-directions")
    targets = list(data.render_batch(data.heldout_seeds(6), size=G.resolution)[0])

    # labels for an InterFaceGAN boundary: the shipped classifier's smile on seeds
    C = ckpt.load_classifier(CLASSIFIER).eval()
    smile = data.ATTRIBUTES.index("smile")
    seeds = list(range(600))
    with torch.no_grad():
        z = torch.from_numpy(np.stack([z_from_seed(s, G.z_dim) for s in seeds]))
        scores = torch.sigmoid(C(G(z))[:, smile]).numpy()
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", "smile"])
        w.writerows(zip(seeds, scores.round(4)))
    _stylegate(
        "directions", "train", "--model", "mine", "--repository", repo,
        "--labels", tmp_path / "labels.csv",
    )  # fmt: skip

    with running_gateway(load_repository(repo)) as gw, StylegateClient(gw.address) as c:
        # the served images are the native model's, to 1 LSB
        served = c.generate([0, 1, 2], model="mine")
        with torch.no_grad():
            z = torch.from_numpy(np.stack([z_from_seed(s, G.z_dim) for s in (0, 1, 2)]))
            native = _to_uint8(G(z))
        for img, ref in zip(served, native):
            assert np.abs(image_array(img.image).astype(int) - ref.astype(int)).max() <= 1

        imported_optimize = _mean_psnr(c, "mine", targets, "optimize")

        # an edit trained from labels moves the classifier's smile
        test_seeds = list(range(1000, 1040))
        moved = []
        for s in test_seeds:
            edited = c.edit(s, [("smile", 3.0)], model="mine", include_original=True)
            with torch.no_grad():
                after = C(_from_uint8(image_array(edited.image)))[0, smile]
                before = C(_from_uint8(image_array(edited.original)))[0, smile]
            moved.append(float(torch.sigmoid(after) - torch.sigmoid(before)))
        raised = float(np.mean(np.array(moved) > 0))
        assert raised >= 0.8, moved

    # a short encoder training makes in_domain (and encoder) inversion available
    _stylegate(
        "train", "encoder", "--model", "mine", "--repository", repo,
        "--run", tmp_path / "encoder-run", "--iters", ENCODER_ITERS, "--threads", 2,
    )  # fmt: skip
    with running_gateway(load_repository(repo)) as gw, StylegateClient(gw.address) as c:
        assert "in_domain" in c.model_info("mine").inversion_methods
        imported_in_domain = _mean_psnr(c, "mine", targets, "in_domain")

    with (
        running_gateway(load_repository(shipped_repository)) as gw,
        StylegateClient(gw.address) as c,
    ):
        native_optimize = _mean_psnr(c, "base", targets, "optimize")
        native_in_domain = _mean_psnr(c, "base", targets, "in_domain")
    print(
        f"\nimported from an NVlabs snapshot: smile edit raised the classifier's smile for "
        f"{raised:.0%}; optimize {imported_optimize:.2f} dB (native {native_optimize:.2f}); "
        f"in_domain after {ENCODER_ITERS} encoder iterations {imported_in_domain:.2f} dB "
        f"(native, with its fully trained encoder, {native_in_domain:.2f})"
    )
    assert imported_optimize >= native_optimize - 1.0  # measured: 0.4 dB below
    # The native in_domain (28.9 dB) rides on an encoder trained for ~8000 iterations in
    # five stages (checkpoints/README.md), the stand-in's on 600 here, and the stand-in was
    # distilled from the sessions 1-2 base: the gap (2.7 dB measured) is encoder training,
    # not the import. What a user needs: in-domain inversion of the imported model beats the
    # native generator's own optimizer, and its own optimizer by more (below).
    assert imported_in_domain >= native_optimize + 1.0  # measured: 2.0 dB above
    assert imported_in_domain >= imported_optimize + 1.0  # measured: 2.5 dB above
