"""A small synchronous Python client of the stylegate gateway (what the CLI uses).

with StylegateClient("localhost:50051") as c:
    images = c.generate([0, 1, 2], truncation=0.7)
    result = c.invert(open("face.png", "rb").read(), on_progress=print)
    edited = c.edit(tensor_to_array(result.ws), [("smile", 3.0)])

TLS: ``StylegateClient(address, tls_ca="ca.pem")`` (``tls=True`` with the system's roots),
plus ``tls_cert=`` / ``tls_key=`` for mutual TLS; ``token=`` sends ``authorization: Bearer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import grpc
import numpy as np

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc
from stylegate.service.security import channel_credentials

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
FORMATS = {
    "png": pb.IMAGE_FORMAT_PNG,
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "webp": pb.IMAGE_FORMAT_WEBP,
    "raw": pb.IMAGE_FORMAT_RAW,
}
METHODS = {
    "in_domain": pb.INVERSION_METHOD_IN_DOMAIN,
    "optimize": pb.INVERSION_METHOD_OPTIMIZE,
    "encoder": pb.INVERSION_METHOD_ENCODER,
}
SPACES = {
    None: pb.LATENT_SPACE_UNSPECIFIED,
    "w": pb.LATENT_SPACE_W,
    "w_plus": pb.LATENT_SPACE_W_PLUS,
}
OPTIMIZERS = {
    None: pb.OPTIMIZER_UNSPECIFIED,
    "adam": pb.OPTIMIZER_ADAM,
    "lbfgs": pb.OPTIMIZER_LBFGS,
}
NOISE = {"const": pb.NOISE_MODE_CONST, "none": pb.NOISE_MODE_NONE}
INTERPOLATION = {"lerp": pb.INTERPOLATION_MODE_LERP, "slerp": pb.INTERPOLATION_MODE_SLERP}

# A latent given to the client: a seed, a W / W+ array, or a ready-made LatentSource.
Latent = int | np.ndarray | pb.LatentSource
# An edit: (direction name or raw [w_dim] vector, strength[, (layer_start, layer_stop)]).
EditSpec = tuple | pb.EditOp


def to_tensor(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, dtype="<f4")
    return pb.Tensor(shape=list(a.shape), data=a.tobytes())


def tensor_to_array(t: pb.Tensor) -> np.ndarray:
    return np.frombuffer(t.data, dtype="<f4").reshape(tuple(t.shape)).copy()


def latent_source(x: Latent, *, truncation: float | None = None) -> pb.LatentSource:
    if isinstance(x, pb.LatentSource):
        return x
    trunc = pb.Truncation(psi=truncation) if truncation is not None else None
    if isinstance(x, (int, np.integer)):
        return pb.LatentSource(seed=int(x), truncation=trunc)
    return pb.LatentSource(ws=to_tensor(np.asarray(x)))


def edit_op(spec: EditSpec) -> pb.EditOp:
    if isinstance(spec, pb.EditOp):
        return spec
    direction, strength, *rest = spec
    op = pb.EditOp(strength=float(strength))
    if isinstance(direction, str):
        op.name = direction
    else:
        op.vector.CopyFrom(to_tensor(np.asarray(direction)))
    if rest and rest[0] is not None:
        op.layer_start, op.layer_stop = rest[0]
    return op


def image_message(image: bytes | np.ndarray) -> pb.Image:
    """Encoded bytes, or a [3, H, W] float array in [-1, 1]."""
    if isinstance(image, (bytes, bytearray)):
        return pb.Image(data=bytes(image))
    return pb.Image(tensor=to_tensor(image))


def image_array(img: pb.Image) -> np.ndarray:
    """pb.Image (any format) -> [H, W, 3] uint8."""
    import io

    from PIL import Image

    if img.WhichOneof("content") == "tensor":
        x = tensor_to_array(img.tensor)
        return np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return np.asarray(Image.open(io.BytesIO(img.data)).convert("RGB"))


class StylegateClient:
    def __init__(
        self,
        address: str = "localhost:50051",
        *,
        timeout: float | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        tls: bool = False,  # TLS with the system's roots (implied by tls_ca / tls_cert)
        tls_ca: str | None = None,  # PEM CA of the gateway's certificate
        tls_cert: str | None = None,  # PEM client certificate (mutual TLS)
        tls_key: str | None = None,  # PEM key of tls_cert
        tls_server_name: str | None = None,  # name the certificate must have, if not the host
        token: str | None = None,  # bearer token (the gateway's access file)
    ):
        """Missing or unusable TLS files raise ``security.SecurityConfigError``."""
        self.address = address
        self.timeout = timeout  # default deadline of every call, seconds
        options: list[tuple[str, object]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if tls or tls_ca or tls_cert or tls_key:
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            creds = channel_credentials(tls_ca, tls_cert, tls_key)
            self.channel = grpc.secure_channel(address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        if token:
            self.channel = grpc.intercept_channel(self.channel, _BearerToken(token))
        self.stub = pb_grpc.StyleGateStub(self.channel)

    def __enter__(self) -> StylegateClient:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _t(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    # -- models -------------------------------------------------------------------------
    def list_models(self, *, timeout: float | None = None) -> pb.ListModelsResponse:
        return self.stub.ListModels(pb.ListModelsRequest(), timeout=self._t(timeout))

    def reload(self, *, timeout: float | None = None) -> pb.ReloadResponse:
        """Have the gateway re-read its model repository (FAILED_PRECONDITION if broken)."""
        return self.stub.Reload(pb.ReloadRequest(), timeout=self._t(timeout))

    def model_info(self, model: str = "", *, timeout: float | None = None) -> pb.ModelInfoResponse:
        return self.stub.ModelInfo(pb.ModelInfoRequest(model=model), timeout=self._t(timeout))

    def list_directions(
        self, model: str = "", *, timeout: float | None = None
    ) -> list[pb.Direction]:
        req = pb.ListDirectionsRequest(model=model)
        return list(self.stub.ListDirections(req, timeout=self._t(timeout)).directions)

    # -- generation -----------------------------------------------------------------------
    def generate(
        self,
        seeds: Iterable[int],
        *,
        model: str = "",
        truncation: float | None = None,
        cutoff: int | None = None,
        noise: str = "const",
        fmt: str = "png",
        return_latents: bool = False,
        class_label: int | None = None,  # class-conditional generators only
        timeout: float | None = None,
    ) -> list[pb.GeneratedImage]:
        req = pb.GenerateRequest(
            model=model,
            seeds=list(seeds),
            truncation=pb.Truncation(psi=truncation, cutoff=cutoff),
            noise_mode=NOISE[noise],
            output=pb.OutputOptions(format=FORMATS[fmt]),
            return_latents=return_latents,
            class_label=class_label,
        )
        return list(self.stub.Generate(req, timeout=self._t(timeout)).images)

    def batch_generate(
        self,
        seeds: range | Sequence[int],
        *,
        model: str = "",
        chunk_size: int = 16,
        truncation: float | None = None,
        fmt: str = "png",
        resume_token: str = "",
        retries: int = 3,
        class_label: int | None = None,  # class-conditional generators only
        timeout: float | None = None,
    ) -> Iterator[pb.BatchGenerateChunk]:
        """Chunks of generated images; resumes after the last chunk received when the stream
        breaks with UNAVAILABLE (up to ``retries`` times)."""
        if isinstance(seeds, range) and seeds.step == 1:
            spec = {"range": pb.SeedRange(start=seeds.start, stop=seeds.stop)}
        else:
            spec = {"list": pb.SeedList(seeds=list(seeds))}
        token, attempt = resume_token, 0
        while True:
            req = pb.BatchGenerateRequest(
                model=model,
                chunk_size=chunk_size,
                resume_token=token,
                truncation=pb.Truncation(psi=truncation),
                output=pb.OutputOptions(format=FORMATS[fmt]),
                class_label=class_label,
                **spec,
            )
            try:
                for chunk in self.stub.BatchGenerate(req, timeout=self._t(timeout)):
                    token = chunk.resume_token
                    yield chunk
                return
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt >= retries:
                    raise
                attempt += 1
                time.sleep(0.5 * 2**attempt)

    # -- inversion -------------------------------------------------------------------------
    def invert_request(
        self,
        image: bytes | np.ndarray,
        *,
        model: str = "",
        method: str = "in_domain",
        steps: int | None = None,
        learning_rate: float | None = None,
        loss_weights: dict[str, float] | None = None,
        space: str | None = None,
        optimizer: str | None = None,
        mask: bytes | np.ndarray | None = None,
        early_stop_tol: float | None = None,
        preview_every: int = 0,
        progress_every: int = 1,
        fmt: str = "png",
    ) -> pb.InvertRequest:
        return pb.InvertRequest(
            model=model,
            image=image_message(image),
            method=METHODS[method],
            steps=steps,
            learning_rate=learning_rate,
            loss_weights=pb.LossWeights(**(loss_weights or {})),
            space=SPACES[space],
            optimizer=OPTIMIZERS[optimizer],
            mask=image_message(mask) if mask is not None else None,
            early_stop_tol=early_stop_tol,
            preview_every=preview_every,
            progress_every=progress_every,
            output=pb.OutputOptions(format=FORMATS[fmt]),
        )

    def invert_stream(self, image: bytes | np.ndarray, *, timeout: float | None = None, **options):
        """The raw response stream (cancel it with ``.cancel()``)."""
        return self.stub.Invert(self.invert_request(image, **options), timeout=self._t(timeout))

    def invert(
        self,
        image: bytes | np.ndarray,
        *,
        on_progress: Callable[[pb.InvertProgress], None] | None = None,
        timeout: float | None = None,
        **options,
    ) -> pb.InvertResult:
        for message in self.invert_stream(image, timeout=timeout, **options):
            if message.HasField("result"):
                return message.result
            if on_progress is not None:
                on_progress(message.progress)
        raise RuntimeError("the Invert stream ended without a result")

    # -- editing ---------------------------------------------------------------------------
    def edit(
        self,
        source: Latent | bytes,
        edits: Sequence[EditSpec],
        *,
        model: str = "",
        invert_options: dict | None = None,
        include_original: bool = False,
        return_latent: bool = False,
        fmt: str = "png",
        timeout: float | None = None,
    ) -> pb.EditResponse:
        """Edit a latent (seed / W / W+) or an image (bytes: inverted first)."""
        req = pb.EditRequest(
            model=model,
            edits=[edit_op(e) for e in edits],
            include_original=include_original,
            return_latent=return_latent,
            output=pb.OutputOptions(format=FORMATS[fmt]),
        )
        if isinstance(source, (bytes, bytearray)):
            req.invert.CopyFrom(self.invert_request(source, **(invert_options or {})))
        else:
            req.latent.CopyFrom(latent_source(source))
        return self.stub.Edit(req, timeout=self._t(timeout))

    def style_mix(
        self,
        a: Latent,
        b: Latent,
        *,
        model: str = "",
        layers: tuple[int, int] | None = None,
        fmt: str = "png",
        return_latent: bool = False,
        timeout: float | None = None,
    ) -> pb.StyleMixResponse:
        req = pb.StyleMixRequest(
            model=model,
            a=latent_source(a),
            b=latent_source(b),
            output=pb.OutputOptions(format=FORMATS[fmt]),
            return_latent=return_latent,
        )
        if layers is not None:
            req.layer_start, req.layer_stop = layers
        return self.stub.StyleMix(req, timeout=self._t(timeout))

    def interpolate(
        self,
        start: Latent,
        end: Latent,
        *,
        frames: int = 8,
        mode: str = "lerp",
        model: str = "",
        fmt: str = "png",
        return_latents: bool = False,
        timeout: float | None = None,
    ) -> pb.InterpolateResponse:
        req = pb.InterpolateRequest(
            model=model,
            start=latent_source(start),
            end=latent_source(end),
            frames=frames,
            mode=INTERPOLATION[mode],
            output=pb.OutputOptions(format=FORMATS[fmt]),
            return_latents=return_latents,
        )
        return self.stub.Interpolate(req, timeout=self._t(timeout))


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:  # never the token
        return "_BearerToken(...)"

    def _details(self, details):
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)
