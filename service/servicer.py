"""The StyleGate servicer: for each RPC, parse the request into a plan
(service/requests.py), run it (service/workflows.py, service/inversion.py), convert the
result (service/responses.py). Errors and metrics: ``@rpc`` (service/rpc.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator

import grpc

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc
from stylegate.service import admission, inversion, requests, responses, workflows
from stylegate.service.admission import Admission, Kind
from stylegate.service.backends.base import Backend, Call, Priority
from stylegate.service.errors import FailedPrecondition, StylegateError
from stylegate.service.metadata import RepositoryInfo, load_repository
from stylegate.service.rpc import InFlight, rpc
from stylegate.service.settings import Settings

log = logging.getLogger(__name__)


def call_of(context: grpc.aio.ServicerContext, priority: Priority = Priority.INTERACTIVE) -> Call:
    """The request's priority and its deadline (absent when the client set none)."""
    remaining = context.time_remaining()
    deadline = None if remaining is None or remaining > 1e7 else time.monotonic() + remaining
    return Call(priority=priority, deadline=deadline)


def sized(servicer: StyleGateServicer, request) -> Kind:
    """Generate / Interpolate: interactive, or large past ``interactive_max_images``."""
    large = admission.images_asked(request) > servicer.settings.interactive_max_images
    return Kind.LARGE if large else Kind.INTERACTIVE


def edit_kind(servicer: StyleGateServicer, request: pb.EditRequest) -> Kind:
    """An Edit of an image is an inversion first; of a latent, interactive."""
    return Kind.INVERSION if request.WhichOneof("source") == "invert" else Kind.INTERACTIVE


def priority_of(kind: Kind) -> Priority:
    """Bulk kinds run after waiting interactive work in the backend."""
    return Priority.BULK if kind in admission.BULK_KINDS else Priority.INTERACTIVE


class StyleGateServicer(pb_grpc.StyleGateServicer):
    def __init__(self, settings: Settings, repository: RepositoryInfo, backend: Backend):
        self.settings = settings
        self.repository = repository
        self.backend = backend
        self.in_flight = InFlight(on_idle=backend.release_memory)
        self.admission = Admission(settings)
        self.inversion_slots = inversion.Slots(settings.max_concurrent_inversions)
        admission.tune_allocator()  # large buffers go back to the OS when freed
        self._reloading: asyncio.Lock | None = None

    async def reload(self) -> RepositoryInfo:
        """Re-read the model repository and have the backend serve it; on any problem keep
        serving the old one and raise FailedPrecondition (the Reload RPC and SIGHUP)."""
        self._reloading = self._reloading or asyncio.Lock()
        async with self._reloading:
            try:
                repository = load_repository(self.repository.root)
                await self.backend.reload(repository)
            except StylegateError as exc:
                log.warning("reload failed, serving the previous repository: %s", exc)
                raise FailedPrecondition(
                    f"reload failed, still serving the previous repository: {exc}"
                ) from None
            self.repository = repository
            log.info("model repository reloaded", extra={"models": sorted(repository.generators)})
            return repository

    # ------------------------------------------------------------------ RPCs
    @rpc("Generate", kind=sized)
    async def Generate(self, request: pb.GenerateRequest, context) -> pb.GenerateResponse:
        plan = requests.parse_generate(request, self.repository, self.settings)
        call = call_of(context, priority_of(sized(self, request)))
        ws, imgs = await workflows.generate(
            self.backend, plan, call=call, chunk=self.settings.bulk_max_batch
        )
        build = functools.partial(
            responses.generated_images,
            plan.seeds,
            imgs,
            ws,
            plan.output,
            with_latents=plan.return_latents,
        )
        return pb.GenerateResponse(
            model=plan.gen.name, images=await responses.built(len(plan.seeds), build)
        )

    @rpc("Invert", kind=Kind.INVERSION)
    async def Invert(self, request: pb.InvertRequest, context) -> AsyncIterator[pb.InvertResponse]:
        plan = await requests.parse_off_loop(
            requests.parse_invert, request, self.repository, self.settings
        )
        events = inversion.invert_steps(
            self.backend, plan.gen, plan.target, plan.options, call=call_of(context, Priority.BULK)
        )
        with self.inversion_slots.take():
            async for event in events:
                if isinstance(event, inversion.Inversion):
                    yield responses.invert_result(plan.gen, event, plan.output)
                elif plan.reports(event.step):
                    yield responses.invert_progress(
                        event, plan.output, preview=plan.previews(event.step)
                    )

    @rpc("Edit", kind=edit_kind)
    async def Edit(self, request: pb.EditRequest, context) -> pb.EditResponse:
        plan = await requests.parse_off_loop(
            requests.parse_edit, request, self.repository, self.settings
        )
        out = await workflows.edit(
            self.backend,
            plan,
            call=call_of(context, priority_of(edit_kind(self, request))),
            slots=self.inversion_slots,
        )
        return pb.EditResponse(
            model=plan.gen.name,
            image=responses.image(out.image, plan.output),
            original=responses.image(out.original, plan.output) if plan.include_original else None,
            ws=responses.tensor(out.ws) if plan.return_latent else None,
            source_ws=responses.tensor(out.source_ws) if plan.return_latent else None,
        )

    @rpc("ListDirections")
    async def ListDirections(
        self, request: pb.ListDirectionsRequest, context
    ) -> pb.ListDirectionsResponse:
        gen = self.repository.generator(request.model)
        return pb.ListDirectionsResponse(
            model=gen.name, directions=[responses.direction(d) for d in gen.directions.values()]
        )

    @rpc("StyleMix", kind=Kind.INTERACTIVE)
    async def StyleMix(self, request: pb.StyleMixRequest, context) -> pb.StyleMixResponse:
        plan = requests.parse_style_mix(request, self.repository, self.settings)
        mixed, img = await workflows.style_mix(self.backend, plan, call=call_of(context))
        return pb.StyleMixResponse(
            model=plan.gen.name,
            image=responses.image(img, plan.output),
            ws=responses.tensor(mixed) if plan.return_latent else None,
        )

    @rpc("Interpolate", kind=sized)
    async def Interpolate(self, request: pb.InterpolateRequest, context) -> pb.InterpolateResponse:
        plan = requests.parse_interpolate(request, self.repository, self.settings)
        call = call_of(context, priority_of(sized(self, request)))
        path, imgs = await workflows.interpolate(
            self.backend, plan, call=call, chunk=self.settings.bulk_max_batch
        )
        return pb.InterpolateResponse(
            model=plan.gen.name,
            frames=await responses.built(
                len(imgs), functools.partial(responses.frames, imgs, plan.output)
            ),
            ws=[responses.tensor(w) for w in path] if plan.return_latents else [],
        )

    @rpc("ListModels")
    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return responses.list_models(self.repository, backend=self.backend.name)

    @rpc("ModelInfo")
    async def ModelInfo(self, request: pb.ModelInfoRequest, context) -> pb.ModelInfoResponse:
        gen = self.repository.generator(request.model)
        return responses.model_info(
            gen, is_default=gen.name == self.repository.default_generator, backend=self.backend.name
        )

    @rpc("BatchGenerate", kind=Kind.BATCH)
    async def BatchGenerate(
        self, request: pb.BatchGenerateRequest, context
    ) -> AsyncIterator[pb.BatchGenerateChunk]:
        plan = requests.parse_batch_generate(request, self.repository, self.settings)
        call = call_of(context, Priority.BULK)
        chunks = workflows.batch_generate(
            self.backend, plan, call=call, run_max=self.settings.bulk_max_batch
        )
        async for chunk in chunks:
            build = functools.partial(
                responses.generated_images,
                chunk.seeds,
                chunk.images,
                chunk.ws,
                plan.output,
                with_latents=plan.return_latents,
            )
            yield pb.BatchGenerateChunk(
                images=await responses.built(len(chunk.seeds), build),
                done=chunk.done,
                total=len(plan.seeds),
                resume_token=requests.resume_token(chunk.done, chunk.seeds[-1]),
            )

    @rpc("Reload")
    async def Reload(self, request: pb.ReloadRequest, context) -> pb.ReloadResponse:
        repository = await self.reload()
        return pb.ReloadResponse(
            models=list(repository.generators), default_model=repository.default_generator
        )
