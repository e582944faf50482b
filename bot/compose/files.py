"""Downloading the files a person attached in the compose modal (Slack file_input)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

MAX_FILE_BYTES = 25 * 1024 * 1024  # what most mail servers accept for a whole message


class DownloadError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class Downloaded:
    name: str
    mimetype: str
    data: bytes


def download(
    url: str, token: str, *, name: str, mimetype: str, timeout: float = 30.0
) -> Downloaded:
    """GET a Slack `url_private_download` with the bot token.

    Slack answers a request it does not accept with its HTML sign-in page and status 200, so an
    HTML answer for a file that is not HTML is an error, not the file.
    """
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"{name}: Slack gave no download link", transient=False)
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            data = resp.read(MAX_FILE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        transient = exc.code >= 500 or exc.code == 429
        raise DownloadError(f"{name}: Slack answered {exc.code}", transient=transient) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{name}: could not reach Slack ({exc})", transient=True) from exc
    if len(data) > MAX_FILE_BYTES:
        raise DownloadError(f"{name}: larger than 25 MB", transient=False)
    if ctype == "text/html" and not mimetype.startswith("text/html"):
        raise DownloadError(
            f"{name}: Slack refused the download (the app may lack the files:read scope)",
            transient=False,
        )
    return Downloaded(name=name, mimetype=mimetype or "application/octet-stream", data=data)
