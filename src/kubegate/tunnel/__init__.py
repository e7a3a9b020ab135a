"""The agent tunnel: HTTP/2 (``h2``) over one WebSocket.

``records``, ``control`` and ``session`` are pure (bytes in, values and bytes out);
``transport`` moves the bytes over a WebSocket. The wire format is in ``docs/tunnel.md``.
"""
