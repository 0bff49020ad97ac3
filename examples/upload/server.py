"""The upload server: receives a file in chunks and checks its SHA-256.

Run: ``python -m examples.upload.server --port 50052 [--save-dir DIR]``. It prints
``listening on HOST:PORT`` once ready; SIGINT/SIGTERM drains and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
from pathlib import Path

import grpcstream
from grpcstream_demo import upload_pb2_grpc
from grpcstream_demo.upload_pb2 import Chunk, UploadResult


class UploadService(grpcstream.StreamServicer, upload_pb2_grpc.UploadServiceServicer):
    """Hashes every chunk as it arrives; optionally writes the file to ``save_dir``.

    Args:
        save_dir: where to store uploads (``None``: only check them).
    """

    def __init__(self, save_dir: Path | None = None) -> None:
        self.save_dir = save_dir

    @grpcstream.client_streaming
    async def Upload(
        self, requests: grpcstream.RequestStream[Chunk], context: grpcstream.CallContext
    ) -> UploadResult:
        """Read chunks until the client half-closes, then answer with a summary."""
        result = UploadResult()
        expected = ""
        digest = hashlib.sha256()
        parts: list[bytes] = []
        async for chunk in requests:
            if result.chunks == 0:
                result.name, expected = chunk.name, chunk.sha256
                if not chunk.name or not expected:
                    raise grpcstream.InvalidArgument("the first chunk needs name and sha256")
            digest.update(chunk.data)
            result.chunks += 1
            result.bytes += len(chunk.data)
            if self.save_dir is not None:
                parts.append(chunk.data)
        if result.chunks == 0:
            raise grpcstream.InvalidArgument("no chunks received")
        result.sha256 = digest.hexdigest()
        result.checksum_ok = result.sha256 == expected
        if self.save_dir is not None and result.checksum_ok:
            (self.save_dir / Path(result.name).name).write_bytes(b"".join(parts))
        logging.info("%s: %d bytes, checksum ok: %s", result.name, result.bytes, result.checksum_ok)
        return result


async def main(port: int, save_dir: Path | None) -> None:
    """Serve on 127.0.0.1:``port`` (0 picks a free port) until SIGINT/SIGTERM."""
    server = grpcstream.StreamServer(f"127.0.0.1:{port}")
    server.add(UploadService(save_dir))
    await server.start()
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    await server.serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50052, help="0 picks a free port")
    parser.add_argument("--save-dir", type=Path, help="store verified uploads here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="server: %(message)s")
    asyncio.run(main(args.port, args.save_dir))
