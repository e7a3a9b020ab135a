"""libFuzzer (atheris) target for the tunnel decoders: coverage-guided, beyond hypothesis.

test_fuzz_decoders.py runs it for a bounded number of inputs. For a longer hunt:

    .venv/bin/python tests/unit/tunnel/fuzz_target.py --workdir=/tmp/kg-fuzz -max_total_time=600

``--workdir`` receives the token dictionary, the seed corpus (which grows as libFuzzer finds new
coverage) and any crashing input; the other flags are libFuzzer's.

An input's first byte picks the decoder (its value modulo 3): the control-message decoder, the
record decoder, or a protocol-2 frame session (tunnel/frames.py) as gateway or agent; the
last two are fed in chunks the input itself chooses. Anything but TunnelProtocolError, or a
decoded value that does not survive re-encoding, is a crash.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["kubegate.tunnel", "kubegate.domain"]):
    from kubegate.tunnel.control import decode_message, encode_message
    from kubegate.tunnel.frames import FrameSession
    from kubegate.tunnel.records import RecordDecoder, encode_record
    from kubegate.tunnel.wire import HEAD

from kubegate.domain.access import GrantSpec, Role
from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.control import ControlMessage, Desired, Failure, GrantResult, Hello, Results
from kubegate.tunnel.records import RecordKind

DICTIONARY = [
    *(f'"{word}"' for word in ("type", "hello", "desired", "results", "error", "role")),
    *(f'"{word}"' for word in ("server", "agent", "kubegate_version", "schema_versions")),
    *(f'"{word}"' for word in ("info", "revision", "grants", "grant_id", "email", "namespace")),
    *(f'"{word}"' for word in ("view", "edit", "admin", "cluster-admin", "status", "applied")),
    *(f'"{word}"' for word in ("failed", "detail", "code", "message", "team-a")),
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "null",
    "true",
    "false",
    "-1",
    "\\ud800",
]


def fuzz_control(data: bytes) -> None:
    """Decode one control message; a decoded message must survive re-encoding."""
    try:
        message = decode_message(data)
    except TunnelProtocolError:
        return
    if decode_message(encode_message(message)) != message:
        raise AssertionError(f"{message!r} does not survive re-encoding")


def fuzz_records(data: bytes) -> None:
    """Feed the record decoder in chunks; what it returns must be exactly what it consumed."""
    provider = atheris.FuzzedDataProvider(data)
    decoder = RecordDecoder(max_size=provider.ConsumeIntInRange(0, 1024))
    consumed = bytearray()
    decoded = bytearray()
    try:
        while provider.remaining_bytes():
            chunk = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 64))
            consumed += chunk
            for record in decoder.feed(chunk):
                decoded += encode_record(record.kind, record.payload)
        if bytes(consumed[: len(decoded)]) != bytes(decoded):
            raise AssertionError("decoded records differ from the input")
        if decoder.buffered != len(consumed) - len(decoded):
            raise AssertionError("buffered count is wrong")
        decoder.finish()
    except TunnelProtocolError:
        return


def fuzz_frames(data: bytes) -> None:
    """Feed a protocol-2 session in chunks: a protocol error must close it, nothing else may
    escape, and whatever it queues for the peer must itself be whole frames."""
    provider = atheris.FuzzedDataProvider(data)
    session = FrameSession(client=provider.ConsumeBool())
    try:
        while provider.remaining_bytes():
            chunk = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 64))
            session.receive_data(chunk, 0.0)
    except TunnelProtocolError:
        if not session.closed:
            raise AssertionError("a protocol error left the session open") from None
    out = session.data_to_send()
    while out:
        length = HEAD.unpack_from(out)[3]
        if len(out) < HEAD.size + length:
            raise AssertionError("the session queued a cut frame")
        out = out[HEAD.size + length :]


def fuzz_one_input(data: bytes) -> None:
    """The libFuzzer entry point."""
    if not data:
        return
    if data[0] % 3 == 0:
        fuzz_control(data[1:])
    elif data[0] % 3 == 1:
        fuzz_records(data[1:])
    else:
        fuzz_frames(data[1:])


def seed_inputs() -> list[bytes]:
    """One valid input per message type and record kind: libFuzzer mutates from these."""
    messages: list[ControlMessage] = [
        Hello("agent", "0.1.0", (1,), {"cluster_name": "prod"}),
        Desired(3, (GrantSpec("g1", "a@example.com", Role("edit"), "team-a"),)),
        Desired(4, (GrantSpec("g2", "b@example.com", Role("view"), None),)),
        Results(3, (GrantResult("g1", "applied"), GrantResult("g2", "failed", "denied"))),
        Failure("incompatible_version", "schema 1 only"),
    ]
    records = b"".join(encode_record(kind, b"payload") for kind in RecordKind)
    gateway = FrameSession(client=True)
    stream_id = gateway.open_stream("GET", "/api/v1/pods", (("accept", "application/json"),))
    gateway.send_data(stream_id, b"body", end_stream=True)
    gateway.heartbeat(10.0)
    frames = gateway.data_to_send()
    return (
        [b"\x00" + encode_message(m) for m in messages]
        + [b"\x01\x40" + records]
        + [b"\x02\x00" + frames]
    )


def main() -> None:
    """Prepare ``--workdir`` if given, then run libFuzzer with the remaining flags."""
    argv = list(sys.argv)
    for arg in argv[1:]:
        if arg.startswith("--workdir="):
            argv.remove(arg)
            workdir = Path(arg.removeprefix("--workdir="))
            corpus = workdir / "corpus"
            corpus.mkdir(parents=True, exist_ok=True)
            for index, seed in enumerate(seed_inputs()):
                (corpus / f"seed-{index}").write_bytes(seed)
            dictionary = workdir / "control.dict"
            dictionary.write_text("".join(json.dumps(token) + "\n" for token in DICTIONARY))
            argv += [f"-dict={dictionary}", f"-artifact_prefix={workdir}/", str(corpus)]
    atheris.Setup(argv, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
