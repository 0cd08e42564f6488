"""`steerlab release`: assemble several users' sealed parts over one public base into one sealed release.

Each `--part FOLDER KEYFILE` is a sealed release (an online part `<run>.sealed/` written by `steerlab finetune
--key`, or a sealed release of `steerlab personalize`) and the key file of the user whose part it holds. Every
part is opened with its key and re-sealed into the new release, bound to its id, its size and the user's slot
(so whoever assembles holds the keys, as `personalize` does). Nothing personal is written in clear: which
folder each slot came from goes to the private report `<out>.private/parts.json` (mode 0700).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run_release(args: argparse.Namespace) -> int:
    from steerlab.cli.privacy import ask_passphrase
    from steerlab.core.checkpoint import atomic_write_json
    from steerlab.core.outdir import output_dir
    from steerlab.privacy.keys import load_key_files
    from steerlab.privacy.release import private_dir
    from steerlab.privacy.sealed.online import assemble_release

    folders, key_files = [p[0] for p in args.part], [p[1] for p in args.part]
    keys = load_key_files(key_files, allow_insecure=args.allow_insecure, passphrase=ask_passphrase)  # distinct keys
    inputs = [*folders, *key_files]
    with (output_dir(args.out, "release", overwrite=args.overwrite, inputs=inputs) as (out, _),
          output_dir(private_dir(args.out), "release-private", overwrite=args.overwrite, inputs=inputs,
                     flag="the private report") as (private, _)):
        private.chmod(0o700)
        assemble_release(list(zip(folders, keys)), out)
        atomic_write_json(private / "parts.json", {"slots": [{"slot": i, "part": str(Path(f).resolve())}
                                                             for i, f in enumerate(folders)]})
    print(f"sealed release of {len(folders)} users: {out} (the public base bit for bit + one encrypted part per "
          f"user; no key, nothing personal). Each user runs theirs with: steerlab evaluate {out} --key THEIR.key")
    print(f"private report (which part went to which slot; do not publish): {private}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="one sealed release of several users' sealed parts over one public base",
                       description="Example: steerlab release --part runs/online/alice.sealed alice.key --part "
                                   "runs/online/bob.sealed bob.key --out runs/release/reach")
    p.add_argument("--part", nargs=2, action="append", required=True, metavar=("FOLDER", "KEYFILE"),
                   help="a sealed part (finetune --key's <run>.sealed/, or a sealed release of personalize) and the "
                        "key file that opens it; once per user, in slot order")
    p.add_argument("--out", required=True, help="release folder to create; <out>.private/ gets the private report")
    p.add_argument("--overwrite", action="store_true", help="move an existing --out folder aside (never deleted)")
    p.add_argument("--allow-insecure", action="store_true", help="accept key files others can read (warns)")
    p.set_defaults(func=run_release)
