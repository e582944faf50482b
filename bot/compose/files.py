"""Downloading the files a person attached in the compose modal (Slack file_input)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

MAX_FILE_BYTES = 25 * 1024 * 1024  # what most mail servers accept for a whole message


# What each way of sending takes (providers-review.md finding 2). Attachments grow by about a
# third when base64-encoded into the email.
GMAIL_MAX_MESSAGE = 35 * 1024 * 1024  # messages.send media upload (the encoded email)
GRAPH_MAX_ATTACHMENT = 150 * 1024 * 1024  # one upload session
_MB = 1024 * 1024


def size_problem(provider: str, sizes: list[int]) -> str | None:
    """Why these attachments cannot go out from this kind of mailbox, naming the limit; None
    when they can. Checked in the compose modal, before anything is sent."""
    too_big = [s for s in sizes if s > MAX_FILE_BYTES]
    if too_big:
        return f"Each file can be at most {MAX_FILE_BYTES // _MB} MB."
    total = sum(sizes)
    if provider == "gmail" and total * 4 // 3 + 256 * 1024 > GMAIL_MAX_MESSAGE:
        return (
            f"Gmail sends at most {GMAIL_MAX_MESSAGE // _MB} MB per email, and attachments grow "
            f"by a third when sent: these files ({total / _MB:.1f} MB) are too large together."
        )
    if provider == "graph" and total > GRAPH_MAX_ATTACHMENT:
        return f"Microsoft 365 takes at most {GRAPH_MAX_ATTACHMENT // _MB} MB of attachments."
    return None


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
