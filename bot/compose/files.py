"""Downloading the files a person attached in the compose modal (Slack file_input)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

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


SLACK_FILES_URL = "https://files.slack.com"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only within the origin the token was meant for: urllib would send
    the Authorization header to wherever a redirect points."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            raise urllib.error.HTTPError(
                newurl, code, "redirect to another host refused", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_SameOriginRedirects)


def download(
    url: str,
    token: str,
    *,
    name: str,
    mimetype: str,
    timeout: float = 30.0,
    files_url: str = SLACK_FILES_URL,
) -> Downloaded:
    """GET a Slack `url_private_download` with the bot token.

    The URL comes from the view submission, so the token goes only to Slack's file origin
    (`files_url`, https://files.slack.com unless configured): any other URL is refused before
    a connection is made, and a redirect off that origin is not followed (security review #10).

    Slack answers a request it does not accept with its HTML sign-in page and status 200, so an
    HTML answer for a file that is not HTML is an error, not the file.
    """
    if _origin(url) != _origin(files_url) or not urlsplit(url).path.startswith("/"):
        raise DownloadError(
            f"{name}: not a Slack file link, so it was not fetched", transient=False
        )
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with _opener.open(req, timeout=timeout) as resp:
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
