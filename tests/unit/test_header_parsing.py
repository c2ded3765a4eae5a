"""The header parser of eventkit's own subscriptions gives nats-py's dict for every block."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from eventkit.store.nats.delivery import parse_headers


def nats_py(block: bytes) -> dict[str, str]:
    """What nats-py 2.x makes of a header block without an inline status."""
    return Client._parse_header_lines(block[len(b"NATS/1.0\r\n") :])


JETSTREAM = (
    b"NATS/1.0\r\nNats-Stream: bank\r\nNats-Subject: bank.account.a-1\r\nNats-Sequence: 12\r\n"
    b"Nats-Time-Stamp: 2026-01-01T10:00:00.123456789Z\r\nNats-Msg-Id: 0a1b\r\n"
    b"Eventkit-Type: MoneyDeposited\r\nEventkit-Schema: 1\r\n\r\n"
)


def test_a_stored_messages_headers_parse_as_nats_py_does() -> None:
    assert parse_headers(JETSTREAM) == nats_py(JETSTREAM)
    assert parse_headers(JETSTREAM)["Nats-Sequence"] == "12"


def test_an_inline_status_becomes_status_and_description() -> None:
    assert parse_headers(b"NATS/1.0 503\r\n\r\n") == {"Status": "503"}
    assert parse_headers(b"NATS/1.0 404 No Messages\r\n\r\n") == {
        "Status": "404",
        "Description": "No Messages",
    }
    end = parse_headers(b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: 9\r\n\r\n")
    assert end == {
        "Status": "204",
        "Description": "EOB",
        "Nats-Num-Pending": "0",
        "Nats-Last-Sequence": "9",
    }


def test_bad_lines_are_passed_over_and_bad_bytes_replaced() -> None:
    block = (
        b"NATS/1.0\r\nno colon\r\nBad Name: x\r\nK\xc3: y\r\nOk:  v \r\nUtf: \xff\r\n"
        b"Nbsp: \xc2\xa0a\xc2\xa0\r\n\r\n"
    )
    assert parse_headers(block) == nats_py(block)
    assert parse_headers(block) == {"Ok": "v", "Utf": "\ufffd", "Nbsp": "\xa0a\xa0"}


names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1
)
values = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\r\n"))


@given(st.lists(st.tuples(names, values), max_size=12))
def test_any_header_block_parses_as_nats_py_does(pairs: list[tuple[str, str]]) -> None:
    block = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in pairs) + b"\r\n"
    assert parse_headers(block) == nats_py(block)


def test_the_dispatch_hook_is_taken_only_on_the_client_it_was_written_for() -> None:
    from nats.aio.client import Client

    from eventkit.store.nats.delivery import _hookable

    class Changed:
        async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes) -> None:
            pass

    class Without:
        pass

    assert _hookable(Client)  # the nats-py this release is tested with
    assert not _hookable(Changed)  # another shape: ordinary subscriptions, not a broken hook
    assert not _hookable(Without)
