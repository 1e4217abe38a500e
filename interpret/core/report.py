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
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agents.fileio import staging_dir
from agents.outputs import swap_in


def read_static(name: str) -> str:
    """The text of a CSS or JavaScript file shipped in ``interpret/core/static/``."""
    return resources.files("interpret.core").joinpath("static", name).read_text(encoding="utf-8")


BASE_CSS = read_static("base.css")


def png_data_uri(image: np.ndarray) -> str:
    """uint8 image (H, W), (H, W, 3) or (H, W, 4) -> a PNG file as
    ``data:image/png;base64,...``, for an ``<img src>`` or a JS string."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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


def report_files(
    index_html: str,
    summary: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
) -> dict[str, bytes]:
    """A report as {file name: bytes}: ``index.html``, ``summary.json``, ``arrays.npz``."""
    files = {
        "index.html": index_html.encode("utf-8"),
        "summary.json": (json.dumps(summary, indent=2, default=str) + "\n").encode("utf-8"),
    }
    if arrays:
        files["arrays.npz"] = npz_bytes(arrays)
    return files


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of a compressed ``.npz`` file holding `arrays` (no pickle)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


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
    files = {**report_files(index_html, summary, arrays), **(files or {})}
    return write_files(out_dir, files, replace=replace)


def write_files(out_dir: str | Path, files: dict[str, bytes], *, replace: bool = True) -> Path:
    """Write {relative name: bytes} into ``out_dir`` atomically (see `write_report`); returns
    the path of its ``index.html``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out_dir)
    try:
        for name, data in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        swap_in(staging, out_dir, replace=replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "index.html"
