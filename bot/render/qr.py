"""QR code pictures of client configs, for the WireGuard app's "scan from QR code"."""

from __future__ import annotations

import io


def qr_png(text: str) -> bytes:
    """A PNG of ``text`` as a QR code; medium error correction survives a phone screen photo."""
    # Imported here: Pillow costs the idle bot several MB and is needed only for /peer add.
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=8, border=4)
    qr.add_data(text)
    qr.make(fit=True)
    buf = io.BytesIO()
    qr.make_image().save(buf)
    return buf.getvalue()
