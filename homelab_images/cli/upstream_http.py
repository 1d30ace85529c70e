"""HTTP reads for ``pins``: short timeouts, small bodies, one clear error per unreachable source."""

from __future__ import annotations

import urllib.error
import urllib.request

from homelab_images.core.pins import SOURCE_LABELS, SourceError

TIMEOUT_SECONDS = 5.0
# CHECKSUM files, channel lists and install.sh are kilobytes; anything this big is not one of them.
MAX_BYTES = 4 * 1024 * 1024
USER_AGENT = "homelab-images-pins"


class HttpFetch:
    """``Fetch`` over HTTP(S), remembering each body for the rest of the run (images share releases)."""

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self._timeout = timeout
        self._bodies: dict[str, bytes] = {}

    def __call__(self, source: str, url: str) -> bytes:
        if url not in self._bodies:
            self._bodies[url] = self._get(source, url)
        return self._bodies[url]

    def _get(self, source: str, url: str) -> bytes:
        label = SOURCE_LABELS[source]
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                body: bytes = response.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise SourceError(source, f"{label}: {url} answered HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise SourceError(source, f"cannot reach the {label} at {url} ({_reason(error.reason)})") from None
        except TimeoutError:
            raise SourceError(source, f"the {label} at {url} did not answer within {self._timeout:g} s") from None
        except OSError as error:
            raise SourceError(source, f"cannot read the {label} at {url} ({_reason(error)})") from None
        if len(body) > MAX_BYTES:
            raise SourceError(source, f"{label}: {url} is larger than {MAX_BYTES // (1024 * 1024)} MiB")
        return body


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
