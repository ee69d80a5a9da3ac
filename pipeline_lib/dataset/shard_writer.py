"""Writing one dataset shard's HDF5 file, in the calling thread or in a writer process.

Why a process: h5py holds the GIL for the whole of every write (about 7 s of the 48,000-face
dataset), and the thread that draws latents and launches the GPU's kernels needs it too, so a
writer *thread* made the GPU wait (3,753 faces/s end to end against 7,000 in compute). The
writer process owns the HDF5 file; the synthesis process copies each chunk into a ring of
shared-memory slots (an anonymous memfd both processes map; numpy copies release the GIL) and
sends one short line per chunk over a pipe. The process answers each line when the slot is free
again, and reports an error (with its message, which `atomic_path` reads for a full disk)
instead of an answer, so a failed write fails the job. The synthesis process renames the
file only after the writer has closed it: a crash anywhere leaves only the temporary file.

On a CPU the synthesis is the bottleneck by far, so the default there is `InlineWriter` (the
same file code, called from the caller's writer thread), which starts no extra interpreter.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np

from pipeline_lib.dataset.integrity import ContentHasher


class ShardFile:
    """The HDF5 side of a shard: arrays created from `specs`, rows written in order and hashed.

    specs: name -> {"shape": full shape, "dtype": numpy dtype string, "chunks": HDF5 chunk shape
    or None}. Rows must arrive in order (the content checksum is a running hash)."""

    def __init__(self, path, specs: dict):
        self.specs = specs
        self.file = h5py.File(path, "w")
        for name, spec in specs.items():
            chunks = tuple(spec["chunks"]) if spec.get("chunks") else None
            self.file.create_dataset(name, tuple(spec["shape"]), dtype=spec["dtype"], chunks=chunks)
        self.hasher = ContentHasher()
        # sha256 of a chunk runs in this thread while h5py writes it (hashlib releases the GIL):
        # hashing and writing each take ~5 s of the 48,000-face dataset, so this halves the writer.
        self.hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-hash")
        self.busy_s = 0.0

    def _hash(self, rows: dict) -> None:
        for name in self.specs:
            self.hasher.update(name, rows[name])

    def write(self, offset: int, rows: dict) -> None:
        """Returns once `rows` are written and hashed: the caller may then reuse their memory."""
        t0 = time.perf_counter()
        if offset != self.hasher.rows:
            raise RuntimeError(f"rows at {offset} arrived out of order (expected {self.hasher.rows})")
        count = len(next(iter(rows.values())))
        hashed = self.hashing.submit(self._hash, rows)
        try:
            for name in self.specs:
                self.file[name][offset : offset + count] = rows[name]
        finally:
            hashed.result()
        self.hasher.rows += count
        self.busy_s += time.perf_counter() - t0

    def finish(self, attrs: dict) -> dict:
        """Store `attrs` and the content checksums, close; returns what the caller reports."""
        self.file.attrs.update(attrs)
        self.file.attrs["content_sha256"] = self.hasher.content_sha256()  # verified by store.open_faces
        self.file.attrs["array_sha256"] = json.dumps(self.hasher.array_sha256())
        self.close()
        return {"writer_busy_s": self.busy_s, "content_sha256": self.hasher.content_sha256()}

    def close(self) -> None:
        self.hashing.shutdown()
        self.file.close()


class InlineWriter:
    """Writes in the calling thread (CPU runs and tests: no second interpreter)."""

    def __init__(self, path, specs: dict, slot_rows: int):
        self.file = ShardFile(path, specs)

    def write(self, offset: int, rows: dict) -> None:
        self.file.write(offset, rows)

    def finish(self, attrs: dict) -> dict:
        return self.file.finish(attrs)

    def abort(self) -> None:
        self.file.close()


def slot_layout(specs: dict, slot_rows: int) -> tuple[dict, int]:
    """(name -> (byte offset in a slot, row shape, dtype), bytes per slot), 64-byte aligned."""
    layout, size = {}, 0
    for name, spec in specs.items():
        row_shape, dtype = tuple(spec["shape"][1:]), np.dtype(spec["dtype"])
        layout[name] = (size, row_shape, dtype)
        size += -(-slot_rows * int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize // 64) * 64
    return layout, size


def slot_views(buffer, specs: dict, slot_rows: int, slots: int) -> list[dict]:
    layout, size = slot_layout(specs, slot_rows)
    return [
        {
            name: np.frombuffer(buffer, dtype, slot_rows * int(np.prod(shape, dtype=np.int64)), s * size + at).reshape(
                (slot_rows,) + shape
            )
            for name, (at, shape, dtype) in layout.items()
        }
        for s in range(slots)
    ]


class ProcessWriter:
    """A writer process fed through shared-memory slots; same interface as `InlineWriter`."""

    def __init__(self, path, specs: dict, slot_rows: int, slots: int = 4):
        self.specs, self.slot_rows = specs, slot_rows
        _, size = slot_layout(specs, slot_rows)
        if hasattr(os, "memfd_create"):  # anonymous: not bounded by /dev/shm, gone with both processes
            self.fd = os.memfd_create("genfields-shard-slots")
        else:
            self._tmp = tempfile.TemporaryFile()
            self.fd = self._tmp.fileno()
        os.ftruncate(self.fd, size * slots)
        self.buffer = mmap.mmap(self.fd, size * slots)
        self.views = slot_views(self.buffer, specs, slot_rows, slots)
        self.free = list(range(slots))
        spec = {"path": str(path), "specs": specs, "slot_rows": slot_rows, "slots": slots, "fd": self.fd}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline_lib.dataset.shard_writer", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(self.fd,),
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")]))},
        )

    def _send(self, msg: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._receive()  # reports the writer's own error
            raise

    def _receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"the shard writer process ended without an answer (exit code {code})")
        msg = json.loads(line)
        if msg["op"] == "error":
            self.proc.wait()
            raise RuntimeError(f"the shard writer process failed: {msg['type']}: {msg['message']}")
        return msg

    def write(self, offset: int, rows: dict) -> None:
        while not self.free:
            self.free.append(self._receive()["slot"])
        slot = self.free.pop()
        count = len(next(iter(rows.values())))
        for name, view in self.views[slot].items():
            np.copyto(view[:count], rows[name], casting="no")  # releases the GIL
        self._send({"op": "write", "slot": slot, "offset": offset, "count": count})

    def finish(self, attrs: dict) -> dict:
        self._send({"op": "finish", "attrs": attrs})
        while (msg := self._receive())["op"] != "finished":
            pass
        self.proc.wait()
        self._close()
        return msg["result"]

    def abort(self) -> None:
        """Stop the process before the caller removes its temporary file."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.fd is None:
            return
        self.views = []
        try:
            self.buffer.close()
        except BufferError:  # a caller still holds a view: the mapping goes with the process
            pass
        if hasattr(self, "_tmp"):
            self._tmp.close()
        else:
            os.close(self.fd)
        self.fd = None


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _serve(spec: dict) -> int:
    """The writer process: one JSON line in, one JSON line out, until `finish` or an error."""
    out = sys.stdout.buffer

    def reply(msg):
        out.write((json.dumps(msg) + "\n").encode())
        out.flush()

    try:
        _, size = slot_layout(spec["specs"], spec["slot_rows"])
        buffer = mmap.mmap(spec["fd"], size * spec["slots"])
        views = slot_views(buffer, spec["specs"], spec["slot_rows"], spec["slots"])
        shard = ShardFile(spec["path"], spec["specs"])
        for line in sys.stdin.buffer:
            msg = json.loads(line)
            if msg["op"] == "write":
                shard.write(msg["offset"], {name: v[: msg["count"]] for name, v in views[msg["slot"]].items()})
                reply({"op": "done", "slot": msg["slot"]})
            elif msg["op"] == "finish":
                reply({"op": "finished", "result": shard.finish(msg["attrs"])})
                return 0
        raise EOFError("the synthesis process went away before the shard was finished")
    except BaseException as exc:  # reported to the synthesis process, which fails the job
        traceback.print_exc()
        try:
            reply({"op": "error", "type": type(exc).__name__, "message": str(exc)})
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(_serve(json.loads(sys.argv[1])))
