"""Fuzzing the tunnel decoders: hostile input gets TunnelProtocolError and nothing else."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubegate.domain.access import GrantSpec, Role
from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.control import (
    MAX_REVISION,
    ControlMessage,
    Desired,
    Failure,
    GrantResult,
    Hello,
    Results,
    decode_message,
    encode_message,
)
from kubegate.tunnel.records import Record, RecordDecoder, RecordKind, encode_record

FIELD_NAMES = [
    "type",
    "role",
    "kubegate_version",
    "schema_versions",
    "info",
    "revision",
    "grants",
    "results",
    "grant_id",
    "email",
    "namespace",
    "status",
    "detail",
    "code",
    "message",
]
TYPES = ["hello", "desired", "results", "error"]

# --- valid messages ---------------------------------------------------------------------------

names = st.text(min_size=1, max_size=20)
namespaces = st.none() | st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
revisions = st.integers(0, MAX_REVISION)
grants = st.builds(GrantSpec, names, names, st.sampled_from([r.value for r in Role]), namespaces)
hellos = st.builds(
    Hello,
    st.sampled_from(["server", "agent"]),
    names,
    st.lists(st.integers(1, 2**31), min_size=1, max_size=4).map(tuple),
    st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
)
desireds = st.builds(
    Desired, revisions, st.lists(grants, max_size=8, unique_by=lambda g: g.grant_id).map(tuple)
)
results = st.builds(
    Results,
    revisions,
    st.lists(
        st.builds(GrantResult, names, st.sampled_from(["applied", "failed"]), st.text(max_size=40)),
        max_size=8,
    ).map(tuple),
)
failures = st.builds(Failure, names, st.text(max_size=40))
messages: st.SearchStrategy[ControlMessage] = hellos | desireds | results | failures

# --- JSON-ish junk ----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(TYPES + ["view", "team-a", "applied", "server", ""])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=20,
)


@st.composite
def json_messages(draw: st.DrawFn) -> object:
    """A JSON object shaped vaguely like a control message, often with a valid type."""
    obj = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6))
    if draw(st.booleans()):
        obj["type"] = draw(st.sampled_from(TYPES))
    return obj


@st.composite
def mutated_messages(draw: st.DrawFn) -> object:
    """A valid message's JSON with one value somewhere replaced by junk."""
    obj: object = json.loads(encode_message(draw(messages)))
    root = obj
    while True:
        if isinstance(obj, dict) and obj:
            key = draw(st.sampled_from(sorted(obj)))
            if draw(st.booleans()):
                obj[key] = draw(json_values)
                return root
            obj = obj[key]
        elif isinstance(obj, list) and obj:
            index = draw(st.integers(0, len(obj) - 1))
            if draw(st.booleans()):
                obj[index] = draw(json_values)
                return root
            obj = obj[index]
        else:
            return root


def decode_or_reject(data: bytes) -> None:
    """Decoding ``data`` raises only TunnelProtocolError; a decoded message re-encodes."""
    try:
        message = decode_message(data)
    except TunnelProtocolError:
        return
    assert decode_message(encode_message(message)) == message


# --- control messages -------------------------------------------------------------------------


@settings(max_examples=300)
@given(message=messages)
def test_valid_messages_survive_an_encode_decode_round_trip(message: ControlMessage) -> None:
    assert decode_message(encode_message(message)) == message


@settings(max_examples=300)
@given(message=messages)
def test_decoding_then_encoding_reproduces_the_bytes(message: ControlMessage) -> None:
    data = encode_message(message)
    assert encode_message(decode_message(data)) == data


@settings(max_examples=500)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_into_decode_message_raise_only_protocol_errors(data: bytes) -> None:
    decode_or_reject(data)


@settings(max_examples=300)
@given(value=json_values | json_messages(), allow_nan=st.booleans())
def test_arbitrary_json_into_decode_message_is_rejected_or_valid(
    value: object, allow_nan: bool
) -> None:
    try:
        data = json.dumps(value, allow_nan=allow_nan).encode()
    except ValueError:
        return  # a NaN that json.dumps itself refuses
    decode_or_reject(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(value=mutated_messages())
def test_valid_messages_with_one_value_mutated_are_rejected_or_valid(value: object) -> None:
    decode_or_reject(json.dumps(value).encode())


@settings(max_examples=300)
@given(message=messages, data=st.data())
def test_truncated_or_bit_flipped_messages_are_rejected_or_valid(
    message: ControlMessage, data: st.DataObject
) -> None:
    encoded = bytearray(encode_message(message))
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    if data.draw(st.booleans(), label="truncate"):
        del encoded[position:]
    else:
        encoded[position] ^= data.draw(st.integers(1, 255), label="flip")
    decode_or_reject(bytes(encoded))


# --- records ----------------------------------------------------------------------------------


def feed_in_chunks(decoder: RecordDecoder, data: bytes, cuts: list[int]) -> bytes:
    """Feed ``data`` cut at ``cuts``; return the records that came out, re-encoded."""
    decoded = bytearray()
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        for record in decoder.feed(data[start:cut]):
            decoded += encode_record(record.kind, record.payload)
        start = cut
    return bytes(decoded)


@settings(max_examples=500)
@given(
    data=st.binary(max_size=300),
    max_size=st.integers(0, 64) | st.just(2**32 - 1),
    chunking=st.data(),
)
def test_arbitrary_bytes_in_any_chunking_give_records_or_protocol_errors(
    data: bytes, max_size: int, chunking: st.DataObject
) -> None:
    cuts = chunking.draw(st.lists(st.integers(0, len(data)), max_size=10), label="cuts")
    decoder = RecordDecoder(max_size=max_size)
    try:
        decoded = feed_in_chunks(decoder, data, cuts)
        decoder.finish()
    except TunnelProtocolError:
        return
    assert decoded == data  # finish() passed, so every byte was part of a record


@settings(max_examples=300)
@given(
    records=st.lists(
        st.builds(Record, st.sampled_from(RecordKind), st.binary(max_size=40)), max_size=6
    ),
    data=st.data(),
)
def test_corrupted_record_streams_give_a_prefix_of_records_or_protocol_errors(
    records: list[Record], data: st.DataObject
) -> None:
    stream = bytearray(b"".join(encode_record(r.kind, r.payload) for r in records))
    if stream:
        position = data.draw(st.integers(0, len(stream) - 1), label="position")
        stream[position] ^= data.draw(st.integers(1, 255), label="flip")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6), label="cuts")
    decoder = RecordDecoder(max_size=64)
    try:
        decoded = feed_in_chunks(decoder, bytes(stream), cuts)
    except TunnelProtocolError:
        return
    assert bytes(stream).startswith(decoded)
    assert decoder.buffered == len(stream) - len(decoded)


# --- coverage-guided fuzzing (atheris, libFuzzer) ---------------------------------------------

FUZZ_TARGET = Path(__file__).with_name("fuzz_target.py")


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_libfuzzer_finds_no_crash_in_the_decoders(tmp_path: Path) -> None:
    runs = 30_000
    completed = subprocess.run(
        [
            sys.executable,
            str(FUZZ_TARGET),
            f"--workdir={tmp_path}",
            f"-atheris_runs={runs}",
            "-seed=1",
            "-max_len=2048",
            "-max_total_time=60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stderr[-4000:]
    assert completed.returncode == 0, output
    assert f"Done {runs} runs" in completed.stderr or f"Done {runs} in" in completed.stderr, output
