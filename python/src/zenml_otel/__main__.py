"""`python -m zenml_otel decode < body.bin`: an OTLP/HTTP logs request body (plain or gzip)
as JSON, as `decode_export_request` returns it."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import BinaryIO

from ._otlp import decode_export_request
from ._relay import MAX_BODY_BYTES, HttpError, unpack


def main(argv: Sequence[str], stdin: BinaryIO) -> int:
    """The command line; the exit code."""
    if list(argv) != ["decode"]:
        print("usage: python -m zenml_otel decode < body.bin", file=sys.stderr)
        return 2
    body = stdin.read()
    # A protobuf request never starts with gzip's magic (field 3, wire type 7).
    encoding = "gzip" if body[:2] == b"\x1f\x8b" else "identity"
    try:
        decoded = decode_export_request(unpack(body, encoding, MAX_BODY_BYTES))
    except (ValueError, HttpError) as e:
        print(f"zenml_otel decode: {e}", file=sys.stderr)
        return 1
    json.dump(decoded, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdin.buffer))
