"""Which cluster a proxied request is for, and the upstream request-target to send.

:func:`split_target` turns the HTTP/1.1 request-target ``/clusters/<id>/<path>?<query>`` into
a :class:`ProxyTarget`, refusing anything :func:`~kubegate.kube.requestinfo.decode_path`
refuses. Pure: bytes in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubegate.domain.access import CLUSTER_ID
from kubegate.errors import InvalidRequest, NotFound
from kubegate.kube.requestinfo import TARGET_BYTE, decode_path

PROXY_PREFIX = "/clusters/"

NO_SUCH_PATH = "no such path on the kubegate proxy; kubeconfigs point at /clusters/<cluster id>"


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """Where a proxied request goes: a cluster and the request-target to send it.

    ``path`` always starts with ``/`` and keeps the percent-encoding the client sent; ``query``
    is the raw query string without ``?`` (``""`` when there is none).
    """

    cluster_id: str
    path: str
    query: str

    @property
    def target(self) -> str:
        """The request-target to send upstream: path, then ``?query`` when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path


def split_target(raw_target: bytes) -> ProxyTarget:
    """Split ``/clusters/<id>/<upstream path>?<query>`` into a :class:`ProxyTarget`.

    Raises :class:`InvalidRequest` for a target that is not a plain origin-form path, or whose
    path could be normalised into another one upstream; :class:`NotFound` for a well-formed
    path that does not name a cluster. The query is only checked for control and non-ASCII
    bytes: field and label selectors legitimately carry encoded characters.
    """
    if raw_target == b"*":
        raise InvalidRequest("the proxy does not answer asterisk-form ('*') requests")
    bad = next((b for b in raw_target if b not in TARGET_BYTE), None)
    if bad is not None:
        raise InvalidRequest(
            f"the request-target contains a forbidden byte 0x{bad:02x} "
            "(control, space, '#' or non-ASCII); percent-encode it"
        )
    target = raw_target.decode("ascii")
    if not target.startswith("/"):
        raise InvalidRequest(
            "the proxy accepts only origin-form request-targets (a path starting with '/'), "
            "not absolute or authority form"
        )
    path, _, query = target.partition("?")
    decode_path(path)
    if not path.startswith(PROXY_PREFIX):
        raise NotFound(NO_SUCH_PATH)
    cluster_id, slash, rest = path[len(PROXY_PREFIX) :].partition("/")
    if CLUSTER_ID.fullmatch(cluster_id) is None:
        raise NotFound(NO_SUCH_PATH)
    return ProxyTarget(cluster_id=cluster_id, path=slash + rest or "/", query=query)
