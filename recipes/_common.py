"""Shared plumbing for the recipes: arguments, output folder and the results file.

Every recipe is a runnable script (``python recipes/NAME.py --help``) with small defaults and
paper-scale flags; it writes ``results.md`` (markdown tables of what it measured, written by
:func:`compattr.apps.report.markdown_table`, with the command that produced it) and its figures
into ``--out``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """An argument parser with the options every recipe shares: --out, --seed, --threads."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(default_out), help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of masks, data splits and training")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on small shared machines)")
    return p


def setup(args: argparse.Namespace) -> Path:
    """Apply the shared options; return the (created) output folder.

    ``--threads`` caps torch and the BLAS/OpenMP pools of NumPy, SciPy and scikit-learn.
    """
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out


def write_results(out: Path, title: str, sections: Iterable[tuple[str, str]]) -> Path:
    """Write ``results.md``: a title, the exact command, then (heading, markdown) sections."""
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    text = [f"# {title}", "", f"Command: `{command}`", f"Written: {time.strftime('%Y-%m-%d %H:%M')}", ""]
    for heading, body in sections:
        text += [f"## {heading}", "", body, ""]
    path = out / "results.md"
    path.write_text("\n".join(text))
    return path
