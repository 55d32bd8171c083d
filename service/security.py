"""Transport security and access control of the gateway.

- TLS / mutual TLS on the gateway's port: certificate, key and client CA are PEM files,
  re-read at the next handshake after they change (a renewed certificate, a rotated
  Kubernetes Secret) without a restart.
- TLS / mutual TLS from the gateway to Triton: credentials read when a channel is made.
- Authorization per RPC from an access file: each line names a client, one credential
  (a bearer token, or the identity of its mTLS client certificate) and what it may call.
  Health checks are never authorized (kubelets and load balancers probe them).

Secrets are never logged and never echoed in a status message.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import hmac
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import grpc

from stylegate.service import metrics

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/stylegate.v1.StyleGate/"
HEALTH_PREFIX = "/grpc.health.v1.Health/"

# What a grant in the access file allows. Besides these groups a line may grant single
# RPCs by name (``Invert``) or everything (``*``). Reads come with every group, so a client
# can discover the models it may use.
READ_RPCS = frozenset({"ListModels", "ModelInfo", "ListDirections"})
GROUPS: dict[str, frozenset[str]] = {
    "interactive": READ_RPCS | {"Generate", "Edit", "StyleMix", "Interpolate", "Invert"},
    "bulk": READ_RPCS | {"BatchGenerate"},
    "admin": READ_RPCS | {"Reload"},
}
ALL_RPCS = frozenset().union(*GROUPS.values())
REFRESH_S = 1.0  # how often a request looks at the access file's modification time


class SecurityConfigError(ValueError):
    """A certificate, key or access file that cannot be used (one line, no secrets)."""


# --- files --------------------------------------------------------------------------------


PEM_MARKERS = {"certificate": b"CERTIFICATE-----", "private key": b"PRIVATE KEY-----"}


def read_pem(path: str | os.PathLike, what: str, kind: str = "certificate") -> bytes:
    """The bytes of a PEM file holding a ``kind`` (certificate, private key), or
    SecurityConfigError naming ``what`` and the path."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SecurityConfigError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise SecurityConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if PEM_MARKERS[kind] not in data:
        raise SecurityConfigError(f"{what} {path}: is not a PEM {kind}")
    return data


def _stamp(paths: Iterable[str]) -> tuple:
    """What changes when a file is replaced (also through a Kubernetes Secret's symlinks)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


# --- TLS: the gateway's port --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerTLS:
    cert: str  # PEM certificate chain
    key: str  # PEM private key of cert
    client_ca: str = ""  # PEM CA bundle; set: clients must present a certificate it signed

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca)

    def _paths(self) -> list[str]:
        return [p for p in (self.cert, self.key, self.client_ca) if p]

    def configuration(self):
        """A grpc server certificate configuration read from the files now."""
        cert = read_pem(self.cert, "TLS certificate", "certificate")
        key = read_pem(self.key, "TLS key", "private key")
        ca = read_pem(self.client_ca, "client CA", "certificate") if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials whose files are looked at on every handshake and re-read
        when they changed; a change that cannot be read (half-written) keeps the old ones."""
        initial = self.configuration()
        lock = threading.Lock()
        seen = [_stamp(self._paths())]

        def fetch():
            stamp = _stamp(self._paths())
            with lock:
                if stamp == seen[0]:
                    return None
                try:
                    config = self.configuration()
                except SecurityConfigError as exc:
                    log.warning("TLS files changed but cannot be used yet: %s", exc)
                    return None
                seen[0] = stamp
            log.info("TLS certificate reloaded", extra={"cert": self.cert})
            return config

        return grpc.dynamic_ssl_server_credentials(
            initial, fetch, require_client_authentication=self.mutual
        )


def server_tls(cert: str, key: str, client_ca: str = "") -> ServerTLS | None:
    """The gateway's TLS from its settings; None for plaintext."""
    if not cert and not key:
        if client_ca:
            raise SecurityConfigError("a client CA (mutual TLS) needs a TLS certificate and key")
        return None
    if not (cert and key):
        raise SecurityConfigError("TLS needs both a certificate and its key")
    tls = ServerTLS(cert, key, client_ca)
    tls.configuration()  # fail at start-up, in one line, on a missing or wrong file
    return tls


# --- TLS: channels to the gateway or to Triton ----------------------------------------------


def channel_credentials(
    ca: str | None = None,  # PEM CA bundle of the server; None: the system's roots
    cert: str | None = None,  # PEM client certificate (mutual TLS)
    key: str | None = None,  # PEM key of cert
    *,
    what: str = "",  # prefix of error messages ("Triton ")
) -> grpc.ChannelCredentials:
    if bool(cert) != bool(key):
        raise SecurityConfigError(f"a {what}client certificate needs its key, and the reverse")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, f"{what}TLS CA", "certificate") if ca else None,
        private_key=read_pem(key, f"{what}TLS client key", "private key") if key else None,
        certificate_chain=(
            read_pem(cert, f"{what}TLS client certificate", "certificate") if cert else None
        ),
    )


def triton_credentials(
    enabled: bool, ca: str = "", cert: str = "", key: str = ""
) -> Callable[[], grpc.ChannelCredentials] | None:
    """Credentials for the Triton channel, read afresh each time a channel is made (so a
    reconnect picks up rotated files); None for plaintext. Checked once now."""
    if not (enabled or ca or cert or key):
        return None

    def make() -> grpc.ChannelCredentials:
        return channel_credentials(ca or None, cert or None, key or None, what="Triton ")

    make()
    return make


# --- authorization ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Principal:
    name: str  # the client's name in the access file (never the token)
    allowed: frozenset[str]  # RPC names

    def may_call(self, rpc: str) -> bool:
        return rpc in self.allowed


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class AccessPolicy:
    """``<name> <credential> <grant>[,<grant>...]`` per line, ``#`` comments. A credential is
    ``token:<token>``, ``token-sha256:<hex digest of the token>`` (the file then holds no
    secret) or ``cert:<identity>`` (the common name or a subject alternative name of an
    mTLS client certificate). A grant is a group (interactive, bulk, admin), an RPC name,
    or ``*``."""

    tokens: Mapping[str, Principal]  # sha256 hex of the token -> principal
    certs: Mapping[str, Principal]  # certificate identity -> principal

    @classmethod
    def parse(cls, text: str, source: str = "access file") -> AccessPolicy:
        tokens: dict[str, Principal] = {}
        certs: dict[str, Principal] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source} line {number}"
            words = line.split()
            if len(words) != 3:
                raise SecurityConfigError(f"{where}: expected NAME CREDENTIAL GRANTS")
            name, credential, grants = words
            kind, _, value = credential.partition(":")
            if not value:
                raise SecurityConfigError(f"{where}: the credential has no value")
            principal = Principal(name, _grants(grants, where))
            if kind == "token":
                key, table = _token_digest(value), tokens
            elif kind == "token-sha256":
                key, table = value.lower(), tokens
                if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
                    raise SecurityConfigError(f"{where}: token-sha256 needs 64 hex digits")
            elif kind == "cert":
                key, table = value, certs
            else:
                raise SecurityConfigError(
                    f"{where}: credential kind {kind[:20]!r} is not token, token-sha256 or cert"
                )
            if key in table:
                raise SecurityConfigError(f"{where}: the same credential is given twice")
            table[key] = principal
        return cls(tokens, certs)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AccessPolicy:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise SecurityConfigError(f"access file {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecurityConfigError(f"access file {path}: cannot read it ({exc})") from None
        return cls.parse(text, f"access file {path}")

    def by_token(self, token: str) -> Principal | None:
        digest = _token_digest(token)
        for known, principal in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None

    def by_certificate(self, identities: Iterable[str]) -> Principal | None:
        for identity in identities:
            if identity in self.certs:
                return self.certs[identity]
        return None


def _grants(spec: str, where: str) -> frozenset[str]:
    allowed: set[str] = set()
    for grant in filter(None, spec.split(",")):
        if grant == "*":
            allowed |= ALL_RPCS
        elif grant in GROUPS:
            allowed |= GROUPS[grant]
        elif grant in ALL_RPCS:
            allowed.add(grant)
        else:
            raise SecurityConfigError(
                f"{where}: grant {grant[:40]!r} is no group ({', '.join(GROUPS)}), RPC or *"
            )
    if not allowed:
        raise SecurityConfigError(f"{where}: no grants")
    return frozenset(allowed)


class AccessFile:
    """The access policy of a file, re-read when it changes (looked at most every
    ``REFRESH_S`` seconds, and at once on ``reload()``, e.g. SIGHUP). A changed file that
    does not parse is logged and the last good policy stays."""

    def __init__(self, path: str):
        self.path = path
        self.policy = AccessPolicy.load(path)
        self._stamp = _stamp([path])
        self._checked = time.monotonic()

    def current(self) -> AccessPolicy:
        if time.monotonic() - self._checked >= REFRESH_S:
            self.reload()
        return self.policy

    def reload(self) -> bool:
        self._checked = time.monotonic()
        stamp = _stamp([self.path])
        if stamp == self._stamp:
            return False
        try:
            self.policy = AccessPolicy.load(self.path)
        except SecurityConfigError as exc:
            log.error("access file not reloaded, the previous one stays: %s", exc)
            return False
        self._stamp = stamp
        log.info("access file reloaded", extra={"path": self.path})
        return True


# --- who is calling -----------------------------------------------------------------------

_IDENTITY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "stylegate_client_identity", default=None
)


def certificate_identities(context: grpc.aio.ServicerContext) -> list[str]:
    """Common name and subject alternative names of the verified client certificate
    (mutual TLS); empty without one."""
    try:
        auth = context.auth_context() or {}
    except Exception:  # noqa: BLE001 - no security context on a plaintext call
        return []
    names = [*auth.get("x509_common_name", []), *auth.get("x509_subject_alternative_name", [])]
    return [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]


def peer_host(peer: str) -> str:
    """'ipv4:10.0.0.7:51234' -> '10.0.0.7'; 'ipv6:[::1]:5' -> '::1'; others unchanged."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def authenticated_identity() -> str | None:
    """The current RPC's caller as authenticated: its name in the access file, else the
    common name of its client certificate; None for an anonymous caller."""
    return _IDENTITY.get()


def client_identity(context: grpc.aio.ServicerContext) -> str:
    """Who is calling, for per-client limits: ``authenticated_identity()``, else the
    caller's network address."""
    return authenticated_identity() or peer_host(context.peer() or "unknown")


def _bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            value = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = value.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _rpc_name(method: str) -> str:
    return method.rsplit("/", 1)[-1]


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Sets the caller's identity for ``client_identity`` and, with an access file, lets
    through only what the caller was granted: no or a wrong credential is
    UNAUTHENTICATED, a known caller without the grant PERMISSION_DENIED. Health checks
    always pass; reflection needs any known caller."""

    def __init__(self, access: AccessFile | None):
        self.access = access

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        return _wrapped(handler, lambda context: self._admit(details.method, context))

    async def _admit(self, method: str, context: grpc.aio.ServicerContext) -> None:
        certificate = certificate_identities(context)
        if self.access is None:
            _IDENTITY.set(certificate[0] if certificate else None)
            return
        policy = self.access.current()
        rpc = _rpc_name(method)
        token = _bearer_token(context.invocation_metadata())
        if token is not None:
            principal = policy.by_token(token) if token else None
            if principal is None:
                await _refuse(
                    context,
                    rpc,
                    grpc.StatusCode.UNAUTHENTICATED,
                    "invalid bearer token"
                    if token
                    else "the authorization header is not 'Bearer <token>'",
                )
        else:
            principal = policy.by_certificate(certificate)
            if principal is None:
                if certificate:
                    await _refuse(
                        context,
                        rpc,
                        grpc.StatusCode.PERMISSION_DENIED,
                        f"client certificate {certificate[0][:64]!r} is not in the access file",
                    )
                await _refuse(
                    context,
                    rpc,
                    grpc.StatusCode.UNAUTHENTICATED,
                    "this gateway needs a bearer token (authorization: Bearer <token>) "
                    "or a client certificate",
                )
        _IDENTITY.set(principal.name)
        if method.startswith(SERVICE_PREFIX) and not principal.may_call(rpc):
            await _refuse(
                context,
                rpc,
                grpc.StatusCode.PERMISSION_DENIED,
                f"client {principal.name!r} is not granted {rpc}",
            )


async def _refuse(
    context: grpc.aio.ServicerContext, rpc: str, code: grpc.StatusCode, message: str
) -> None:
    log.info("%s refused: %s %s", rpc, code.name, message, extra={"rpc": rpc, "code": code.name})
    metrics.RPC_REQUESTS.labels(rpc, code.name).inc()
    await context.abort(code, message)


def _wrapped(handler: grpc.RpcMethodHandler, admit) -> grpc.RpcMethodHandler:
    """The same handler, ``await admit(context)`` first (it aborts to refuse)."""

    async def unary(request, context):
        await admit(context)
        return await behavior(request, context)

    async def streaming(request, context):
        await admit(context)
        result = behavior(request, context)
        if inspect.isasyncgen(result):
            async for message in result:
                yield message
        else:
            await result

    kinds = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for attribute, make in kinds.items():
        behavior = getattr(handler, attribute)
        if behavior is not None:
            wrapper = streaming if handler.response_streaming else unary
            return make(
                wrapper,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler
