"""Upload a file in chunks with a progress bar (client streaming).

Run: ``python -m examples.upload.client FILE --target 127.0.0.1:50052``. On a terminal a
rich progress bar shows the upload; otherwise it prints a line every 25 %. Exits 0 when
the server confirms the checksum.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

import grpcstream
from grpcstream_demo import upload_pb2_grpc
from grpcstream_demo.upload_pb2 import Chunk, UploadResult

CHUNK_SIZE = 64 * 1024  # well under gRPC's default 4 MiB message limit


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, hex, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_chunks(path: Path, size: int) -> Iterator[bytes]:
    """The file's contents, ``size`` bytes at a time (the last piece may be shorter)."""
    with path.open("rb") as file:
        yield from iter(lambda: file.read(size), b"")


async def upload(
    target: str, path: Path, chunk_size: int, on_progress: Callable[[int], None]
) -> UploadResult:
    """Send ``path`` to the server in chunks; ``on_progress(n)`` after each ``n`` bytes."""
    checksum = sha256_of(path)
    async with grpcstream.connect(target) as channel:
        client = grpcstream.StreamClient(channel, upload_pb2_grpc.UploadServiceStub, timeout=60.0)
        async with client.client_stream(client.stub.Upload) as stream:
            first = True
            for data in read_chunks(path, chunk_size):
                chunk = (
                    Chunk(name=path.name, data=data, sha256=checksum) if first else Chunk(data=data)
                )
                first = False
                await stream.send(chunk)  # waits while the send queue is full: backpressure
                on_progress(len(data))
            return await stream.close_and_receive()  # half-close, then the one response


def plain_progress(total: int) -> Callable[[int], None]:
    """A progress callback that prints a line at every quarter of ``total``."""
    sent = 0
    quarter = 0

    def advance(n: int) -> None:
        nonlocal sent, quarter
        sent += n
        while total and quarter < 4 and sent * 4 >= total * (quarter + 1):
            quarter += 1
            print(f"sent {25 * quarter}% ({sent} of {total} bytes)", flush=True)

    return advance


async def main(args: argparse.Namespace, total: int) -> int:
    """Upload ``args.file`` (``total`` bytes); return 0 if the server confirmed its checksum."""
    path: Path = args.file
    try:
        if sys.stdout.isatty() and not args.plain:
            columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress("{task.description}", *columns) as progress:
                task = progress.add_task(f"uploading {path.name}", total=total)
                result = await upload(
                    args.target, path, args.chunk_size, lambda n: progress.advance(task, n)
                )
        else:
            result = await upload(args.target, path, args.chunk_size, plain_progress(total))
    except grpcstream.RpcError as error:
        print(f"upload failed: {error}")
        return 1
    verdict = "checksum ok" if result.checksum_ok else "CHECKSUM MISMATCH"
    print(f"{result.name}: {result.bytes} bytes in {result.chunks} chunks, {verdict}")
    return 0 if result.checksum_ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--target", default="127.0.0.1:50052")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    parser.add_argument("--plain", action="store_true", help="no progress bar")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args, args.file.stat().st_size)))
