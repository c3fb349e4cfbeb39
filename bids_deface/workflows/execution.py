"""How a workflow runs: the nipype plugin for a run, and nipype-safe unique node names."""

from __future__ import annotations

import re


def execution_plugin(opts, n_images: int) -> tuple[str, dict]:
    """The nipype plugin and its arguments for a run of ``n_images`` (``opts``: ``plugin``,
    ``plugin_args``, ``nprocs``).

    One image, or one process, runs in this process (nipype's Linear plugin): a MultiProc worker
    would import the detector's libraries (~2 s of CPU) again, for nothing to run in parallel.
    """
    plugin_args = dict(opts.plugin_args)
    if opts.plugin == "MultiProc" and (n_images == 1 or opts.nprocs == 1) and not plugin_args:
        return "Linear", {}
    if opts.plugin == "MultiProc":
        plugin_args.setdefault("n_procs", opts.nprocs)
        plugin_args.setdefault("raise_insufficient", False)
    return opts.plugin, plugin_args


def unique_node_name(prefix: str, text: str, taken: set[str]) -> str:
    """``prefix_text`` with every character nipype does not take as ``_``, numbered when
    ``taken`` already holds it (``taken`` gets the name)."""
    base = f"{prefix}_" + re.sub(r"[^0-9A-Za-z]", "_", text)
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name
