"""What the CLI prints is what it was given: no markup, no emoji codes, from any data."""

from __future__ import annotations

import pytest

from kubegate.cli.output import Column, Format, Output


def test_messages_and_cells_print_colons_and_brackets_as_they_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = Output()
    fingerprint = "17:C8:D4:CD:09:10:B1:38"  # ":CD:" is Rich's emoji code for a compact disc
    output.say(f"pinned {fingerprint} [bold]x[/bold]")
    output.note(f"note {fingerprint} [pending]")
    output.listing([{"v": f"{fingerprint} [applied]"}], [Column("v", "v")], Format.table, empty="")
    out, err = capsys.readouterr()
    assert f"pinned {fingerprint} [bold]x[/bold]" in out
    assert f"{fingerprint} [applied]" in out
    assert f"note {fingerprint} [pending]" in err
