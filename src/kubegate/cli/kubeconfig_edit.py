"""kubegate's own entries in a kubeconfig: pure edits of a round-trip YAML document.

For a cluster named N kubegate adds, replaces and removes three entries together: a
cluster, a user and a context, all named ``kubegate-N``, each marked with the
``kubegate.dev/managed`` named extension (the ``extensions`` list clientcmd keeps on
clusters, users and contexts) holding the kubegate server, the cluster's id and name, the
auth mode and, for an embedded token, its expiry. An entry with kubegate's name but without
the marker belongs to someone else and is never overwritten or removed.

Everything else stays as it was, byte for byte, with the exceptions
:mod:`kubegate.cli.yaml_roundtrip` lists; in addition a list kubegate empties is written
``[]`` (whatever it was before kubegate's entry was added: missing, ``null`` or ``[]``).

Surviving kubectl: every ``kubectl config`` command rewrites the whole file (keys sorted,
comments and unknown fields dropped, ``env: null`` added to exec users, string values that
YAML 1.1 reads as booleans turned into booleans) but keeps named extensions as they are, so
the marker survives. The marker's keys avoid YAML 1.1's boolean words (kubectl turns a key
``n`` into ``"false"``) and the strings written here are quoted where YAML 1.1 needs it.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import Literal

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from kubegate.cli.yaml_roundtrip import (
    Holder,
    Layout,
    is_null,
    key_holder,
    move_tail,
    parse,
    render,
    tail,
    to_node,
)
from kubegate.errors import Conflict
from kubegate.kube.kubeconfig import entry_name

MARKER = "kubegate.dev/managed"
"""The name of the extension that marks an entry as kubegate's."""
EXEC_API_VERSION = "client.authentication.k8s.io/v1"
_SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))


class KubeconfigError(Conflict):
    """The kubeconfig cannot be edited as asked: not valid YAML or not a ``Config``, cannot be
    read, written or locked, or an entry kubegate would touch belongs to someone else. A 409:
    the file's state, not the command, stands in the way; the message names the file and says
    what to do."""

    code = "kubeconfig_error"


@dataclass(frozen=True, slots=True)
class ExecAuth:
    """The default credential: kubectl runs ``command args...`` (kubegate's ``kube-token``)."""

    command: str
    args: tuple[str, ...]
    install_hint: str


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """An embedded kube token (``--embed-token``), valid until ``expires_at`` (naive: UTC)."""

    token: str
    expires_at: datetime.datetime


@dataclass(frozen=True, slots=True)
class ManagedEntry:
    """What kubegate writes for one cluster. ``proxy_server`` is the cluster's URL on kubegate's
    proxy; ``ca_pem`` (None: the system trust store) is dropped when
    ``insecure_skip_tls_verify`` is set, since kubectl refuses the two together."""

    cluster_name: str
    cluster_id: str
    kubegate_server: str
    proxy_server: str
    ca_pem: bytes | None
    insecure_skip_tls_verify: bool
    namespace: str | None
    auth: ExecAuth | TokenAuth


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :func:`add` did: ``replaced`` when kubegate's entries of ``name`` were already there."""

    name: str
    replaced: bool
    current_context: str | None


@dataclass(frozen=True, slots=True)
class RemoveResult:
    """What :func:`remove` did. When the context removed was current, ``current-context`` is
    cleared (``""``), unlike ``kubectl config delete-context``, which leaves it naming a context
    that no longer exists: ``current_context`` is then None."""

    name: str
    removed: bool
    was_current: bool
    current_context: str | None


@dataclass(frozen=True, slots=True)
class ManagedContext:
    """One kubegate context found in a kubeconfig (``kubegate cluster kubeconfig list``).

    ``proxy_server``, ``namespace`` and ``auth`` are read from the entries themselves (kubectl
    may have changed them); the rest from the marker. ``auth`` is None when the user is gone.
    """

    name: str
    cluster_name: str
    cluster_id: str
    kubegate_server: str
    proxy_server: str | None
    namespace: str | None
    auth: Literal["exec", "token"] | None
    token_expires_at: datetime.datetime | None
    current: bool


@dataclass(slots=True)
class Document:
    """A kubeconfig being edited: ruamel's round-trip tree and the file's layout. Mutable:
    :func:`add` and :func:`remove` change it in place, :func:`dump` renders it."""

    root: CommentedMap
    layout: Layout
    source: str


def _new_root() -> CommentedMap:
    """An empty Config, as kubectl would write it (but with kubegate's key order)."""
    root = CommentedMap([("apiVersion", "v1"), ("kind", "Config")])
    root.update((key, CommentedSeq()) for key in ("clusters", "users", "contexts"))
    root["current-context"] = DoubleQuotedScalarString("")
    root["preferences"] = CommentedMap()
    for key in ("clusters", "users", "contexts", "preferences"):
        root[key].fa.set_flow_style()
    return root


def load(text: str, source: str) -> Document:
    """Parse a kubeconfig; ``source`` (its path) names it in errors. Empty text (or only
    comments) gives a new, empty Config. Raises :class:`KubeconfigError` for text that is not
    one YAML document, or a document that is not a mapping of ``kind: Config``."""
    try:
        root, layout = parse(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "syntax error"
        raise KubeconfigError(
            f"{source}{where}: not valid YAML ({problem}); fix the file or use another one"
        ) from exc
    except YAMLError as exc:
        raise KubeconfigError(f"{source}: not valid YAML ({exc}); fix the file") from exc
    if root is None:
        return Document(_new_root(), layout, source)
    if not isinstance(root, CommentedMap):
        raise KubeconfigError(f"{source}: not a kubeconfig (the top level is not a mapping)")
    for key, expected in (("kind", "Config"), ("apiVersion", "v1")):
        value = root.get(key)
        if not is_null(value) and value != expected:
            raise KubeconfigError(
                f"{source}: not a kubeconfig ({key} is {value!r}, expected {expected!r})"
            )
    return Document(root, layout, source)


def dump(doc: Document) -> str:
    """The document as text, laid out like the file it came from."""
    return render(doc.root, doc.layout)


def _entries(entry: ManagedEntry, name: str) -> list[CommentedMap]:
    """kubegate's cluster, user and context entries, in :data:`_SECTIONS` order."""
    auth = entry.auth
    marker: dict[str, object] = {
        "kubegateServer": entry.kubegate_server,
        "clusterId": entry.cluster_id,
        "clusterName": entry.cluster_name,
        "auth": "exec" if isinstance(auth, ExecAuth) else "token",
    }
    user: dict[str, object]
    if isinstance(auth, ExecAuth):
        user = {
            "exec": {
                "apiVersion": EXEC_API_VERSION,
                "command": auth.command,
                "args": list(auth.args),
                "installHint": auth.install_hint,
                "interactiveMode": "Never",
                "provideClusterInfo": True,
            }
        }
    else:
        user = {"token": auth.token}
        expires = auth.expires_at
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=datetime.UTC)
        expires = expires.astimezone(datetime.UTC).replace(microsecond=0)
        marker["tokenExpiresAt"] = expires.isoformat().replace("+00:00", "Z")
    cluster: dict[str, object] = {"server": entry.proxy_server}
    if entry.insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    elif entry.ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(entry.ca_pem).decode("ascii")
    context: dict[str, object] = {"cluster": name, "user": name}
    if entry.namespace:
        context["namespace"] = entry.namespace
    extensions = [{"name": MARKER, "extension": marker}]
    return [
        to_node({"name": name, key: {**body, "extensions": extensions}})
        for (_, key), body in zip(_SECTIONS, (cluster, user, context), strict=True)
    ]


def _section(doc: Document, key: str, *, create: bool) -> CommentedSeq | None:
    """The list under ``key`` (made, empty, where it was, if missing or null and ``create``)."""
    root = doc.root
    value = root.get(key)
    if isinstance(value, CommentedSeq):
        return value
    if not is_null(value):
        raise KubeconfigError(f"{doc.source}: {key!r} is not a list; fix the file")
    if not create:
        return None
    seq = CommentedSeq()
    root[key] = seq
    return seq


def _find(doc: Document, key: str, name: str) -> int | None:
    for index, item in enumerate(_section(doc, key, create=False) or ()):
        if isinstance(item, CommentedMap) and item.get("name") == name:
            return index
    return None


def _marker(item: object, body_key: str) -> dict[str, object] | None:
    """The marker's content if ``item`` (a named entry) carries kubegate's extension."""
    body = item.get(body_key) if isinstance(item, CommentedMap) else None
    extensions = body.get("extensions") if isinstance(body, CommentedMap) else None
    for extension in extensions if isinstance(extensions, CommentedSeq) else []:
        if isinstance(extension, CommentedMap) and extension.get("name") == MARKER:
            content = extension.get("extension")
            return dict(content) if isinstance(content, CommentedMap) else {}
    return None


def _locate(doc: Document, name: str, verb: str) -> dict[str, int | None]:
    """Where kubegate's entries named ``name`` are; refuses if one of them is someone else's."""
    found = {key: _find(doc, key, name) for key, _ in _SECTIONS}
    foreign = [
        body_key
        for key, body_key in _SECTIONS
        if (index := found[key]) is not None and _marker(doc.root[key][index], body_key) is None
    ]
    if foreign:
        raise KubeconfigError(
            f"{doc.source} already has a {' and a '.join(foreign)} named {name!r} that "
            f"kubegate did not write, so kubegate will not {verb} it; rename or delete it "
            f"(kubectl config delete-context / delete-cluster / delete-user) and try again"
        )
    return found


def _current(root: CommentedMap) -> str | None:
    value = root.get("current-context")
    return str(value) if isinstance(value, str) and value else None


def add(doc: Document, entry: ManagedEntry, *, use: bool) -> AddResult:
    """Add kubegate's three entries for ``entry`` or replace them where they are (the whole
    entry: a namespace set since with kubectl goes too). New ones go at the end of each list.
    ``current-context`` changes only when ``use``. Raises :class:`KubeconfigError`, leaving
    ``doc`` unchanged, when one of the names is taken by an entry kubegate did not write."""
    name = entry_name(entry.cluster_name)
    found = _locate(doc, name, "replace")
    root = doc.root
    for (key, _), new in zip(_SECTIONS, _entries(entry, name), strict=True):
        index = found[key]
        before = _section(doc, key, create=False)
        source: Holder | None = key_holder(root, key)
        if before:
            source = tail(before[-1] if index is None else before[index])
        seq = _section(doc, key, create=True)
        assert seq is not None
        if index is None:
            if not seq:
                seq.fa.set_block_style()
            seq.append(new)
        else:
            seq[index] = new
        move_tail(source, tail(new))
    if use:
        root["current-context"] = name
    return AddResult(
        name=name,
        replaced=any(i is not None for i in found.values()),
        current_context=_current(root),
    )


def remove(doc: Document, cluster_name: str) -> RemoveResult:
    """Remove kubegate's entries for ``cluster_name`` (nothing to remove is not an error).
    Refuses, leaving ``doc`` unchanged, to remove an entry kubegate did not write."""
    name = entry_name(cluster_name)
    found = _locate(doc, name, "remove")
    root = doc.root
    for key, _ in _SECTIONS:
        index = found[key]
        if index is None:
            continue
        seq = root[key]
        target = tail(seq[index - 1]) if index else key_holder(root, key)
        source = tail(seq[index])
        del seq[index]
        if not seq:
            seq.fa.set_flow_style()
        move_tail(source, target)
    was_current = _current(root) == name
    if was_current:
        root["current-context"] = DoubleQuotedScalarString("")
    return RemoveResult(
        name=name,
        removed=any(i is not None for i in found.values()),
        was_current=was_current,
        current_context=_current(root),
    )


def _text(value: object) -> str | None:
    return None if is_null(value) else str(value)


def _expiry(value: object) -> datetime.datetime | None:
    """The RFC 3339 string written here (or a timestamp another tool left unquoted)."""
    if isinstance(value, datetime.datetime):
        return value
    try:
        return datetime.datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def managed(doc: Document) -> list[ManagedContext]:
    """kubegate's contexts in the document, in file order."""
    root = doc.root
    by_name: dict[str, dict[str, object]] = {}
    for key, body_key in _SECTIONS[:2]:
        for item in _section(doc, key, create=False) or []:
            if isinstance(item, CommentedMap) and isinstance(item.get(body_key), CommentedMap):
                by_name[f"{body_key}/{item.get('name')}"] = dict(item[body_key])
    found: list[ManagedContext] = []
    for item in _section(doc, "contexts", create=False) or []:
        marker = _marker(item, "context")
        if marker is None:
            continue
        context = item["context"]
        cluster = by_name.get(f"cluster/{context.get('cluster')}", {})
        user = by_name.get(f"user/{context.get('user')}", {})
        name = str(item.get("name"))
        found.append(
            ManagedContext(
                name=name,
                cluster_name=_text(marker.get("clusterName")) or name,
                cluster_id=_text(marker.get("clusterId")) or "",
                kubegate_server=_text(marker.get("kubegateServer")) or "",
                proxy_server=_text(cluster.get("server")),
                namespace=_text(context.get("namespace")) or None,
                auth="exec" if "exec" in user else "token" if "token" in user else None,
                token_expires_at=_expiry(marker.get("tokenExpiresAt")),
                current=_current(root) == name,
            )
        )
    return found


def standalone(entry: ManagedEntry) -> str:
    """A complete kubeconfig holding only ``entry``, its context current (for ``--print``)."""
    doc = Document(_new_root(), Layout(), "<new kubeconfig>")
    add(doc, entry, use=True)
    return dump(doc)
