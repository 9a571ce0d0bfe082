"""Who a client is: this install's node ids and the folder that keeps them (contract §8).

Every kind of client of one install (``cli-…``, ``tui-…``, ``py-…``) shares one
random suffix, made once and kept in ``syncd_home()/node``, so a client keeps
its node id across runs and its writes are recognisable as its own.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from syncd.crdt import CrdtError, validate_node
from syncd.files import atomic_write

__all__ = ["default_node", "syncd_home"]

logger = logging.getLogger(__name__)


def syncd_home() -> Path:
    """Where a client keeps its node id: ``$SYNCD_HOME``, else ``$XDG_CONFIG_HOME/syncd``,
    else ``~/.config/syncd``."""
    if home := os.environ.get("SYNCD_HOME"):
        return Path(home)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "syncd"


def default_node(kind: str = "py") -> str:
    """This install's node id for a kind of client, e.g. ``cli-3f9a1c2d``.

    The random part is made once and kept in ``syncd_home()/node``, so a client
    keeps its node id across runs (contract §8). If the file cannot be written,
    a fresh id is used for this run only.
    """
    path = syncd_home() / "node"
    try:
        suffix = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        suffix = _create_node_file(path)
    except OSError as error:
        logger.warning("cannot read %s (%s): using a temporary node id", path, error)
        suffix = secrets.token_hex(4)
    node = f"{kind}-{suffix}"
    try:
        validate_node(node)
    except CrdtError:
        logger.warning("%s does not hold a valid node id: using a temporary one", path)
        node = f"{kind}-{secrets.token_hex(4)}"
    return node


def _create_node_file(path: Path) -> str:
    suffix = secrets.token_hex(4)
    staged = path.with_name(f"node.{suffix}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(staged, suffix + "\n")
        try:
            os.link(staged, path)  # fails if another process created it meanwhile
        except FileExistsError:
            return path.read_text(encoding="utf-8").strip()
        finally:
            staged.unlink(missing_ok=True)
    except OSError as error:
        logger.warning("cannot save a node id in %s (%s): using a temporary one", path, error)
    return suffix
