"""The StyleGate servicer: validate and convert the request (service/convert.py), call the
core (generation / inversion / editing), convert back. Errors and metrics: ``@rpc``."""

from __future__ import annotations

import base64
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc
from stylegate.service import convert, editing, generation, inversion, metrics
from stylegate.service.backends.base import Backend, Priority
from stylegate.service.errors import InvalidInput, OverCapacity
from stylegate.service.generation import Call
from stylegate.service.metadata import GeneratorInfo, RepositoryInfo
from stylegate.service.rpc import InFlight, rpc
from stylegate.service.settings import Settings

DEFAULT_FRAMES = 8
DEFAULT_CHUNK = 16


class StyleGateServicer(pb_grpc.StyleGateServicer):
    def __init__(self, settings: Settings, repository: RepositoryInfo, backend: Backend):
        self.settings = settings
        self.repository = repository
        self.backend = backend
        self.in_flight = InFlight()
        self._inversions = 0

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _call(context: grpc.aio.ServicerContext, priority: Priority = Priority.INTERACTIVE) -> Call:
        remaining = context.time_remaining()
        deadline = None if remaining is None or remaining > 1e7 else time.monotonic() + remaining
        return Call(priority=priority, deadline=deadline)

    @contextlib.contextmanager
    def _inversion_slot(self):
        if self._inversions >= self.settings.max_concurrent_inversions:
            raise OverCapacity(
                f"{self._inversions} inversions are running, the limit is "
                f"{self.settings.max_concurrent_inversions}"
            )
        self._inversions += 1
        metrics.INVERSIONS_IN_FLIGHT.inc()
        try:
            yield
        finally:
            self._inversions -= 1
            metrics.INVERSIONS_IN_FLIGHT.dec()

    def _inversion_args(
        self, req: pb.InvertRequest, prefix: str = ""
    ) -> tuple[GeneratorInfo, np.ndarray, dict]:
        gen = self.repository.generator(req.model, field=f"{prefix}model")
        if not gen.can_invert:
            raise InvalidInput(
                f"generator {gen.name!r} has no encoder/features/inversion_step: invert with "
                f"{self.repository.default_generator!r} and render with {gen.name!r}",
                field=f"{prefix}model",
            )
        resize = convert.enum(convert.RESIZE, req.resize, field=f"{prefix}resize")
        target = convert.image(req.image, gen, self.settings, resize=resize, field=f"{prefix}image")
        mask = convert.mask(req.mask, gen, self.settings, resize=resize, field=f"{prefix}mask")
        method = convert.enum(convert.METHODS, req.method, field=f"{prefix}method")
        steps = req.steps if req.HasField("steps") else inversion.DEFAULT_STEPS
        if not 0 <= steps <= self.settings.max_steps:
            raise InvalidInput(
                f"steps {steps} is outside [0, {self.settings.max_steps}]", field=f"{prefix}steps"
            )
        tol = (
            req.early_stop_tol
            if req.HasField("early_stop_tol")
            else inversion.DEFAULT_EARLY_STOP_TOL
        )
        if not math.isfinite(tol) or tol < 0:
            raise InvalidInput(
                f"early_stop_tol {tol} must be >= 0", field=f"{prefix}early_stop_tol"
            )
        window = (
            req.early_stop_window
            if req.HasField("early_stop_window")
            else inversion.DEFAULT_EARLY_STOP_WINDOW
        )
        if not 1 <= window <= 1000:
            raise InvalidInput(
                f"early_stop_window {window} is outside [1, 1000]",
                field=f"{prefix}early_stop_window",
            )
        lw = req.loss_weights
        weights = {
            k: (getattr(lw, k) if lw.HasField(k) else None) for k in ("pixel", "feature", "domain")
        }
        try:
            lr, _, space = inversion.resolve_options(
                method,
                learning_rate=req.learning_rate if req.HasField("learning_rate") else None,
                weights=weights,
                space=convert.enum(convert.SPACES, req.space, field=f"{prefix}space"),
            )
        except InvalidInput as exc:
            raise InvalidInput(exc.args[0], field=f"{prefix}{exc.field}") from None
        options = {
            "method": method,
            "steps": steps,
            "learning_rate": lr,
            "loss_weights": weights,
            "space": space,
            "mask": mask,
            "early_stop_tol": tol,
            "early_stop_window": window,
        }
        return gen, target, options

    def _edits(self, gen: GeneratorInfo, ops: Sequence[pb.EditOp]) -> list[editing.Edit]:
        edits = []
        for i, op in enumerate(ops):
            field = f"edits[{i}]"
            if not math.isfinite(op.strength):
                raise InvalidInput("strength must be finite", field=f"{field}.strength")
            layers = (
                op.layer_start if op.HasField("layer_start") else None,
                op.layer_stop if op.HasField("layer_stop") else None,
            )
            which = op.WhichOneof("direction")
            if which == "name":
                edits.append(
                    editing.named_edit(
                        gen,
                        op.name,
                        op.strength,
                        layers=layers,
                        condition_on=op.condition_on,
                        field=field,
                    )
                )
            elif which == "vector":
                vec = convert.tensor(op.vector, field=f"{field}.vector")
                edits.append(
                    editing.vector_edit(
                        gen,
                        vec,
                        op.strength,
                        layers=layers,
                        condition_on=op.condition_on,
                        field=field,
                    )
                )
            else:
                raise InvalidInput("set a direction name or a vector", field=field)
        return edits

    async def _render(
        self, gen: GeneratorInfo, ws: np.ndarray, noise_mode: int, call: Call, method: str
    ) -> np.ndarray:
        gain = convert.enum(convert.NOISE_GAIN, noise_mode, field="noise_mode")
        out = await generation.synthesis(self.backend, gen, ws, noise_gain=gain, call=call)
        metrics.IMAGES_GENERATED.labels(method).inc(len(out))
        return out

    # ------------------------------------------------------------------ RPCs
    @rpc("Generate")
    async def Generate(self, request: pb.GenerateRequest, context) -> pb.GenerateResponse:
        gen = self.repository.generator(request.model)
        n = len(request.seeds) + len(request.z)
        if n == 0:
            raise InvalidInput("give at least one seed or z", field="seeds")
        if n > self.settings.max_generate:
            raise InvalidInput(
                f"{n} images requested, the limit is {self.settings.max_generate}", field="seeds"
            )
        z = [
            generation.z_from_seed(s, gen.z_dim, field=f"seeds[{i}]")
            for i, s in enumerate(request.seeds)
        ]
        z += [
            generation.check_z(convert.tensor(t, field=f"z[{i}]"), gen, field=f"z[{i}]")
            for i, t in enumerate(request.z)
        ]
        psi, cutoff = convert.truncation(request.truncation, gen, field="truncation")
        fmt = convert.output_format(request.output)
        call = self._call(context)
        ws = await generation.seeds_to_ws(
            self.backend, gen, np.stack(z), psi=psi, cutoff=cutoff, call=call
        )
        imgs = await self._render(gen, ws, request.noise_mode, call, "Generate")
        seeds = list(request.seeds) + [-1] * len(request.z)
        return pb.GenerateResponse(
            model=gen.name,
            images=[
                pb.GeneratedImage(
                    seed=s,
                    image=convert.to_image(img, fmt),
                    ws=convert.to_tensor(w) if request.return_latents else None,
                )
                for s, img, w in zip(seeds, imgs, ws)
            ],
        )

    @rpc("Invert")
    async def Invert(self, request: pb.InvertRequest, context) -> AsyncIterator[pb.InvertResponse]:
        gen, target, options = self._inversion_args(request)
        fmt = convert.output_format(request.output)
        preview_every = max(request.preview_every, 0)
        progress_every = request.progress_every if request.progress_every > 0 else 1
        call = self._call(context)
        with self._inversion_slot():
            async for event in inversion.invert_steps(
                self.backend, gen, target, call=call, **options
            ):
                if isinstance(event, inversion.Progress):
                    preview = preview_every and event.step % preview_every == 0
                    if event.step % progress_every and not preview:
                        continue
                    yield pb.InvertResponse(
                        progress=pb.InvertProgress(
                            step=event.step,
                            total_steps=event.total_steps,
                            loss=event.loss,
                            terms=pb.LossTerms(
                                pixel=event.terms[0], feature=event.terms[1], domain=event.terms[2]
                            ),
                            learning_rate=event.learning_rate,
                            preview=convert.to_image(event.image, fmt) if preview else None,
                        )
                    )
                else:
                    metrics.INVERSIONS.labels(event.method, "ok").inc()
                    yield pb.InvertResponse(result=self._result(gen, event, fmt))

    @staticmethod
    def _result(
        gen: GeneratorInfo, r: inversion.Inversion, fmt: tuple[str, int]
    ) -> pb.InvertResult:
        q = r.quality
        return pb.InvertResult(
            ws=convert.to_tensor(r.ws),
            reconstruction=convert.to_image(r.reconstruction, fmt),
            target=convert.to_image(r.target, fmt),
            quality=pb.QualityFigures(
                psnr=q.psnr,
                ssim=q.ssim,
                perceptual_distance=q.perceptual_distance,
                in_domain_score=q.in_domain_score,
            ),
            loss=r.loss,
            terms=pb.LossTerms(pixel=r.terms[0], feature=r.terms[1], domain=r.terms[2]),
            steps=r.steps,
            early_stopped=r.early_stopped,
            method=r.method,
            space=r.space,
            seconds=r.seconds,
            model=gen.name,
        )

    @rpc("Edit")
    async def Edit(self, request: pb.EditRequest, context) -> pb.EditResponse:
        gen = self.repository.generator(request.model)
        call = self._call(context)
        fmt = convert.output_format(request.output)
        source = request.WhichOneof("source")
        if source == "invert":
            inv_gen, target, options = self._inversion_args(request.invert, prefix="invert.")
            edits = self._edits(gen, request.edits)  # validate before the expensive part
            with self._inversion_slot():
                result = await inversion.invert(self.backend, inv_gen, target, call=call, **options)
            ws = generation.check_latent(result.ws, gen, field="model")
        elif source == "latent":
            spec = convert.latent_source(request.latent, gen, field="latent")
            edits = self._edits(gen, request.edits)
            ws = (await generation.resolve_latents(self.backend, gen, [spec], call=call))[0]
        else:
            raise InvalidInput("set latent or invert", field="source")
        batch = np.stack(
            [editing.apply_edits(ws[None], edits)[0]] + ([ws] if request.include_original else [])
        )
        imgs = await self._render(gen, batch, request.noise_mode, call, "Edit")
        return pb.EditResponse(
            model=gen.name,
            image=convert.to_image(imgs[0], fmt),
            original=convert.to_image(imgs[1], fmt) if request.include_original else None,
            ws=convert.to_tensor(batch[0]) if request.return_latent else None,
            source_ws=convert.to_tensor(ws) if request.return_latent else None,
        )

    @rpc("ListDirections")
    async def ListDirections(
        self, request: pb.ListDirectionsRequest, context
    ) -> pb.ListDirectionsResponse:
        gen = self.repository.generator(request.model)
        return pb.ListDirectionsResponse(
            model=gen.name, directions=[convert.direction(d) for d in gen.directions.values()]
        )

    @rpc("StyleMix")
    async def StyleMix(self, request: pb.StyleMixRequest, context) -> pb.StyleMixResponse:
        gen = self.repository.generator(request.model)
        a = convert.latent_source(request.a, gen, field="a")
        b = convert.latent_source(request.b, gen, field="b")
        start = request.layer_start if request.HasField("layer_start") else 0
        stop = request.layer_stop if request.HasField("layer_stop") else gen.num_ws // 2
        if not 0 <= start < stop <= gen.num_ws:
            raise InvalidInput(
                f"layer range [{start}, {stop}) is not inside [0, {gen.num_ws})",
                field="layer_start",
            )
        fmt = convert.output_format(request.output)
        call = self._call(context)
        ws_a, ws_b = await generation.resolve_latents(self.backend, gen, [a, b], call=call)
        mixed = editing.style_mix(ws_a, ws_b, start=start, stop=stop)
        img = (await self._render(gen, mixed[None], request.noise_mode, call, "StyleMix"))[0]
        return pb.StyleMixResponse(
            model=gen.name,
            image=convert.to_image(img, fmt),
            ws=convert.to_tensor(mixed) if request.return_latent else None,
        )

    @rpc("Interpolate")
    async def Interpolate(self, request: pb.InterpolateRequest, context) -> pb.InterpolateResponse:
        gen = self.repository.generator(request.model)
        a = convert.latent_source(request.start, gen, field="start")
        b = convert.latent_source(request.end, gen, field="end")
        frames = request.frames or DEFAULT_FRAMES
        if not 2 <= frames <= self.settings.max_generate:
            raise InvalidInput(
                f"frames {frames} is outside [2, {self.settings.max_generate}]", field="frames"
            )
        mode = convert.enum(convert.INTERPOLATION, request.mode, field="mode")
        fmt = convert.output_format(request.output)
        call = self._call(context)
        ws_a, ws_b = await generation.resolve_latents(self.backend, gen, [a, b], call=call)
        path = editing.interpolate(ws_a, ws_b, frames, mode=mode, center=gen.w_avg)
        imgs = await self._render(gen, path, request.noise_mode, call, "Interpolate")
        return pb.InterpolateResponse(
            model=gen.name,
            frames=[convert.to_image(i, fmt) for i in imgs],
            ws=[convert.to_tensor(w) for w in path] if request.return_latents else [],
        )

    @rpc("ListModels")
    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        repo = self.repository
        return pb.ListModelsResponse(
            default_model=repo.default_generator,
            models=[
                convert.model_info(
                    g, is_default=g.name == repo.default_generator, backend=self.backend.name
                )
                for g in repo.generators.values()
            ],
        )

    @rpc("ModelInfo")
    async def ModelInfo(self, request: pb.ModelInfoRequest, context) -> pb.ModelInfoResponse:
        gen = self.repository.generator(request.model)
        return convert.model_info(
            gen, is_default=gen.name == self.repository.default_generator, backend=self.backend.name
        )

    @rpc("BatchGenerate")
    async def BatchGenerate(
        self, request: pb.BatchGenerateRequest, context
    ) -> AsyncIterator[pb.BatchGenerateChunk]:
        gen = self.repository.generator(request.model)
        seeds = self._batch_seeds(request)
        first = self._resume_index(request, seeds)
        chunk = request.chunk_size or DEFAULT_CHUNK
        if not 1 <= chunk <= self.settings.max_batch:
            raise InvalidInput(
                f"chunk_size {chunk} is outside [1, {self.settings.max_batch}]", field="chunk_size"
            )
        psi, cutoff = convert.truncation(request.truncation, gen, field="truncation")
        fmt = convert.output_format(request.output)
        call = self._call(context, Priority.BULK)
        for lo in range(first, len(seeds), chunk):
            part = [seeds[i] for i in range(lo, min(lo + chunk, len(seeds)))]
            z = np.stack([generation.z_from_seed(s, gen.z_dim, field="range") for s in part])
            ws = await generation.seeds_to_ws(
                self.backend, gen, z, psi=psi, cutoff=cutoff, call=call
            )
            imgs = await self._render(gen, ws, request.noise_mode, call, "BatchGenerate")
            done = lo + len(part)
            yield pb.BatchGenerateChunk(
                images=[
                    pb.GeneratedImage(
                        seed=s,
                        image=convert.to_image(img, fmt),
                        ws=convert.to_tensor(w) if request.return_latents else None,
                    )
                    for s, img, w in zip(part, imgs, ws)
                ],
                done=done,
                total=len(seeds),
                resume_token=_token(done, part[-1]),
            )

    def _batch_seeds(self, request: pb.BatchGenerateRequest) -> Sequence[int]:
        which = request.WhichOneof("seeds")
        if which == "range":
            seeds: Sequence[int] = range(request.range.start, request.range.stop)
            field = "range"
        elif which == "list":
            seeds, field = list(request.list.seeds), "list.seeds"
        else:
            raise InvalidInput("set range or list", field="seeds")
        if not seeds:
            raise InvalidInput("no seeds in the request", field=field)
        if len(seeds) > self.settings.max_batch_seeds:
            raise InvalidInput(
                f"{len(seeds)} seeds, the limit is {self.settings.max_batch_seeds}", field=field
            )
        if min(seeds) < 0 or max(seeds) > generation.MAX_SEED:
            raise InvalidInput(f"seeds must be in [0, {generation.MAX_SEED}]", field=field)
        return seeds

    @staticmethod
    def _resume_index(request: pb.BatchGenerateRequest, seeds: Sequence[int]) -> int:
        if request.resume_token:
            try:
                done_s, last_s = (
                    base64.urlsafe_b64decode(request.resume_token.encode()).decode().split(":")
                )
                done, last = int(done_s), int(last_s)
            except ValueError:
                raise InvalidInput("malformed resume token", field="resume_token") from None
            if not 0 < done <= len(seeds) or seeds[done - 1] != last:
                raise InvalidInput(
                    "resume token does not belong to these seeds", field="resume_token"
                )
            return done
        if request.HasField("start_after"):
            try:
                return seeds.index(request.start_after) + 1
            except ValueError:
                raise InvalidInput(
                    f"seed {request.start_after} is not in the request", field="start_after"
                ) from None
        return 0


def _token(done: int, last_seed: int) -> str:
    return base64.urlsafe_b64encode(f"{done}:{last_seed}".encode()).decode()
