"""Training loops resume from their checkpoints to the same weights as an uninterrupted run."""

import torch

from stylegate.gan import train


def _weights(path):
    return torch.load(path / "state.pt", weights_only=True)


def test_gan_resume_matches_uninterrupted_run(tmp_path):
    kw = {"batch": 4, "seed": 5, "resolution": 16, "save_every": 1e9, "threads": 1}
    train.train_gan(tmp_path / "straight", kimg=0.016, **kw)  # 4 iterations
    train.train_gan(tmp_path / "resumed", kimg=0.008, **kw)  # 2 iterations, "interrupted"
    first = _weights(tmp_path / "resumed")
    assert first["it"] == 2
    train.train_gan(tmp_path / "resumed", kimg=0.016, **kw)  # resumes at 2, runs to 4
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a["it"] == b["it"] == 4
    for key in ("G", "D", "G_ema"):
        for name, t in a[key].items():
            assert torch.allclose(t, b[key][name], atol=1e-6), (key, name)
    # and training moved the weights at all
    assert any(not torch.equal(first["G"][k], b["G"][k]) for k in first["G"])
    assert (tmp_path / "resumed" / "progress.png").exists()


def test_classifier_training_reduces_loss_and_resumes(tmp_path):
    run = tmp_path / "cls"
    train.train_classifier(run, iters=3, batch=8, save_every=1e9, threads=1)
    s = _weights(run)
    assert s["it"] == 3
    train.train_classifier(run, iters=5, batch=8, save_every=1e9, threads=1)
    assert _weights(run)["it"] == 5


def test_encoder_training_resumes_and_fits_its_generator(tmp_path):
    """The IDInvert encoder objective runs end to end on a tiny generator and resumes."""
    from stylegate.gan import checkpoint as ckpt
    from stylegate.gan import networks as N

    torch.manual_seed(0)
    G = N.Generator(z_dim=32, w_dim=32, resolution=16, channels={4: 32, 8: 32, 16: 16})
    D = N.Discriminator(resolution=16, channels={4: 32, 8: 32, 16: 16})
    C = N.AttributeClassifier(resolution=16, num_binary=7, width=8)
    ckpt.atomic_save({"G_ema": ckpt.pack_module(G), "D": ckpt.pack_module(D)}, tmp_path / "base.pt")
    ckpt.atomic_save({"classifier": ckpt.pack_module(C)}, tmp_path / "cls.pt")
    kw = {
        "base": tmp_path / "base.pt",
        "classifier": tmp_path / "cls.pt",
        "batch": 4,
        "synthetic": 4,
        "save_every": 1e9,
        "threads": 1,
    }
    train.train_encoder(tmp_path / "enc", iters=2, **kw)
    train.train_encoder(tmp_path / "enc", iters=4, **kw)
    s = _weights(tmp_path / "enc")
    assert s["it"] == 4
    E = N.Encoder(**s["E_config"])
    E.load_state_dict(s["E"])
    assert E(torch.randn(2, 3, 16, 16)).shape == (2, G.num_ws, 32)


def _tiny_classifier(path):
    from stylegate.gan import checkpoint as ckpt
    from stylegate.gan import networks as N

    torch.manual_seed(1)
    ckpt.atomic_save(
        {
            "classifier": ckpt.pack_module(
                N.AttributeClassifier(resolution=16, num_binary=7, width=8)
            )
        },
        path,
    )
    return path


def test_recenter_encoder_keeps_its_output():
    from stylegate.gan import networks as N

    E = N.Encoder(num_ws=4, w_dim=8, resolution=16, channels={4: 16, 8: 8, 16: 8})
    x = torch.randn(3, 3, 16, 16)
    before = E(x)
    train.recenter_encoder(E, torch.randn(8))
    assert torch.allclose(E(x), before, atol=1e-5)


def test_autoencoder_resumes_and_learns_to_reconstruct(tmp_path):
    """Autoencoder pretraining: resume gives the same weights, and a few dozen iterations
    already reconstruct better than the first ones."""
    cls = _tiny_classifier(tmp_path / "cls.pt")
    kw = {
        "classifier": cls,
        "batch": 8,
        "resolution": 16,
        "save_every": 1e9,
        "threads": 1,
        "latent_batch": 16,
        "buffer_size": 64,
    }
    train.train_autoencoder(tmp_path / "straight", kimg=0.032, **kw)
    train.train_autoencoder(
        tmp_path / "resumed", kimg=0.032, minutes=0, **kw
    )  # stops after one iteration
    assert _weights(tmp_path / "resumed")["it"] == 1
    train.train_autoencoder(tmp_path / "resumed", kimg=0.032, **kw)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a["it"] == b["it"] == 4
    for key in ("G", "E_train", "G_ema", "LD"):
        for name, t in a[key].items():
            assert torch.allclose(t, b[key][name], atol=1e-5), (key, name)
    long = train.train_autoencoder(tmp_path / "long", kimg=0.32, **kw)  # 40 iterations
    log = _weights(tmp_path / "long")["log"]  # (it, pixel mse, ...) every 20 iterations
    assert long["iterations"] == 40 and log[-1][1] < log[0][1]
    # the mapping network was trained (w_avg tracked) and the encoder is centred on it
    s = _weights(tmp_path / "long")
    assert torch.allclose(s["E"]["w_avg"], s["G"]["mapping.w_avg"])
    assert s["G"]["mapping.w_avg"].abs().sum() > 0
    # the shipped encoder gives, at every layer, the mean code the training encoder gave
    from stylegate.gan import networks as N

    trained, shipped = N.Encoder(**s["E_config"]), N.Encoder(**s["E_config"])
    trained.load_state_dict(s["E_train"]), shipped.load_state_dict(s["E"])
    x = torch.randn(3, 3, 16, 16)
    want = trained(x).mean(1, keepdim=True).expand(-1, trained.num_ws, -1)
    assert torch.allclose(shipped(x), want, atol=1e-5)


def test_paired_transfer_fine_tunes_synthesis_only(tmp_path):
    from stylegate.gan import checkpoint as ckpt
    from stylegate.gan import networks as N

    torch.manual_seed(0)
    G = N.Generator(z_dim=32, w_dim=32, resolution=16, channels={4: 32, 8: 32, 16: 16})
    D = N.Discriminator(resolution=16, channels={4: 32, 8: 32, 16: 16})
    E = N.Encoder(num_ws=G.num_ws, w_dim=32, resolution=16, channels={4: 32, 8: 16, 16: 8})
    ckpt.atomic_save(
        {"G_ema": ckpt.pack_module(G), "D": ckpt.pack_module(D), "encoder": ckpt.pack_module(E)},
        tmp_path / "base.pt",
    )
    cls = _tiny_classifier(tmp_path / "cls.pt")
    kw = {
        "base": tmp_path / "base.pt",
        "classifier": cls,
        "batch": 4,
        "save_every": 1e9,
        "threads": 1,
    }
    train.train_transfer_paired(tmp_path / "t", kimg=0.008, **kw)
    train.train_transfer_paired(tmp_path / "t", kimg=0.016, **kw)
    s = _weights(tmp_path / "t")
    assert s["it"] == 4 and s["style"] == "woodblock"
    base = ckpt.load_generator(tmp_path / "base.pt").state_dict()
    for name, t in s["G"].items():
        moved = not torch.allclose(t, base[name], atol=1e-3)
        if name.startswith("mapping."):
            assert not moved, name  # one latent space for base and transfer
    assert any(
        not torch.allclose(t, base[n], atol=1e-3)
        for n, t in s["G"].items()
        if n.startswith("synthesis.")
    )
