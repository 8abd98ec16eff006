"""Test documents for knowledge memory: a small folder of Markdown, text, HTML and a PDF written by hand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engram.core.ports import Embedder, Vectors


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(pages: Sequence[Sequence[str]], title: str) -> bytes:
    """A minimal valid PDF 1.4: one Helvetica text line per entry, the pages in order, and a document title."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for lines in pages:
        stream = "BT /F1 11 Tf 72 740 Td 15 TL " + " ".join(f"{_pdf_string(line)} Tj T*" for line in lines) + " ET"
        page_id = 4 + len(objects) - 3
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {page_id + 1} 0 R >>".encode()
        )
        data = stream.encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    objects.append(f"<< /Title {_pdf_string(title)} >>".encode())
    info_id = len(objects)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info_id} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


LEAVE_POLICY = """\
# Leave policy

This policy explains how employees of Northwind request time away from work.

## Sick leave

Employees receive ten paid sick days per calendar year. Call your line manager before 9am on the first
day of absence. From the fourth consecutive day a doctor's note is required.

## Annual holiday

Full-time staff get 25 days of paid holiday plus public holidays. Up to five unused days can be carried
over into the first quarter of the next year.

```
# this line is inside a code block, not a heading
```
"""

WIFI_NOTES = """\
Office network notes

The guest wireless network is called Northwind-Guest. Visitors receive a voucher code at reception that
is valid for twenty-four hours.

Printers on the third floor only accept jobs from the staff network, not from the guest network.
"""

EXPENSES_HTML = """\
<!doctype html>
<html><head><title>Travel and expenses</title>
<style>body { font-family: serif; }</style><script>var tracking = "ignore me";</script></head>
<body>
<h1>Travel and expenses</h1>
<p>Submit every receipt through the finance portal within 30 days of the purchase.</p>
<h2>Trains and flights</h2>
<p>Book trains in standard class. Flights longer than six hours may be booked in premium economy.</p>
<h2>Meals</h2>
<p>The daily meal allowance on business trips is 45 euros, alcohol excluded.</p>
</body></html>
"""

SAFETY_PAGES = [
    ["Fire safety procedure", "If you hear the fire alarm, leave the building by the nearest stairway."],
    ["The assembly point is the car park behind building C.", "Never use the lifts during an evacuation."],
]


def write_folder(root: Path) -> dict[str, Path]:
    """Write the four documents (and a sub-folder) under `root`; return them by short name."""
    (root / "hr").mkdir(parents=True, exist_ok=True)
    files = {
        "leave": root / "hr" / "leave-policy.md",
        "wifi": root / "network.txt",
        "expenses": root / "expenses.html",
        "safety": root / "fire-safety.pdf",
    }
    files["leave"].write_text(LEAVE_POLICY)
    files["wifi"].write_text(WIFI_NOTES)
    files["expenses"].write_text(EXPENSES_HTML)
    files["safety"].write_bytes(make_pdf(SAFETY_PAGES, title="Fire safety"))
    return files


class CountingEmbedder:
    """Wraps a real embedder and records every text it is asked to embed (not a mock: it embeds for real)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.calls = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        self.texts.extend(texts)
        return np.asarray(self.inner.embed(texts), dtype=np.float32)
