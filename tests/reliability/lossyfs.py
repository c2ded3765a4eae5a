"""A pass-through FUSE filesystem that keeps written data in memory until it is fsynced.

    python lossyfs.py BACKING_DIR MOUNTPOINT      # runs until unmounted

File data reaches ``BACKING_DIR`` only through ``fsync`` (or a write on a handle opened with
``O_SYNC``/``O_DSYNC``); names (create, rename, unlink, mkdir) go through at once, as a
journalling filesystem keeps its metadata. Unmounting discards every write not fsynced: that is
the power loss (kill the programs using the mount first, then ``fusermount3 -u MOUNTPOINT``).
The backing directory then holds what a disk would hold after the power came back.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from typing import Any

import mfusepy as fuse


class LossyFS(fuse.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.dirty: dict[str, bytearray] = {}  # path -> content not yet on the backing disk
        self.dirty_from: dict[str, int] = {}  # path -> first offset changed since the last sync
        self.handles: dict[int, tuple[str, bool]] = {}  # fh -> (path, writes are synchronous)
        self.next_fh = 1
        self._guard = threading.RLock()

    # -- helpers ------------------------------------------------------------------------
    def _real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _content(self, path: str) -> bytearray:
        buf = self.dirty.get(path)
        if buf is None:
            with open(self._real(path), "rb") as f:
                buf = bytearray(f.read())
            self.dirty[path] = buf
            self.dirty_from[path] = len(buf)
        return buf

    def _mark(self, path: str, offset: int) -> None:
        self.dirty_from[path] = min(self.dirty_from.get(path, offset), offset)

    def _sync(self, path: str) -> None:
        buf = self.dirty.pop(path, None)
        start = self.dirty_from.pop(path, 0)
        if buf is None:
            return
        fd = os.open(self._real(path), os.O_WRONLY)
        try:
            if start < len(buf):
                os.pwrite(fd, bytes(buf[start:]), start)
            os.ftruncate(fd, len(buf))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _handle(self, path: str, flags: int) -> int:
        sync = bool(flags & (os.O_SYNC | os.O_DSYNC))
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = (path, sync)
        return fh

    # -- metadata -------------------------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        with self._guard:
            try:
                st = os.lstat(self._real(path))
            except FileNotFoundError:
                raise fuse.FuseOSError(errno.ENOENT) from None
            attrs = {
                k: getattr(st, k)
                for k in (
                    "st_mode",
                    "st_nlink",
                    "st_uid",
                    "st_gid",
                    "st_size",
                    "st_atime",
                    "st_mtime",
                    "st_ctime",
                )
            }
            if path in self.dirty:
                attrs["st_size"] = len(self.dirty[path])
            return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        return {
            k: getattr(st, k)
            for k in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        with self._guard:
            os.unlink(self._real(path))
            self.dirty.pop(path, None)
            self.dirty_from.pop(path, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._guard:
            os.rename(self._real(old), self._real(new))
            self.dirty.pop(new, None)
            self.dirty_from.pop(new, None)
            if old in self.dirty:
                self.dirty[new] = self.dirty.pop(old)
                self.dirty_from[new] = self.dirty_from.pop(old)
        return 0

    # -- data -----------------------------------------------------------------------------
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self._guard:
            fd = os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            os.close(fd)
            self.dirty.pop(path, None)
            self.dirty_from.pop(path, None)
            flags = getattr(fi, "flags", 0) if fi is not None else 0
            return self._handle(path, flags)

    def open(self, path: str, flags: int) -> int:
        with self._guard:
            if not os.path.exists(self._real(path)):
                raise fuse.FuseOSError(errno.ENOENT)
            if flags & os.O_TRUNC:
                self._content(path).clear()
                self._mark(path, 0)
            return self._handle(path, flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._guard:
            buf = self.dirty.get(path)
            if buf is not None:
                return bytes(buf[offset : offset + size])
            with open(self._real(path), "rb") as f:
                f.seek(offset)
                return f.read(size)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._guard:
            buf = self._content(path)
            if offset > len(buf):
                buf.extend(b"\0" * (offset - len(buf)))
            buf[offset : offset + len(data)] = data
            self._mark(path, offset)
            if self.handles.get(fh, (path, False))[1]:
                self._sync(path)
            return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._guard:
            buf = self._content(path)
            if length < len(buf):
                del buf[length:]
            else:
                buf.extend(b"\0" * (length - len(buf)))
            self._mark(path, min(length, len(buf)))
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._guard:
            self._sync(path)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._guard:
            self.handles.pop(fh, None)
        return 0


def main() -> None:
    backing, mountpoint = sys.argv[1], sys.argv[2]
    fuse.FUSE(LossyFS(backing), mountpoint, foreground=True, nothreads=True)


if __name__ == "__main__":
    main()
