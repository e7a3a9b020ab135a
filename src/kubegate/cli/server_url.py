"""How a kubegate server's URL is written down: the key of its login and of its token cache.

No imports: the exec credential plugin's warm path (``kube_token.py``) uses it.
"""

from __future__ import annotations


def normalise_server(url: str) -> str:
    """No trailing slash, scheme and host lowercase; ``https://`` when no scheme is given."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"
