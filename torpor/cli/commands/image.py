"""torpor image show DIR [--format text|json]: what an image holds, readable without other tools."""

from __future__ import annotations

import json
import sys

from torpor.cli.args import Parser

_KIND_NAMES = {"anon": "anon", "file": "file", "shmem": "shmem", "vdso": "[vdso]", "vvar": "[vvar]",
               "vvar_vclock": "[vvar_vclock]", "vsyscall": "[vsyscall]"}


def _parser() -> Parser:
    p = Parser("image show", description="Print a summary of a checkpoint image.")
    p.add_argument("path")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--verify", action="store_true", help="also verify every page checksum")
    return p


def _prot(p: int) -> str:
    return ("r" if p & 1 else "-") + ("w" if p & 2 else "-") + ("x" if p & 4 else "-")


def main(argv: list[str], g) -> int:
    if not argv or argv[0] != "show":  # the one action: `torpor image show DIR`
        sys.stderr.write("torpor: image: usage: torpor image show DIR [--format text|json] [--verify]\n")
        return 2
    args = _parser().parse_args(argv[1:])
    from torpor.image.schema import OpenFile, PipeFile, TreeImage
    from torpor.image.show import describe, format_size
    from torpor.image.store import ImageReader

    with ImageReader(args.path) as reader:
        if args.verify:
            reader.verify_pages()
        summary = describe(reader)
        tree = reader.record("tree", TreeImage) if "tree" in reader.records() else None
        if args.format == "json":
            from torpor.image.codec import to_builtins

            summary["tree"] = to_builtins(tree) if tree else None
            if tree:
                for p in summary["tree"]["processes"]:
                    for th in p["threads"]:
                        th["regs"] = th["regs"][:16] + "..."
                        th["xstate"] = f"<{len(th['xstate'])} chars>"
            json.dump(summary, sys.stdout, indent=2, default=str)
            print()
            return 0
        out = sys.stdout.write
        out(f"image      {summary['path']}\n")
        out(f"kind       {summary['kind']}, created {summary['created_iso']}, kernel {summary['kernel']}\n")
        out(f"cpu needs  xstate features {summary['xfeatures_hex']}\n")
        out(f"size       {format_size(summary['total_size'])} in {len(summary['files'])} files\n")
        if tree is None:
            return 0
        files = {f.id: f for f in tree.files}
        for p in tree.processes:
            if p.zombie:
                out(f"\nprocess {p.pid} ({p.comm}) zombie, parent {p.ppid}, exit status {p.exit_status:#x}\n")
                continue
            stored = sum(r.npages for v in p.vmas for r in v.pages) * 4096
            out(f"\nprocess {p.pid} ({p.comm}) parent {p.ppid} pgid {p.pgid} sid {p.sid}"
                f" uid {p.creds.uid[0]} exe {p.mm.exe}\n")
            out(f"  cwd {p.cwd}  umask {p.umask:03o}  threads {len(p.threads)}  "
                f"memory areas {len(p.vmas)}  stored pages {format_size(stored)}\n")
            for th in p.threads:
                sc = f" in syscall {th.in_syscall}" if th.in_syscall >= 0 else ""
                out(f"  thread {th.tid} {th.name!r} state {th.state}{sc} sigmask {th.sigmask:#x}\n")
            for v in p.vmas:
                size = v.end - v.start
                stored_v = sum(r.npages for r in v.pages) * 4096
                name = v.path or _KIND_NAMES.get(v.kind, v.kind)
                out(f"  {v.start:012x}-{v.end:012x} {_prot(v.prot)}{'s' if v.shared else 'p'} "
                    f"{format_size(size):>10} stored {format_size(stored_v):>10}  {name}\n")
            for fd in p.fds:
                f = files[fd.file_id]
                if isinstance(f, OpenFile):
                    what = f"{f.path}{' (deleted)' if f.deleted else ''} pos {f.pos} flags {f.flags:o}"
                elif isinstance(f, PipeFile):
                    what = f"pipe:[{f.inode}] {f.data_len} bytes buffered flags {f.flags:o}"
                else:
                    what = f"{type(f).__name__} {getattr(f, 'key', '')}"
                out(f"  fd {fd.fd:<3} {what}\n")
    return 0
