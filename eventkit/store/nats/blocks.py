"""Reading one node's copy of a stream from its store directory (the ``.blk`` files).

Direct gets are answered by whichever replica the server picks, whichever server the client is
connected to, and no reply names the replica (measured on nats-server 2.15); the stream leader
answers ``STREAM.MSG.GET``. So the only way to see what one node holds is its files: this reads
the message blocks of a file store (not encrypted at rest, not compressed) as they are, which is
what ``eventkit verify --replicas --store-dir NODE=PATH`` checks node by node.

A record of a block: ``u32 length`` (high bit: has headers), ``u64 sequence`` (high bits:
erased / tombstone), ``i64 timestamp`` (ns), ``u16 subject length``, the subject, then with
headers ``u32 header length`` and the header block (``NATS/1.0``), the payload, and an 8-byte
checksum; all little-endian, the length covering the whole record.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path

from eventkit.errors import ConfigError
from eventkit.store.records import StoredMessage, time_from_ns

_HEAD = struct.Struct("<IQqH")
_HAS_HEADERS = 1 << 31
_ERASED = 1 << 63
_TOMBSTONE = 1 << 62
_CHECKSUM = 8


def stream_dir(path: Path, stream: str) -> Path:
    """The ``msgs`` folder of ``stream`` under a node's store directory (or its ``jetstream``
    folder, or the stream's own folder)."""
    path = Path(path)
    if (path / "msgs").is_dir() and path.name == stream:
        return path / "msgs"
    found = [p for p in path.glob(f"**/streams/{stream}/msgs") if p.is_dir()]
    if not found:
        raise ConfigError(
            f"no copy of stream {stream!r} under {str(path)!r}: give the node's JetStream store "
            f"directory (its store_dir, which holds jetstream/<account>/streams/{stream})"
        )
    if len(found) > 1:
        raise ConfigError(
            f"several accounts hold a stream {stream!r} under {str(path)!r}: give the account's "
            f"folder, e.g. {str(found[0].parent.parent.parent)!r}"
        )
    return found[0]


def _headers(block: bytes) -> dict[str, str]:
    lines = block.decode("utf-8", "replace").split("\r\n")
    out: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def _block_number(path: Path) -> int:
    m = re.match(r"(\d+)\.blk$", path.name)
    return int(m.group(1)) if m else -1


def node_messages(path: Path, stream: str) -> Iterator[StoredMessage]:
    """The messages a node's files hold for ``stream``, in sequence order, erased ones left out
    (a message deleted without erasure may still be in its block: the server's index, not read
    here, says it is gone)."""
    folder = stream_dir(path, stream)
    if (folder.parent / "meta.key").exists():
        raise ConfigError(
            f"the copy of stream {stream!r} under {str(path)!r} is encrypted at rest: its block "
            f"files cannot be read here; check that node's copy with `eventkit verify` on a "
            f"client connected to it while it leads, or compare the nodes' stream state"
        )
    found: dict[int, StoredMessage] = {}
    for blk in sorted(folder.glob("*.blk"), key=_block_number):
        data = blk.read_bytes()
        off = 0
        while off + _HEAD.size <= len(data):
            rl, seq, ts, slen = _HEAD.unpack_from(data, off)
            has_headers = bool(rl & _HAS_HEADERS)
            rl &= ~_HAS_HEADERS
            if rl < _HEAD.size + _CHECKSUM or off + rl > len(data):
                if off + rl > len(data) and rl < 1 << 26:
                    break  # a torn last record: what a crash leaves; the server drops it too
                raise ConfigError(
                    f"cannot read {str(blk)!r} at byte {off}: not a plain file-store block "
                    f"(is the store encrypted at rest or compressed?)"
                )
            end = off + rl - _CHECKSUM
            p = off + _HEAD.size
            subject = data[p : p + slen].decode("utf-8", "replace")
            p += slen
            headers: dict[str, str] = {}
            if has_headers:
                (hlen,) = struct.unpack_from("<I", data, p)
                headers = _headers(data[p + 4 : p + 4 + hlen])
                p += 4 + hlen
            if not seq & (_ERASED | _TOMBSTONE) and slen:
                found[seq] = StoredMessage(subject, seq, time_from_ns(ts), headers, data[p:end])
            off += rl
    for seq in sorted(found):
        yield found[seq]


__all__ = ["node_messages", "stream_dir"]
