"""service/rpc.py: the one mapping from domain errors to gRPC status codes."""

from __future__ import annotations

import grpc

from stylegate.service.errors import (
    FailedPrecondition,
    GatewayError,
    InvalidInput,
    NotFound,
)
from stylegate.service.rpc import status_of


def test_status_codes_name_the_field_and_hide_gateway_mistakes():
    assert status_of(InvalidInput("bad", field="ws")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ws: bad",
    )
    assert status_of(NotFound("nope", field="model"))[0] == grpc.StatusCode.NOT_FOUND
    code, message = status_of(FailedPrecondition("train one", field="method"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and message == "method: train one"
    # a tensor the gateway built wrongly is not the client's fault: INTERNAL, no details
    assert status_of(GatewayError("input 'ws' has shape (1, 2)")) == (
        grpc.StatusCode.INTERNAL,
        "",
    )
    assert status_of(RuntimeError("boom")) == (grpc.StatusCode.INTERNAL, "")
