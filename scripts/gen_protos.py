"""Regenerate protos/stylegate/v1/*_pb2*.py from the .proto files (run from anywhere).

protoc is run with ``-I protos`` so that descriptors (and server reflection) use the
canonical file names ``stylegate/v1/*.proto``; the generated cross-file imports
(``from stylegate.v1 import ...``) are then rewritten to the installed package path
``stylegate.protos.v1``.

``--check`` generates into a scratch directory and exits 1 when the committed files differ
(``make test`` runs it, so a .proto edited without regenerating fails CI).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PACKAGE = Path("stylegate") / "v1"
IMPORT_RE = re.compile(r"^from stylegate\.v1 import ", re.MULTILINE)


def generate(proto_root: Path) -> list[Path]:
    """Run protoc on every .proto under ``proto_root/stylegate/v1``; returns the outputs."""
    package_dir = proto_root / PACKAGE
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf well-known types
    for proto in sorted(package_dir.glob("*.proto")):
        rel = proto.relative_to(proto_root).as_posix()
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{proto_root}",
                f"-I{include}",
                f"--python_out={proto_root}",
                f"--pyi_out={proto_root}",
                f"--grpc_python_out={proto_root}",
                rel,
            ]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed on {rel}")
    generated = sorted(package_dir.glob("*_pb2*.py*"))
    for path in generated:
        text = path.read_text()
        fixed = IMPORT_RE.sub("from stylegate.protos.v1 import ", text)
        if fixed != text:
            path.write_text(fixed)
    for pkg in (proto_root / "stylegate", package_dir):
        (pkg / "__init__.py").touch()
    return generated


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "protos"
        shutil.copytree(
            PROTO_ROOT / PACKAGE,
            scratch / PACKAGE,
            ignore=shutil.ignore_patterns("*_pb2*", "__pycache__"),
        )
        stale = [
            p.name
            for p in generate(scratch)
            if not (PROTO_ROOT / PACKAGE / p.name).exists()
            or not filecmp.cmp(p, PROTO_ROOT / PACKAGE / p.name, shallow=False)
        ]
    if stale:
        print(
            f"protos are stale ({', '.join(stale)}): run `make protos` and commit the result",
            file=sys.stderr,
        )
        return 1
    print("protos are fresh")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    if parser.parse_args().check:
        return check()
    outputs = generate(PROTO_ROOT)
    print(f"generated {len(outputs)} file(s) into {(PROTO_ROOT / PACKAGE).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
