"""Report directories: a self-contained ``index.html``, ``summary.json`` and raw arrays.

A report is written into a temporary sibling directory and renamed into place, so a crash
never leaves a half-written report; an existing report at the same path is replaced (exchanged
atomically) only with ``replace`` (the verbs' ``--force``). Files and directories get the
user's umask, so the report is readable as a whole by whoever may read its parent.
Pages inline everything (CSS, JavaScript, images as data URIs): they open from disk with no
server and no network.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agents.fileio import staging_dir, write_json
from agents.outputs import swap_in

BASE_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.6em; border: 1px solid #ccc; }
img.pixel { image-rendering: pixelated; }
.muted { color: #777; font-size: 0.9em; }
"""


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 image (H, W), (H, W, 3) or (H, W, 4) -> PNG file bytes."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(image: np.ndarray) -> str:
    """uint8 image -> ``data:image/png;base64,...`` for an ``<img src>`` or a JS string."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def script_json(data: Any) -> str:
    """JSON safe to place inside a ``<script>`` element (no ``</script>`` breakout)."""
    text = json.dumps(data, separators=(",", ":"), default=_json_default)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def page(title: str, body: str, *, css: str = "", script: str = "") -> str:
    """A whole HTML document; ``body``, ``css`` and ``script`` are inlined as given."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{BASE_CSS}{css}</style></head>\n"
        f"<body>\n{body}\n<script>\n{script}\n</script>\n</body></html>\n"
    )


def write_report(
    out_dir: str | Path,
    index_html: str,
    summary: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
    files: dict[str, bytes] | None = None,
    *,
    replace: bool = True,
) -> Path:
    """Write ``index.html``, ``summary.json``, ``arrays.npz`` (if any) and extra ``files``
    into ``out_dir`` atomically; returns the path of ``index.html``. An existing ``out_dir``
    is replaced only with ``replace`` (else `agents.outputs.OutputError`)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out_dir)
    try:
        (staging / "index.html").write_text(index_html, encoding="utf-8")
        write_json(staging / "summary.json", summary)
        if arrays:
            np.savez_compressed(staging / "arrays.npz", **arrays)
        for name, data in (files or {}).items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        swap_in(staging, out_dir, replace=replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "index.html"
