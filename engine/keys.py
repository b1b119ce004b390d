"""`mfvan-keys`: make CURVE keypairs for the server and for each allowed client.

    mfvan-keys server --dir keys/            -> keys/server.key, keys/server.key_secret
    mfvan-keys client alice --dir keys/      -> keys/clients/alice.key (allow-list copy) and
                                                keys/alice.key, keys/alice.key_secret

The allow-list folder (`keys/clients/`) holds public keys only; point the server's
`security.client_allow_dir` at it. Secret files are created 0600.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import zmq.auth

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def make_keypair(folder: Path, name: str, force: bool = False) -> tuple[Path, Path]:
    if not _NAME.match(name):
        raise ValueError(f"key name {name!r}: use letters, digits, '_', '.', '-' (1-64 chars)")
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise FileExistsError(f"{public} exists; pass --force to replace it")
    old_umask = os.umask(0o077)
    try:
        pub, sec = zmq.auth.create_certificates(str(folder), name)
    finally:
        os.umask(old_umask)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfvan-keys", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("name", nargs="?", default=None, help="client name (required for client)")
    parser.add_argument("--dir", default="keys", help="key folder (default ./keys)")
    parser.add_argument("--force", action="store_true", help="replace existing keys")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    try:
        if args.role == "server":
            pub, sec = make_keypair(folder, args.name or "server", args.force)
            print(f"server public key: {pub}\nserver secret key: {sec} (keep it on the server only)")
        else:
            if not args.name:
                parser.error("client needs a NAME")
            pub, sec = make_keypair(folder, args.name, args.force)
            allow = folder / "clients"
            allow.mkdir(exist_ok=True)
            shutil.copy2(pub, allow / pub.name)
            print(f"client secret key: {sec} (give to {args.name})\nallowed: {allow / pub.name}")
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"mfvan-keys: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
