"""The agent tunnel: kubegate's own stream framing (protocol 2) over one WebSocket.

``events``, ``wire``, ``frames``, ``records`` and ``control`` are pure (bytes in, values and
bytes out); ``transport`` and ``stream`` move the bytes over a WebSocket. The wire format is
in ``docs/tunnel.md``.
"""
