"""Control messages: the versioned JSON the gateway and an agent exchange on the control stream.

Each CONTROL record carries one compact JSON object whose ``"type"`` names the message. The
decoder is strict, because its input comes from the other end of a tunnel: anything but a
well-formed message of a known type raises TunnelProtocolError, never another exception.
Unknown fields inside a known message are ignored, so a peer may add optional fields without
a new schema version. Pure: bytes in, values out, no I/O. docs/tunnel.md has the wire format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NoReturn, TypeAlias

from kubegate.domain.access import GrantSpec, Role, ServiceAccountSpec, dns1123_label_problem
from kubegate.errors import TunnelProtocolError

SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
"""Control schema versions this build speaks."""

INCOMPATIBLE_VERSION = "incompatible_version"
"""Failure code: the peers share no control schema version."""
PROTOCOL_ERROR = "protocol_error"
"""Failure code: the peer sent something the wire format does not allow."""

MAX_REVISION = 2**63 - 1
"""Revisions fit a signed 64-bit integer (a database BIGINT)."""

_ROLES = frozenset(role.value for role in Role)
_ROLE_LIST = ", ".join(role.value for role in Role)
_SURROGATE = re.compile("[\ud800-\udfff]")
_HELLO_ROLES: dict[str, Literal["server", "agent"]] = {"server": "server", "agent": "agent"}
_STATUSES: dict[str, Literal["applied", "failed"]] = {"applied": "applied", "failed": "failed"}


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message each side sends: who it is and which schema versions it speaks."""

    role: Literal["server", "agent"]
    kubegate_version: str
    schema_versions: tuple[int, ...]
    # Free-form identity, e.g. {"cluster_name": "prod", "kubernetes_version": "v1.36.3"};
    # kept read-only so a Hello stays a value (excluded from the hash: a mapping has none).
    info: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))


@dataclass(frozen=True, slots=True)
class Desired:
    """The gateway's complete desired RBAC state for the cluster, at one revision: the
    people's grants and the ServiceAccounts kubegate manages (an optional field on the wire:
    an older server sends none, an older agent ignores them)."""

    revision: int
    grants: tuple[GrantSpec, ...]
    service_accounts: tuple[ServiceAccountSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class GrantResult:
    """How reconciling one grant went."""

    grant_id: str
    status: Literal["applied", "failed"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ServiceAccountResult:
    """How reconciling one ServiceAccount (the account and its binding) went."""

    service_account_id: str
    status: Literal["applied", "failed"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Results:
    """The agent's outcome for every grant (and ServiceAccount) of one revision, after a
    reconcile pass."""

    revision: int
    results: tuple[GrantResult, ...]
    service_accounts: tuple[ServiceAccountResult, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """Server → agent: mint a bound token (the TokenRequest API) for a ServiceAccount that
    kubegate manages. With ``break_glass`` the agent first makes sure the account exists and
    is bound to ``cluster-admin`` (the admin kubeconfig's account). Schema 2 and later."""

    request_id: str
    namespace: str
    name: str
    expiration_seconds: int
    break_glass: bool = False


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """Agent → server: the token of one :class:`TokenRequest`, or why there is none."""

    request_id: str
    token: str = field(default="", repr=False)
    expires_at: str = ""  # RFC 3339, as the apiserver answered it
    error: str = ""


@dataclass(frozen=True, slots=True)
class Failure:
    """``"error"`` on the wire: the sender is about to close; ``code`` is machine-readable."""

    code: str
    message: str


ControlMessage: TypeAlias = Hello | Desired | Results | Failure | TokenRequest | TokenAnswer

SERVICE_ACCOUNTS_SCHEMA = 2
"""The first schema version with ``service_accounts`` in ``desired`` and ``results``, and
the ``token_request`` and ``token`` messages: a server sends them only to an agent it
negotiated this version or later with."""


def negotiate(ours: tuple[int, ...], theirs: tuple[int, ...]) -> int | None:
    """The highest schema version both sides speak, or None if they share none."""
    common = set(ours).intersection(theirs)
    return max(common) if common else None


# --- encoding -------------------------------------------------------------------------------


def encode_message(message: ControlMessage) -> bytes:
    """Compact JSON (ASCII, so valid UTF-8) with ``"type"`` first."""
    obj: dict[str, object]
    match message:
        case Hello():
            obj = {
                "type": "hello",
                "role": message.role,
                "kubegate_version": message.kubegate_version,
                "schema_versions": list(message.schema_versions),
                "info": dict(message.info),
            }
        case Desired():
            obj = {
                "type": "desired",
                "revision": message.revision,
                "grants": [
                    {
                        "grant_id": grant.grant_id,
                        "email": grant.email,
                        "role": grant.role,
                        "namespace": grant.namespace,
                    }
                    for grant in message.grants
                ],
            }
            if message.service_accounts:  # absent when empty: what older agents always saw
                obj["service_accounts"] = [
                    {
                        "service_account_id": account.service_account_id,
                        "namespace": account.namespace,
                        "name": account.name,
                        "role": account.role,
                        "scope": "cluster" if account.cluster_wide else "namespace",
                    }
                    for account in message.service_accounts
                ]
        case Results():
            obj = {
                "type": "results",
                "revision": message.revision,
                "results": [
                    {"grant_id": result.grant_id, "status": result.status, "detail": result.detail}
                    for result in message.results
                ],
            }
            if message.service_accounts:
                obj["service_accounts"] = [
                    {
                        "service_account_id": result.service_account_id,
                        "status": result.status,
                        "detail": result.detail,
                    }
                    for result in message.service_accounts
                ]
        case Failure():
            obj = {"type": "error", "code": message.code, "message": message.message}
        case TokenRequest():
            obj = {
                "type": "token_request",
                "request_id": message.request_id,
                "namespace": message.namespace,
                "name": message.name,
                "expiration_seconds": message.expiration_seconds,
                "break_glass": message.break_glass,
            }
        case TokenAnswer():
            obj = {
                "type": "token",
                "request_id": message.request_id,
                "token": message.token,
                "expires_at": message.expires_at,
                "error": message.error,
            }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# --- decoding -------------------------------------------------------------------------------


def _reject(message: str) -> NoReturn:
    raise TunnelProtocolError(message)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case _:
            return "an object"


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {_shown(key)}")
            seen.add(key)
    return obj


def _field(obj: dict[str, object], where: str, name: str) -> object:
    try:
        return obj[name]
    except KeyError:
        _reject(f"{where} is missing {name!r}")


def _string(obj: dict[str, object], where: str, name: str, *, empty: bool = False) -> str:
    value = _field(obj, where, name)
    if not isinstance(value, str):
        _reject(f"{where}.{name} must be a string, not {_type_name(value)}")
    if not empty and not value:
        _reject(f"{where}.{name} must not be empty")
    if _SURROGATE.search(value):
        _reject(f"{where}.{name} contains an unpaired surrogate")
    return value


def _integer(obj: dict[str, object], where: str, name: str, *, minimum: int) -> int:
    value = _field(obj, where, name)
    if isinstance(value, bool) or not isinstance(value, int):
        _reject(f"{where}.{name} must be an integer, not {_type_name(value)}")
    if not minimum <= value <= MAX_REVISION:
        _reject(f"{where}.{name} must be between {minimum} and {MAX_REVISION}; got {value}")
    return value


def _objects(obj: dict[str, object], where: str, name: str) -> list[dict[str, object]]:
    value = _field(obj, where, name)
    if not isinstance(value, list):
        _reject(f"{where}.{name} must be an array, not {_type_name(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            _reject(f"{where}.{name}[{index}] must be an object, not {_type_name(item)}")
    return value


def _decode_hello(obj: dict[str, object]) -> Hello:
    role = _string(obj, "hello", "role")
    if role not in _HELLO_ROLES:
        _reject(f"hello.role must be 'server' or 'agent'; got {_shown(role)}")
    versions = _field(obj, "hello", "schema_versions")
    if not isinstance(versions, list) or not versions:
        _reject(f"hello.schema_versions must be a non-empty array, not {_type_name(versions)}")
    for version in versions:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            _reject(f"hello.schema_versions must hold positive integers; got {_shown(version)}")
    raw_info = _field(obj, "hello", "info")
    if not isinstance(raw_info, dict):
        _reject(f"hello.info must be an object, not {_type_name(raw_info)}")
    info: dict[str, str] = {}
    for key, value in raw_info.items():
        if not isinstance(value, str):
            _reject(f"hello.info[{_shown(key)}] must be a string, not {_type_name(value)}")
        if _SURROGATE.search(key) or _SURROGATE.search(value):
            _reject(f"hello.info[{_shown(key)}] contains an unpaired surrogate")
        info[key] = value
    return Hello(
        role=_HELLO_ROLES[role],
        kubegate_version=_string(obj, "hello", "kubegate_version"),
        schema_versions=tuple(versions),
        info=info,
    )


def _decode_grant(obj: dict[str, object], where: str) -> GrantSpec:
    role = _string(obj, where, "role")
    if role not in _ROLES:
        _reject(f"{where}.role must be one of {_ROLE_LIST}; got {_shown(role)}")
    namespace = _field(obj, where, "namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            _reject(f"{where}.namespace must be a string or null, not {_type_name(namespace)}")
        problem = dns1123_label_problem(namespace)
        if problem is not None:
            _reject(f"{where}.namespace {_shown(namespace)} {problem}")
    return GrantSpec(
        grant_id=_string(obj, where, "grant_id"),
        email=_string(obj, where, "email"),
        role=Role(role),
        namespace=namespace,
    )


def _label(obj: dict[str, object], where: str, name: str) -> str:
    value = _string(obj, where, name)
    problem = dns1123_label_problem(value)
    if problem is not None:
        _reject(f"{where}.{name} {_shown(value)} {problem}")
    return value


def _decode_service_account(obj: dict[str, object], where: str) -> ServiceAccountSpec:
    role = _string(obj, where, "role")
    if role not in _ROLES:
        _reject(f"{where}.role must be one of {_ROLE_LIST}; got {_shown(role)}")
    scope = _string(obj, where, "scope")
    if scope not in ("cluster", "namespace"):
        _reject(f"{where}.scope must be 'cluster' or 'namespace'; got {_shown(scope)}")
    return ServiceAccountSpec(
        service_account_id=_string(obj, where, "service_account_id"),
        namespace=_label(obj, where, "namespace"),
        name=_label(obj, where, "name"),
        role=Role(role),
        cluster_wide=scope == "cluster",
    )


def _optional_objects(obj: dict[str, object], where: str, name: str) -> list[dict[str, object]]:
    """An array field a newer peer adds: absent means empty."""
    return _objects(obj, where, name) if name in obj else []


def _decode_desired(obj: dict[str, object]) -> Desired:
    revision = _integer(obj, "desired", "revision", minimum=0)
    grants = tuple(
        _decode_grant(item, f"desired.grants[{index}]")
        for index, item in enumerate(_objects(obj, "desired", "grants"))
    )
    if len({grant.grant_id for grant in grants}) != len(grants):
        _reject("desired.grants has two grants with the same grant_id")
    accounts = tuple(
        _decode_service_account(item, f"desired.service_accounts[{index}]")
        for index, item in enumerate(_optional_objects(obj, "desired", "service_accounts"))
    )
    if len({a.service_account_id for a in accounts}) != len(accounts):
        _reject("desired.service_accounts has two with the same service_account_id")
    if len({(a.namespace, a.name) for a in accounts}) != len(accounts):
        _reject("desired.service_accounts names one ServiceAccount twice")
    return Desired(revision=revision, grants=grants, service_accounts=accounts)


def _decode_result(obj: dict[str, object], where: str) -> GrantResult:
    status = _status(obj, where)
    detail = _string(obj, where, "detail", empty=True) if "detail" in obj else ""
    return GrantResult(grant_id=_string(obj, where, "grant_id"), status=status, detail=detail)


def _status(obj: dict[str, object], where: str) -> Literal["applied", "failed"]:
    status = _string(obj, where, "status")
    if status not in _STATUSES:
        _reject(f"{where}.status must be 'applied' or 'failed'; got {_shown(status)}")
    return _STATUSES[status]


def _decode_account_result(obj: dict[str, object], where: str) -> ServiceAccountResult:
    return ServiceAccountResult(
        service_account_id=_string(obj, where, "service_account_id"),
        status=_status(obj, where),
        detail=_string(obj, where, "detail", empty=True) if "detail" in obj else "",
    )


def _decode_results(obj: dict[str, object]) -> Results:
    revision = _integer(obj, "results", "revision", minimum=0)
    results = tuple(
        _decode_result(item, f"results.results[{index}]")
        for index, item in enumerate(_objects(obj, "results", "results"))
    )
    accounts = tuple(
        _decode_account_result(item, f"results.service_accounts[{index}]")
        for index, item in enumerate(_optional_objects(obj, "results", "service_accounts"))
    )
    return Results(revision=revision, results=results, service_accounts=accounts)


def _boolean(obj: dict[str, object], where: str, name: str) -> bool:
    value = _field(obj, where, name)
    if not isinstance(value, bool):
        _reject(f"{where}.{name} must be a boolean, not {_type_name(value)}")
    return value


def _decode_token_request(obj: dict[str, object]) -> TokenRequest:
    where = "token_request"
    return TokenRequest(
        request_id=_string(obj, where, "request_id"),
        namespace=_label(obj, where, "namespace"),
        name=_label(obj, where, "name"),
        expiration_seconds=_integer(obj, where, "expiration_seconds", minimum=1),
        break_glass=_boolean(obj, where, "break_glass"),
    )


def _decode_token_answer(obj: dict[str, object]) -> TokenAnswer:
    where = "token"
    answer = TokenAnswer(
        request_id=_string(obj, where, "request_id"),
        token=_string(obj, where, "token", empty=True),
        expires_at=_string(obj, where, "expires_at", empty=True),
        error=_string(obj, where, "error", empty=True),
    )
    if bool(answer.token) == bool(answer.error):
        _reject("token must carry exactly one of a token and an error")
    return answer


def _decode_failure(obj: dict[str, object]) -> Failure:
    return Failure(
        code=_string(obj, "error", "code"),
        message=_string(obj, "error", "message", empty=True),
    )


def decode_message(data: bytes) -> ControlMessage:
    """The message in one CONTROL record's payload.

    Raises TunnelProtocolError for anything but a well-formed message of a known type: bad
    UTF-8 or JSON (including duplicate keys, NaN/Infinity and nesting too deep to parse), a
    missing or wrongly typed field (a boolean is not an integer), or a value out of range.
    """
    try:
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError as exc:
        raise TunnelProtocolError(f"control message is not UTF-8: {exc.reason}") from exc
    except RecursionError as exc:
        raise TunnelProtocolError("control message is nested too deeply") from exc
    except ValueError as exc:  # json.JSONDecodeError, our hooks, too many integer digits
        raise TunnelProtocolError(f"control message is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        _reject(f"control message must be a JSON object, not {_type_name(obj)}")
    kind = obj.get("type")
    match kind:
        case "hello":
            return _decode_hello(obj)
        case "desired":
            return _decode_desired(obj)
        case "results":
            return _decode_results(obj)
        case "error":
            return _decode_failure(obj)
        case "token_request":
            return _decode_token_request(obj)
        case "token":
            return _decode_token_answer(obj)
        case None:
            _reject("control message has no 'type'")
        case _:
            _reject(f"unknown control message type {_shown(kind)}")
