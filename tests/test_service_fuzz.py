"""Hostile requests against a real gateway (embedded backend, the tiny random-weight
repository, a loopback channel): a hypothesis fuzz over every RPC's request fields, and the
specific cases of issue 11 (findings 5-7).

Every reply is either OK with finite outputs, or a status that is neither UNKNOWN nor
INTERNAL (the fuzz finds no gateway fault) whose message names the field at fault, is
bounded, and carries no heap address."""

from __future__ import annotations

import collections
import re
import time

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.gateway_harness import running_gateway
from support.hostile_images import encoded, gif_bomb, jpeg_bomb, png_bomb

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc
from stylegate.service.metadata import RepositoryInfo, load_repository

# strategies take the repository as an argument; hypothesis warns about its long repr
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
FUZZ = settings(
    max_examples=60,
    deadline=None,  # a loaded 2-core machine: no per-example timing
    derandomize=True,  # the same examples in CI every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
FIELD_FIRST = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: ")
NAMED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}


@pytest.fixture(scope="module")
def repo(tiny_repository) -> RepositoryInfo:
    return load_repository(tiny_repository)


@pytest.fixture(scope="module")
def channel(repo):
    with running_gateway(
        repo,
        health_interval_s=0,
        max_steps=3,
        max_generate=8,
        max_batch_seeds=16,
        max_batch=8,
        intra_op_threads=1,
    ) as gw:
        channel = grpc.insecure_channel(gw.address)
        yield channel
        channel.close()


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.StyleGateStub(channel)


# -- checking replies ---------------------------------------------------------------------


def _finite(message) -> None:
    """Every float, double and Tensor in ``message`` (recursively) is finite."""
    if isinstance(message, pb.Tensor):
        values = np.frombuffer(message.data, "<f4")
        assert np.isfinite(values).all(), "a reply tensor has NaN/Inf"
        return
    for field, value in message.ListFields():
        repeated = field.label == field.LABEL_REPEATED
        items = value if repeated else [value]
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                items = list(value.values())
                if items and isinstance(items[0], float):
                    assert np.isfinite(items).all(), field.name
                    continue
            for item in items:
                if hasattr(item, "ListFields"):
                    _finite(item)
        elif field.cpp_type in (field.CPPTYPE_FLOAT, field.CPPTYPE_DOUBLE):
            assert np.isfinite(list(items)).all(), f"{field.name} is not finite"


SEEN: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def check(call, rpc: str = "") -> grpc.StatusCode:
    """Run ``call()`` (a unary call, or a stream to drain) and check the reply; count its
    status under ``rpc``."""
    try:
        reply = call()
        for message in reply if not hasattr(reply, "ListFields") else [reply]:
            _finite(message)
        SEEN[rpc]["OK"] += 1
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        code, details = err.code(), err.details() or ""
        SEEN[rpc][code.name] += 1
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), details
        assert len(details) <= 2100, len(details)
        assert not ADDRESS.search(details), details
        if code in NAMED:
            assert FIELD_FIRST.match(details), details
        return code


# -- strategies ---------------------------------------------------------------------------


def mostly(good, bad) -> st.SearchStrategy:
    """``good`` three times in four: the fuzz must reach real work, not only refusals."""
    return st.integers(0, 3).flatmap(lambda i: bad if i == 0 else good)


INT64 = mostly(
    st.integers(0, 40),
    st.one_of(
        st.sampled_from([-1, 2**32 - 1, 2**32, 2**63 - 1, -(2**63)]),
        st.integers(-(2**63), 2**63 - 1),
    ),
)
INT32 = mostly(st.integers(0, 4), st.one_of(st.integers(-3, 10), st.integers(-(2**31), 2**31 - 1)))
FLOAT = mostly(
    st.floats(-1, 1, width=32),
    st.one_of(
        st.sampled_from([1e10, 1e30, 3e38, -3e38, 2.5, -2.5]),
        st.floats(width=32),  # NaN and Inf included
    ),
)
ENUM = mostly(st.integers(0, 2), st.integers(-1, 5))


def names(known: list[str]) -> st.SearchStrategy[str]:
    return mostly(
        st.sampled_from(["", *known]),
        st.one_of(
            st.text(max_size=20),
            st.integers(17_000, 200_000).map(lambda n: "n" * n),  # past a status trailer
        ),
    )


@st.composite
def tensors(draw, shapes: list[list[int]]) -> pb.Tensor:
    """The right shapes mostly, filled with normal, huge or poisoned values; sometimes a
    shape that lies about its data."""
    if draw(st.integers(0, 7)) == 0:
        shape = draw(st.lists(INT64, max_size=5))
        return pb.Tensor(shape=shape, data=draw(st.binary(max_size=64)))
    shape = draw(st.sampled_from(shapes))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = (rng.standard_normal(shape) * draw(st.sampled_from([1.0, 0.3, 50.0]))).astype("<f4")
    if draw(st.integers(0, 3)) == 0:
        values.flat[draw(st.integers(0, values.size - 1))] = draw(FLOAT)
    return pb.Tensor(shape=shape, data=values.tobytes())


@st.composite
def images(draw, res: int, channels: int = 3) -> pb.Image:
    good = st.sampled_from(["tensor", "png", "jpeg", "gif"])
    kind = draw(mostly(good, st.sampled_from(["bytes", "bomb", "cut", "none"])))
    if kind == "tensor":
        shapes = [[channels, res, res], [1, channels, res, res]] + ([[res, res]] * (channels == 1))
        return pb.Image(tensor=draw(tensors(shapes)))
    if kind in ("png", "jpeg", "gif"):
        side = draw(st.sampled_from([1, 3, res, 2 * res + 1]))
        mode = "L" if channels == 1 else "RGB"
        return pb.Image(data=encoded(side, kind.upper(), mode=mode, seed=side))
    if kind == "bytes":
        return pb.Image(data=draw(st.binary(max_size=64)))
    if kind == "bomb":
        bomb = draw(st.sampled_from([gif_bomb, png_bomb, jpeg_bomb]))
        return pb.Image(data=bomb(draw(st.sampled_from([2048, 4096, 65535]))))
    if kind == "cut":
        data = encoded(2 * res, "PNG")
        return pb.Image(data=data[: draw(st.integers(1, len(data) - 1))])
    return pb.Image()


def outputs() -> st.SearchStrategy[pb.OutputOptions]:
    return st.builds(
        pb.OutputOptions,
        format=mostly(st.sampled_from([0, 1, 2, 3, 4]), ENUM),
        jpeg_quality=mostly(st.sampled_from([0, 50]), INT32),
    )


@st.composite
def truncation(draw) -> pb.Truncation:
    t = pb.Truncation()
    if draw(st.booleans()):
        t.psi = draw(FLOAT)
    if draw(st.booleans()):
        t.cutoff = draw(INT32)
    return t


@st.composite
def latents(draw, gen) -> pb.LatentSource:
    kind = draw(st.sampled_from(["seed", "z", "ws", "none"]))
    src = pb.LatentSource(truncation=draw(truncation()))
    if kind == "seed":
        src.seed = draw(INT64)
    elif kind == "z":
        src.z.CopyFrom(draw(tensors([[gen.z_dim]])))
    elif kind == "ws":
        src.ws.CopyFrom(draw(tensors([[gen.w_dim], [gen.num_ws, gen.w_dim]])))
    if draw(st.integers(0, 4)) == 0:
        src.class_label = draw(INT32)
    return src


def optional(message, field: str, strategy, draw) -> None:
    if draw(st.booleans()):
        setattr(message, field, draw(strategy))


@st.composite
def invert_requests(draw, repo) -> pb.InvertRequest:
    gen = repo.generator()
    req = pb.InvertRequest(
        model=draw(names([repo.default_generator])),
        image=draw(images(gen.resolution)),
        method=draw(ENUM),
        space=draw(ENUM),
        resize=draw(ENUM),
        output=draw(outputs()),
        preview_every=draw(INT32),
        progress_every=draw(INT32),
    )
    if draw(st.booleans()):
        req.mask.CopyFrom(draw(images(gen.resolution, channels=1)))
    optional(req, "steps", mostly(st.integers(0, 3), INT32), draw)
    optional(req, "learning_rate", FLOAT, draw)
    optional(req, "early_stop_tol", FLOAT, draw)
    optional(req, "early_stop_window", mostly(st.integers(1, 4), INT32), draw)
    for term in ("pixel", "feature", "domain"):
        optional(req.loss_weights, term, FLOAT, draw)
    return req


@st.composite
def edit_requests(draw, repo) -> pb.EditRequest:
    gen = repo.generator()
    req = pb.EditRequest(
        model=draw(names(list(repo.generators))),
        noise_mode=draw(ENUM),
        output=draw(outputs()),
        return_latent=draw(st.booleans()),
        include_original=draw(st.booleans()),
    )
    if draw(st.integers(0, 3)) == 0:
        req.invert.CopyFrom(draw(invert_requests(repo)))
    else:
        req.latent.CopyFrom(draw(latents(gen)))
    for _ in range(draw(st.integers(0, 3))):
        op = pb.EditOp(strength=draw(FLOAT))
        if draw(st.booleans()):
            op.name = draw(names(sorted(gen.directions)))
        else:
            op.vector.CopyFrom(draw(tensors([[gen.w_dim]])))
        optional(op, "layer_start", INT32, draw)
        optional(op, "layer_stop", INT32, draw)
        op.condition_on.extend(draw(st.lists(names(sorted(gen.directions)), max_size=2)))
        req.edits.append(op)
    return req


# -- the fuzz, one test per RPC -----------------------------------------------------------


def test_fuzz_generate(stub, repo):
    gen = repo.generator()

    @FUZZ
    @given(
        model=names(list(repo.generators)),
        seeds=st.lists(INT64, max_size=10),
        z=st.lists(tensors([[gen.z_dim]]), max_size=3),
        trunc=truncation(),
        noise=ENUM,
        out=outputs(),
        latents=st.booleans(),
        label=mostly(st.none(), INT32),
    )
    def run(model, seeds, z, trunc, noise, out, latents, label):
        req = pb.GenerateRequest(
            model=model,
            seeds=seeds,
            z=z,
            truncation=trunc,
            noise_mode=noise,
            output=out,
            return_latents=latents,
            class_label=label,
        )
        check(lambda: stub.Generate(req, timeout=60), "Generate")

    run()
    reached("Generate")


def reached(*rpcs: str) -> None:
    """The fuzz got past validation into real work, not only refusals: some replies OK."""
    for rpc in rpcs:
        print(rpc, dict(SEEN[rpc]))
        assert SEEN[rpc]["OK"] > 0, (rpc, dict(SEEN[rpc]))


def test_fuzz_batch_generate(stub, repo):
    @FUZZ
    @given(
        model=names(list(repo.generators)),
        which=st.sampled_from(["range", "list", "range", "none"]),
        start=INT64,
        count=st.one_of(st.integers(-2, 20), INT64),
        seeds=st.lists(INT64, max_size=20),
        chunk=INT32,
        after=mostly(st.none(), INT64),
        token=mostly(st.just(""), st.text(max_size=30)),
        trunc=truncation(),
        out=outputs(),
    )
    def run(model, which, start, count, seeds, chunk, after, token, trunc, out):
        req = pb.BatchGenerateRequest(
            model=model,
            chunk_size=chunk,
            start_after=after,
            resume_token=token,
            truncation=trunc,
            output=out,
        )
        if which == "range":
            stop = max(min(start + count, 2**63 - 1), -(2**63))
            req.range.CopyFrom(pb.SeedRange(start=start, stop=stop))
        elif which == "list":
            req.list.CopyFrom(pb.SeedList(seeds=seeds))
        check(lambda: list(stub.BatchGenerate(req, timeout=60)), "BatchGenerate")

    run()
    reached("BatchGenerate")


def test_fuzz_invert(stub, repo):
    # one valid request among the examples, as for Edit: a full-suite CI run once drew 60
    # that were all refused, so the check that the fuzz reaches real work had nothing to see
    res = repo.generator().resolution
    valid = pb.InvertRequest(image=pb.Image(data=encoded(res, "PNG", seed=1)), steps=2)

    @FUZZ
    @example(req=valid)
    @given(req=invert_requests(repo))
    def run(req):
        check(lambda: list(stub.Invert(req, timeout=60)), "Invert")

    run()
    reached("Invert")


def test_fuzz_edit(stub, repo):
    # Most drawn edits are refused somewhere (any field can be off); one valid request
    # among the examples makes sure the fuzz also runs through real work.
    valid = pb.EditRequest(
        latent=pb.LatentSource(seed=1),
        edits=[pb.EditOp(name=min(repo.generator().directions), strength=1.0)],
    )

    @FUZZ
    @example(req=valid)
    @given(req=edit_requests(repo))
    def run(req):
        check(lambda: stub.Edit(req, timeout=60), "Edit")

    run()
    reached("Edit")


def test_fuzz_style_mix_and_interpolate(stub, repo):
    gen = repo.generator()

    @FUZZ
    @given(
        model=names(list(repo.generators)),
        a=latents(gen),
        b=latents(gen),
        start=st.one_of(st.none(), INT32),
        stop=st.one_of(st.none(), INT32),
        frames=INT32,
        mode=ENUM,
        noise=ENUM,
        out=outputs(),
        back=st.booleans(),
    )
    def run(model, a, b, start, stop, frames, mode, noise, out, back):
        mix = pb.StyleMixRequest(
            model=model,
            a=a,
            b=b,
            layer_start=start,
            layer_stop=stop,
            noise_mode=noise,
            output=out,
            return_latent=back,
        )
        check(lambda: stub.StyleMix(mix, timeout=60), "StyleMix")
        path = pb.InterpolateRequest(
            model=model,
            start=a,
            end=b,
            frames=frames,
            mode=mode,
            noise_mode=noise,
            output=out,
            return_latents=back,
        )
        check(lambda: stub.Interpolate(path, timeout=60), "Interpolate")

    run()
    reached("StyleMix", "Interpolate")


def test_fuzz_model_queries_and_raw_bytes(stub, channel, repo):
    methods = {
        "Generate": pb.GenerateResponse,
        "Invert": pb.InvertResponse,
        "Edit": pb.EditResponse,
        "BatchGenerate": pb.BatchGenerateChunk,
        "ModelInfo": pb.ModelInfoResponse,
    }

    @FUZZ
    @given(
        model=names(list(repo.generators)),
        method=st.sampled_from(sorted(methods)),
        raw=st.binary(max_size=200),
    )
    def run(model, method, raw):
        check(lambda: stub.ModelInfo(pb.ModelInfoRequest(model=model), timeout=30))
        check(lambda: stub.ListDirections(pb.ListDirectionsRequest(model=model), timeout=30))
        # arbitrary bytes as the request: OK when they happen to parse, never UNKNOWN
        path = f"/stylegate.v1.StyleGate/{method}"
        kind = (
            channel.unary_stream if method in ("Invert", "BatchGenerate") else channel.unary_unary
        )
        call = kind(path, response_deserializer=methods[method].FromString)
        check(lambda: call(raw, timeout=30))

    run()
    check(lambda: stub.ListModels(pb.ListModelsRequest(), timeout=30))
    check(lambda: stub.Reload(pb.ReloadRequest(), timeout=60))


# -- the cases of the issue, one by one ---------------------------------------------------


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def test_malformed_protobuf_is_invalid_argument_naming_the_request(channel):
    call = channel.unary_unary("/stylegate.v1.StyleGate/Generate")
    err = _error(lambda: call(b"\x0a\xff\xff\xff\xff\x0f", timeout=30))  # field 1, length 2^32
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "request: the request is not a valid stylegate.v1.GenerateRequest protobuf message"
    )
    stream = channel.unary_stream("/stylegate.v1.StyleGate/Invert")
    err = _error(lambda: list(stream(b"\x0a\x02\xc3\x28", timeout=30)))  # invalid UTF-8
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_huge_names_stay_not_found_with_a_bounded_message(stub):
    for n in (17_000, 8 << 20):
        err = _error(lambda n=n: stub.ModelInfo(pb.ModelInfoRequest(model="x" * n), timeout=60))
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert f"({n} characters)" in err.details() and len(err.details()) < 500


def test_decompression_bomb_headers_are_refused_before_decoding(stub):
    for bomb in (gif_bomb, jpeg_bomb, png_bomb):
        req = pb.InvertRequest(image=pb.Image(data=bomb(4096)), steps=2)
        started = time.perf_counter()
        err = _error(lambda req=req: list(stub.Invert(req, timeout=30)))
        print(f"{bomb.__name__}: refused in {1e3 * (time.perf_counter() - started):.1f} ms")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith("image.data: image is 4096x4096")


def test_the_issues_absurd_numbers_are_invalid_argument(stub, repo):
    gen = repo.generator()
    ws = np.full((gen.num_ws, gen.w_dim), 3e38, "<f4")
    cases = {
        "z[0]": pb.GenerateRequest(z=[pb.Tensor(shape=[2**32, 2**32])]),
        "a.ws": pb.StyleMixRequest(
            a=pb.LatentSource(ws=pb.Tensor(shape=list(ws.shape), data=ws.tobytes())),
            b=pb.LatentSource(seed=1),
        ),
        "edits[0].strength": pb.EditRequest(
            latent=pb.LatentSource(seed=1),
            edits=[pb.EditOp(name=min(gen.directions), strength=1e30)],
        ),
    }
    rpcs = {pb.GenerateRequest: "Generate", pb.StyleMixRequest: "StyleMix", pb.EditRequest: "Edit"}
    for field, req in cases.items():
        err = _error(lambda req=req: getattr(stub, rpcs[type(req)])(req, timeout=30))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith(f"{field}: ")
    batch = pb.BatchGenerateRequest(range=pb.SeedRange(start=-1, stop=2**63 - 1))
    err = _error(lambda: list(stub.BatchGenerate(batch, timeout=30)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("range.start: ")
