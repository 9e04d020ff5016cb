"""``python -m fastrand.comfyui install COMFYUI_DIR``: writes the custom node folder that loads
fastrand's nodes into a ComfyUI installation (run it with the Python that runs ComfyUI, where
fastrand is installed).

The folder is ``custom_nodes/fastrand-nodes``, not ``custom_nodes/fastrand``: ComfyUI registers
a node folder in ``sys.modules`` under the folder's name, which must not hide the package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FOLDER = "fastrand-nodes"
INIT = '''\
"""fastrand's ComfyUI nodes (written by `python -m fastrand.comfyui install`)."""

from fastrand.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
'''


def install(comfyui_dir: str | Path) -> Path:
    """Writes ``COMFYUI_DIR/custom_nodes/fastrand-nodes/__init__.py``; returns its path. Leaves a
    folder of that name that holds anything else alone (FileExistsError)."""
    custom_nodes = Path(comfyui_dir) / "custom_nodes"
    if not custom_nodes.is_dir():
        raise FileNotFoundError(f"comfyui_dir: no custom_nodes folder in {comfyui_dir}")
    folder = custom_nodes / FOLDER
    init = folder / "__init__.py"
    if folder.exists():
        others = {p.name for p in folder.iterdir()} - {"__init__.py", "__pycache__"}
        if others or (init.exists() and init.read_text() != INIT):
            raise FileExistsError(f"{folder} exists and is not fastrand's node folder; left alone")
    folder.mkdir(exist_ok=True)
    init.write_text(INIT)
    return init


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastrand.comfyui", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("install", help="add fastrand's nodes to a ComfyUI installation")
    cmd.add_argument("comfyui_dir", help="the ComfyUI folder (the one holding custom_nodes/)")
    args = parser.parse_args(argv)
    try:
        path = install(args.comfyui_dir)
    except OSError as e:
        print(f"fastrand.comfyui: {e}", file=sys.stderr)
        return 1
    print(f"fastrand.comfyui: wrote {path}; restart ComfyUI to load the nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
