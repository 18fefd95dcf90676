"""Carry the pinned wheels to a machine that reaches no package index, in bounded transfers.

    python -m spqr_fast.devtools.wheelhouse download --python 3.12   # here: pip download the pinned set
    python -m spqr_fast.devtools.wheelhouse split --batch-mib 60      # here: batches/NN/, each ≤ 60 MiB
    python -m spqr_fast.devtools.wheelhouse join                      # there: parts → wheels, hashes checked
    python -m spqr_fast.devtools.wheelhouse install                   # there: pip install --no-index

A wheel larger than a batch (onnxruntime-gpu 1.31.1 for cp312 is 255.6 MB) is cut into parts;
`split` writes a manifest of every wheel's sha256 into each batch, so `join` refuses a missing or
corrupted part. One batch goes per transfer; on a machine kept warm they accumulate (the device
tool keeps ignored paths between calls). Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / ".wheelhouse"  # git-ignored
MANIFEST = "wheelhouse.json"
# The GPU machine brings its own CUDA torch; ray is only for scale-out.
LEAVE_OUT = ("torch", "ray")


def pinned_requirements(constraints: Path = ROOT / "constraints.txt", gpu: bool = True) -> list[str]:
    """Every package of the verified set (constraints.txt holds the whole resolved tree, pinned),
    with onnxruntime-gpu in place of onnxruntime for a GPU machine, minus what the target
    already has. Downloaded without dependency resolution, so a dependency of torch never pulls
    a second CUDA build."""
    reqs = []
    for line in constraints.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "==" not in line:
            continue
        name = line.split("==", 1)[0].strip().lower().replace("_", "-")
        if name in LEAVE_OUT:
            continue
        reqs.append(line.replace("onnxruntime==", "onnxruntime-gpu==") if gpu and name == "onnxruntime" else line)
    return reqs


# pip takes a platform tag literally: name the older manylinux tags some pinned wheels carry.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")


def download_command(dest: Path, python: str, requirements: list[str], platforms: tuple[str, ...] = PLATFORMS) -> list[str]:
    """pip download of binary wheels for another Python and platform, exactly the pins given."""
    tags = [arg for p in platforms for arg in ("--platform", p)]
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", python,
            *tags, "--dest", str(dest), *requirements]


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def split(folder: Path, batch_bytes: int) -> list[Path]:
    """Pack folder/*.whl into folder/batches/NN/, each at most `batch_bytes`, cutting larger wheels
    into parts; every batch carries the manifest. Returns the batch folders."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {folder} — run `download` first")
    manifest = {w.name: {"sha256": _sha(w), "bytes": w.stat().st_size} for w in wheels}
    pieces: list[tuple[str, bytes]] = []
    for w in wheels:
        data = w.read_bytes()
        if len(data) <= batch_bytes:
            pieces.append((w.name, data))
        else:
            for i in range(0, len(data), batch_bytes):
                pieces.append((f"{w.name}.part{i // batch_bytes:03d}", data[i:i + batch_bytes]))
    batches: list[list[tuple[str, bytes]]] = [[]]
    for name, data in sorted(pieces, key=lambda p: -len(p[1])):  # first fit, largest first
        home = next((b for b in batches if sum(len(d) for _, d in b) + len(data) <= batch_bytes), None)
        if home is None:
            batches.append(home := [])
        home.append((name, data))
    out = []
    for n, batch in enumerate(b for b in batches if b):
        target = folder / "batches" / f"{n:02d}"
        target.mkdir(parents=True, exist_ok=True)
        for name, data in batch:
            (target / name).write_bytes(data)
        (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
        out.append(target)
    return out


def join(folder: Path) -> list[Path]:
    """Rebuild every wheel of the manifest from the batches present, checking each hash."""
    batches = sorted((folder / "batches").glob("*"))
    manifests = [json.loads((b / MANIFEST).read_text()) for b in batches if (b / MANIFEST).is_file()]
    if not manifests:
        raise SystemExit(f"no batches with a {MANIFEST} under {folder / 'batches'} — carry them here first")
    manifest = manifests[0]
    out = []
    for name, info in sorted(manifest.items()):
        whole = [b / name for b in batches if (b / name).is_file()]
        parts = sorted((p for b in batches for p in b.glob(f"{name}.part*")), key=lambda p: p.name)
        data = whole[0].read_bytes() if whole else b"".join(p.read_bytes() for p in parts)
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            have = "missing" if not (whole or parts) else f"{len(parts)} part(s), {len(data)} of {info['bytes']} bytes"
            raise SystemExit(f"{name}: {have} — carry every batch, then join again")
        (folder / name).write_bytes(data)
        out.append(folder / name)
    return out


def install_command(folder: Path, requirements: list[str]) -> list[str]:
    """Install the set from the joined wheels. The project itself then runs from its tree
    (`PYTHONPATH=.`, or `pip install --no-deps --no-build-isolation -e .`)."""
    return [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(folder), *requirements]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m spqr_fast.devtools.wheelhouse", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["download", "split", "join", "install", "list"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--python", default="3.12", help="download: the target's Python version")
    ap.add_argument("--platform", action="append", default=None,
                    help=f"download: a wheel platform tag of the target (repeat; default {', '.join(PLATFORMS)})")
    ap.add_argument("--batch-mib", type=float, default=60.0, help="split: at most this much per transfer")
    ap.add_argument("--cpu", action="store_true", help="onnxruntime (CPU) instead of onnxruntime-gpu")
    args = ap.parse_args(argv)
    reqs = pinned_requirements(gpu=not args.cpu)
    if args.action == "list":
        print("\n".join(reqs))
    elif args.action == "download":
        args.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(download_command(args.dir, args.python, reqs, tuple(args.platform or PLATFORMS)), check=True)
    elif args.action == "split":
        for b in split(args.dir, int(args.batch_mib * 2**20)):
            size = sum(f.stat().st_size for f in b.iterdir()) / 2**20
            print(f"{b.relative_to(ROOT) if b.is_relative_to(ROOT) else b}: {size:.1f} MiB")
    elif args.action == "join":
        print(f"joined {len(join(args.dir))} wheels into {args.dir}")
    else:
        subprocess.run(install_command(args.dir, reqs), check=True)


if __name__ == "__main__":
    main()
