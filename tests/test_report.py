"""The shared report writer and the ``python -m interpret`` dispatcher."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from interpret.core.report import page, png_data_uri, script_json, write_report


def test_write_report_round_trip(tmp_path):
    out = tmp_path / "reports" / "r"
    arrays = {"x": np.arange(6).reshape(2, 3)}
    index = write_report(out, page("t", "<p>hi</p>"), {"a": 1}, arrays, {"shot.png": b"\x89PNG"})
    assert index == out / "index.html"
    assert "<p>hi</p>" in index.read_text()
    assert json.loads((out / "summary.json").read_text()) == {"a": 1}
    np.testing.assert_array_equal(np.load(out / "arrays.npz")["x"], arrays["x"])
    assert (out / "shot.png").read_bytes() == b"\x89PNG"
    # Rewriting replaces the whole directory and leaves no staging folders behind.
    write_report(out, page("t", "<p>again</p>"), {"a": 2})
    assert not (out / "arrays.npz").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]


def test_failed_write_keeps_the_old_report(tmp_path, monkeypatch):
    out = tmp_path / "r"
    write_report(out, page("t", "old"), {"a": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(OSError, match="disk full"):
        write_report(out, page("t", "new"), {"a": 2}, {"x": np.zeros(2)})
    assert "old" in (out / "index.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_png_round_trip_and_script_json_escaping():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    import base64
    import io

    uri = png_data_uri(image)
    assert uri.startswith("data:image/png;base64,")
    png = base64.b64decode(uri.removeprefix("data:image/png;base64,"))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    text = script_json({"s": "</script><b>&", "a": np.float32(0.5), "v": np.arange(2)})
    assert "</script>" not in text and "<" not in text
    assert json.loads(text) == {"s": "</script><b>&", "a": 0.5, "v": [0, 1]}


def test_cli_without_verb_is_a_one_line_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "interpret"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "error" in result.stderr
