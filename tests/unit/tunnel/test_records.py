from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.records import (
    DEFAULT_MAX_RECORD,
    HEADER_SIZE,
    Record,
    RecordDecoder,
    RecordKind,
    encode_record,
)

records_strategy = st.lists(
    st.builds(Record, st.sampled_from(RecordKind), st.binary(max_size=64)), max_size=8
)


def stream_of(records: list[Record]) -> bytes:
    return b"".join(encode_record(r.kind, r.payload) for r in records)


def decode_in_pieces(stream: bytes, cuts: list[int]) -> list[Record]:
    decoder = RecordDecoder()
    out: list[Record] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        out += decoder.feed(stream[start:cut])
        start = cut
    decoder.finish()
    return out


@pytest.mark.parametrize("kind", list(RecordKind), ids=lambda kind: kind.name)
@pytest.mark.parametrize(
    "payload", [b"", b"x", bytes(range(256)) * 100], ids=["empty", "one", "25k"]
)
def test_record_of_every_kind_round_trips(kind: RecordKind, payload: bytes) -> None:
    decoder = RecordDecoder()
    assert decoder.feed(encode_record(kind, payload)) == [Record(kind, payload)]
    assert decoder.buffered == 0
    decoder.finish()


def test_header_is_kind_byte_then_big_endian_length() -> None:
    assert encode_record(RecordKind.DATA, b"abc") == b"\x02\x00\x00\x00\x03abc"
    assert HEADER_SIZE == 5


def test_records_in_one_feed_come_out_in_order() -> None:
    sent = [
        Record(RecordKind.CONTROL, b"{}"),
        Record(RecordKind.DATA, b""),
        Record(RecordKind.CLOSE, b"bye"),
    ]
    assert RecordDecoder().feed(stream_of(sent)) == sent


def test_records_split_at_every_byte_boundary_decode_identically() -> None:
    sent = [
        Record(RecordKind.CONTROL, b'{"type":"hello"}'),
        Record(RecordKind.DATA, b""),
        Record(RecordKind.CLOSE, b"done"),
    ]
    stream = stream_of(sent)
    for cut in range(len(stream) + 1):
        assert decode_in_pieces(stream, [cut]) == sent, f"split at byte {cut}"


def test_records_fed_one_byte_at_a_time_decode_identically() -> None:
    sent = [Record(RecordKind.DATA, b"payload"), Record(RecordKind.CLOSE, b"")]
    stream = stream_of(sent)
    assert decode_in_pieces(stream, list(range(len(stream)))) == sent


@settings(max_examples=300)
@given(records=records_strategy, data=st.data())
def test_any_chunking_of_a_record_stream_decodes_identically(
    records: list[Record], data: st.DataObject
) -> None:
    stream = stream_of(records)
    cuts = data.draw(st.lists(st.integers(0, len(stream))), label="cuts")
    assert decode_in_pieces(stream, cuts) == records


def test_oversized_length_is_rejected_from_the_header_before_the_body_arrives() -> None:
    decoder = RecordDecoder()
    with pytest.raises(TunnelProtocolError) as caught:
        decoder.feed(struct.pack(">BI", RecordKind.DATA, 40_000_000))
    assert caught.value.message == "record of 40000000 bytes exceeds the 33554432-byte limit"


def test_record_exactly_at_the_limit_is_accepted() -> None:
    decoder = RecordDecoder(max_size=4)
    assert decoder.feed(encode_record(RecordKind.DATA, b"1234", max_size=4)) == [
        Record(RecordKind.DATA, b"1234")
    ]


def test_record_one_byte_over_a_custom_limit_is_rejected() -> None:
    with pytest.raises(TunnelProtocolError, match="record of 5 bytes exceeds the 4-byte limit"):
        RecordDecoder(max_size=4).feed(b"\x02\x00\x00\x00\x05")


def test_encoding_a_payload_over_the_limit_is_refused() -> None:
    with pytest.raises(TunnelProtocolError, match="record of 5 bytes exceeds the 4-byte limit"):
        encode_record(RecordKind.DATA, b"12345", max_size=4)


def test_default_limit_is_32_mib() -> None:
    assert DEFAULT_MAX_RECORD == 32 * 1024 * 1024


@pytest.mark.parametrize("kind_byte", [0, 4, 0x7F, 0xFF])
def test_unknown_kind_byte_is_rejected_as_soon_as_it_arrives(kind_byte: int) -> None:
    with pytest.raises(TunnelProtocolError, match=f"unknown record kind {kind_byte}"):
        RecordDecoder().feed(bytes([kind_byte]))


def test_unknown_kind_after_good_records_is_rejected() -> None:
    stream = encode_record(RecordKind.DATA, b"ok") + b"\x09\x00\x00\x00\x00"
    with pytest.raises(TunnelProtocolError, match="unknown record kind 9"):
        RecordDecoder().feed(stream)


def test_decoder_stays_failed_after_an_error() -> None:
    decoder = RecordDecoder()
    with pytest.raises(TunnelProtocolError):
        decoder.feed(b"\x00")
    with pytest.raises(TunnelProtocolError, match="already failed: unknown record kind 0"):
        decoder.feed(encode_record(RecordKind.DATA, b"fine"))
    with pytest.raises(TunnelProtocolError, match="already failed"):
        decoder.finish()
    assert decoder.buffered == 0


def test_finish_reports_a_truncated_body() -> None:
    decoder = RecordDecoder()
    assert decoder.feed(encode_record(RecordKind.DATA, b"0123456789")[:-7]) == []
    with pytest.raises(TunnelProtocolError, match="^truncated record: got 3 of 10 bytes$"):
        decoder.finish()


def test_finish_reports_a_truncated_header() -> None:
    decoder = RecordDecoder()
    decoder.feed(b"\x01\x00\x00")
    with pytest.raises(TunnelProtocolError, match="^truncated record header: got 3 of 5 bytes$"):
        decoder.finish()


def test_finish_after_whole_records_succeeds() -> None:
    decoder = RecordDecoder()
    decoder.feed(encode_record(RecordKind.CLOSE, b""))
    decoder.finish()


def test_buffered_counts_the_bytes_of_an_incomplete_record() -> None:
    decoder = RecordDecoder()
    whole = encode_record(RecordKind.DATA, b"abc")
    assert decoder.feed(whole + whole[:6]) == [Record(RecordKind.DATA, b"abc")]
    assert decoder.buffered == 6
    assert decoder.feed(whole[6:]) == [Record(RecordKind.DATA, b"abc")]
    assert decoder.buffered == 0


def test_payloads_are_independent_of_later_input() -> None:
    decoder = RecordDecoder()
    (first,) = decoder.feed(encode_record(RecordKind.DATA, b"keep") + b"\x02\x00")
    decoder.feed(b"\x00\x00\x04lost")
    assert first.payload == b"keep"
    assert isinstance(first.payload, bytes)


def test_many_small_records_in_one_feed_all_decode() -> None:
    # A decoder that copied the whole buffer per record would run into the suite's timeout.
    stream = encode_record(RecordKind.DATA, b"x") * 200_000
    records = RecordDecoder().feed(stream)
    assert len(records) == 200_000
    assert all(r.payload == b"x" for r in records)


def test_large_record_in_small_chunks_is_buffered_until_complete() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    stream = encode_record(RecordKind.DATA, payload)
    decoder = RecordDecoder()
    out: list[Record] = []
    for start in range(0, len(stream), 16_384):
        out += decoder.feed(stream[start : start + 16_384])
    assert out == [Record(RecordKind.DATA, payload)]


@pytest.mark.parametrize("max_size", [-1, 2**32])
def test_limit_outside_the_length_field_is_a_programming_error(max_size: int) -> None:
    with pytest.raises(ValueError, match="max_size"):
        RecordDecoder(max_size=max_size)
