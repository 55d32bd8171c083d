"""``stylegate train encoder --model NAME``: a user's rosinality checkpoint (written with its
real structure, tests/support/rosinality_ckpt.py) exported with ``--from``, served without an
encoder (``optimize`` only), then given a trained encoder and the full inversion step so a
running gateway serves ``in_domain`` after a Reload. The recipe resumes and trains on a
folder of the user's images; every mistake is one line and exit code 2."""

from __future__ import annotations

import json
import shutil

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylegate.cli.main import main
from stylegate.gan import checkpoint as ckpt
from stylegate.gan.train import Trainer
from stylegate.gan.train.imported_encoder import ImportedEncoder, ImportedEncoderConfig
from stylegate.gan.train.trainer import iteration_generator
from stylegate.service.backends.embedded import EmbeddedBackend
from stylegate.service.metadata import load_repository
from tests.support import rosinality_ckpt as RC
from tests.support.gateway_harness import running_gateway

TINY = {"size": 16, "channels": {4: 16, 8: 16, 16: 16}, "style_dim": 16, "n_mlp": 2}


def stylegate(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output.strip()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(the user's checkpoint, a repository exported from it with `stylegate export --from`)."""
    root = tmp_path_factory.mktemp("imported")
    ck = RC.write_checkpoint(root / "000100.pt", **TINY)
    repo = root / "repo"
    code, out = stylegate(
        "export", "--out", repo, "--from", ck.path, "--samples", 300, "--image-samples", 60
    )
    assert code == 0, out
    return ck.path, repo


@pytest.fixture
def images(tmp_path):
    """Three of the user's images, not square and not at the model's resolution."""
    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_export_records_where_the_model_came_from(imported):
    path, repo = imported
    entry = json.loads((repo / "stylegate.json").read_text())["generators"]["base"]
    assert entry["source"] == {
        "path": str(path.resolve()),
        "format": "rosinality",
        "features": "discriminator",
    }
    assert load_repository(repo).generator().inversion_methods == ("optimize",)


def test_train_encoder_installs_in_domain_on_a_running_gateway(imported, images, tmp_path):
    _, exported = imported
    repo = tmp_path / "repo"
    shutil.copytree(exported, repo)
    before = json.loads((repo / "stylegate.json").read_text())["generators"]["base"]
    info = load_repository(repo)
    target = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16)).astype(np.float32)
    with (
        running_gateway(info, EmbeddedBackend(info, intra_op_threads=1)) as gw,
        gw.client(timeout=60) as c,
    ):
        assert list(c.model_info().inversion_methods) == ["optimize"]
        with pytest.raises(grpc.RpcError) as err:
            c.invert(target, steps=2, method="in_domain")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "stylegate train encoder --model base" in err.value.details()

        run = tmp_path / "run"
        code, out = stylegate(
            "train", "encoder", "--model", "base", "--repository", repo,
            "--run", run, "--iters", 3, "--images", images,
        )  # fmt: skip
        assert code == 0, out
        assert "installed encoder and inversion_step of 'base'" in out
        assert "kill -HUP" in out and "stylegate reload" in out

        entry = json.loads((repo / "stylegate.json").read_text())["generators"]["base"]
        assert entry["models"]["encoder"] == "encoder"
        assert entry["encoder_training"]["iterations"] == 3
        for key in ("source", "directions", "w_avg", "description", "mapping"):
            assert entry.get(key, entry["models"].get(key)) == before.get(
                key, before["models"].get(key)
            ), key
        assert entry["directions"]  # the export's SeFa/GANSpace directions are kept
        gen = load_repository(repo).generator("base")
        assert set(gen.inversion_methods) == {"encoder", "optimize", "in_domain"}

        # the served encoder is the one the run trained
        state = torch.load(run / "state.pt", weights_only=True)
        E = ckpt.encoder_from({"config": state["E_config"], "state_dict": state["E"]})
        session = ort.InferenceSession(str(repo / "encoder" / "1" / "model.onnx"))
        (ws,) = session.run(None, {session.get_inputs()[0].name: target[None]})
        want = E(torch.from_numpy(target[None])).numpy()
        np.testing.assert_allclose(ws, want, atol=1e-4, rtol=1e-4)

        assert list(c.reload().models) == ["base"]
        model = c.model_info()
        assert model.can_invert and "in_domain" in model.inversion_methods
        result = c.invert(target, steps=2)  # in_domain, the default
        assert result.method == "in_domain" and result.steps == 2
        assert result.terms.domain > 0  # the full step: the encoder's domain term is live
        assert result.reconstruction.width == 16


def test_the_recipe_resumes_and_trains_on_the_users_images(imported, images, tmp_path):
    path, _ = imported
    cfg = ImportedEncoderConfig(checkpoint=path, images=images, iters=2)
    run = tmp_path / "run"
    assert Trainer(run=run).fit(ImportedEncoder, cfg)["iterations"] == 2
    first = torch.load(run / "state.pt", weights_only=True)
    cfg = ImportedEncoderConfig(checkpoint=path, images=images, iters=4)
    assert Trainer(run=run).fit(ImportedEncoder, cfg)["iterations"] == 4
    second = torch.load(run / "state.pt", weights_only=True)
    assert second["it"] == 4
    assert not torch.equal(first["E"]["out.bias"], second["E"]["out.bias"])

    recipe = ImportedEncoder(cfg, device=torch.device("cpu"))
    assert tuple(recipe.images.shape) == (3, 3, 16, 16)  # the folder's images, resized
    losses = recipe.step(0, iteration_generator(0, 0))
    assert {"lat", "pix", "psnr", "psnr_user"} <= set(losses)
    assert all(np.isfinite(v) for v in losses.values())


def _one_line_error(code: int, out: str, pattern: str) -> None:
    assert code == 2, out
    assert len(out.splitlines()) == 1 and "Traceback" not in out, out
    assert out.startswith("error: ") and pattern in out, out


def test_mistakes_are_one_line_with_exit_code_2(imported, tmp_path):
    _, repo = imported

    def train(repository, *more):
        return stylegate(
            "train", "encoder", "--repository", repository, "--run", tmp_path / "run", *more
        )

    _one_line_error(*train(repo, "--model", "nope"), "--model nope: no such generator")
    _one_line_error(*train(tmp_path / "empty", "--model", "base"), "no such file")

    meta = json.loads((repo / "stylegate.json").read_text())
    for case, source, pattern in (
        ("native", None, "was not imported with `stylegate export --from`"),
        ("moved", {"path": str(tmp_path / "gone.pt"), "format": "rosinality"}, "is missing"),
    ):
        (tmp_path / case).mkdir()
        entry = meta["generators"]["base"]
        edited = {**meta, "generators": {"base": {**entry, "source": source}}}
        if source is None:
            del edited["generators"]["base"]["source"]
        (tmp_path / case / "stylegate.json").write_text(json.dumps(edited))
        _one_line_error(*train(tmp_path / case, "--model", "base"), pattern)

    other = RC.write_checkpoint(tmp_path / "other.pt", **TINY, seed=7).path
    _one_line_error(
        *train(repo, "--model", "base", "--checkpoint", other), "not the one served as --model"
    )
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    _one_line_error(*train(repo, "--model", "base", "--checkpoint", junk), str(junk))
    assert not (tmp_path / "run").exists()
