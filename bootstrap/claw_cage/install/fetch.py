"""Step 2 of the install: get the deploy files, all of them, verified, or nothing.

Sources: an http(s) URL, a file:// URL, or a plain directory. Each file is fetched in its own
thread with a deadline and a size cap, redirects are followed only to https, and each file must
match the sha256 embedded at build time. Nothing is written to disk here: the caller gets bytes.
start() begins the downloads and returns at once (the installer loads the rest of its code
while they travel); wait() gives the files, all checked, or the first failure.

The fetch threads are daemon threads, not a ThreadPoolExecutor, so that Ctrl-C ends the
program at once instead of waiting for a stalled download to time out.
"""

import hashlib
import http.client
import os
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from .. import safefile
from ..errors import FetchError, TargetError

MAX_BYTES = 1024 * 1024      # our artifacts are a few KiB; anything near this is not ours
DEFAULT_TIMEOUT = 30.0       # seconds for each whole file, not just each socket read
CHUNK = 16384


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect may lead only to https: a downgrade to http could be rewritten in transit."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme != "https":
            raise FetchError("%s redirects to %s: refusing a redirect that is not https"
                             % (req.full_url, newurl))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def describe(source):
    """What kind of source this is: ("http", url) or ("dir", path)."""
    parts = urllib.parse.urlsplit(source)
    if parts.scheme in ("http", "https"):
        return "http", source.rstrip("/")
    if parts.scheme == "file":
        return "dir", urllib.request.url2pathname(parts.path)
    if parts.scheme and len(parts.scheme) > 1:  # not a Windows drive letter, not a path
        raise FetchError("unsupported source %r: use https://, http://, file:// or a directory"
                         % source)
    return "dir", os.path.abspath(os.path.expanduser(source))


def _read_http(url, deadline):
    opener = urllib.request.build_opener(_HttpsOnlyRedirects)
    request = urllib.request.Request(url, headers={"User-Agent": "claw-cage"})
    try:
        with opener.open(request, timeout=max(0.1, deadline - time.monotonic())) as resp:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_BYTES:
                raise FetchError("%s: %s bytes is over the %d-byte limit"
                                 % (url, length, MAX_BYTES))
            data = bytearray()
            while True:
                if time.monotonic() > deadline:
                    raise FetchError("%s: timed out" % url)
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_BYTES:
                    raise FetchError("%s: body is over the %d-byte limit" % (url, MAX_BYTES))
            return bytes(data)
    except urllib.error.HTTPError as err:
        raise FetchError("%s: HTTP %d %s" % (url, err.code, err.reason))
    except urllib.error.URLError as err:
        raise FetchError("%s: %s" % (url, getattr(err.reason, "strerror", None) or err.reason))
    except (OSError, http.client.HTTPException) as err:  # resets, timeouts, cut bodies
        raise FetchError("%s: %s" % (url, str(err) or type(err).__name__))


def _read_file(path):
    """A deploy file from a local --source directory: safefile's read (no symlink, no FIFO,
    size-capped), its refusals as fetch errors."""
    try:
        data = safefile.read(path, MAX_BYTES)
    except TargetError as err:
        raise FetchError(str(err))
    if data is None:
        raise FetchError("%s: No such file or directory" % path)
    return data


def _fetch_one(kind, base, name, timeout):
    if kind == "http":
        return _read_http(base + "/" + urllib.parse.quote(name), time.monotonic() + timeout)
    return _read_file(os.path.join(base, name))


class Download:
    """The deploy files being fetched: start() begins every download at once, in the
    background, and wait() gives their bytes. The installer starts them before it checks the
    prerequisites and loads the rest of its code, so that the network's latency overlaps that
    work instead of following it; nothing is written anywhere until wait() has checked them."""

    def __init__(self, source, names, expected_sha256, timeout):
        self.names, self.expected, self.timeout = list(names), expected_sha256, timeout
        self.results = queue.Queue()
        try:
            kind, base = describe(source)
        except FetchError as err:   # said by wait(), in the order the user expects
            self.error = err
            return
        self.error = None
        for name in self.names:
            threading.Thread(target=self._worker, args=(kind, base, name), daemon=True).start()

    def _worker(self, kind, base, name):
        try:
            self.results.put((name, _fetch_one(kind, base, name, self.timeout), None))
        except FetchError as err:
            self.results.put((name, None, err))
        except Exception as err:  # never leave the main thread waiting on a dead worker
            self.results.put((name, None, FetchError("%s: %s: %s" % (name, type(err).__name__,
                                                                      err))))

    def wait(self):
        """{name: bytes} for every name, each checked against expected_sha256[name] (when
        that mapping is empty: a source checkout, nothing to check). Raise FetchError for the
        first file that fails, after all have finished or timed out."""
        if self.error is not None:
            raise self.error
        files, errors = {}, []
        for _ in self.names:
            try:
                # A hard ceiling above the per-file deadline, in case a read blocks past it.
                name, data, err = self.results.get(timeout=self.timeout + 10)
            except queue.Empty:
                raise FetchError("timed out waiting for the download of the deploy files")
            if err:
                errors.append(err)
            else:
                files[name] = data
        if errors:
            raise sorted(errors, key=str)[0]
        for name in self.names:
            want = self.expected.get(name)
            if self.expected and not want:
                raise FetchError("%s: no expected sha256 was built into this program" % name)
            got = hashlib.sha256(files[name]).hexdigest()
            if want and got != want:
                raise FetchError("%s: sha256 %s does not match the expected %s (tampered, or a "
                                 "source from another release)" % (name, got[:16], want[:16]))
        return files


def start(source, names, expected_sha256, timeout=DEFAULT_TIMEOUT):
    """Begin fetching every name from source, each in its own thread; the Download's wait()
    returns them checked (see Download)."""
    return Download(source, names, expected_sha256, timeout)


def fetch_all(source, names, expected_sha256, timeout=DEFAULT_TIMEOUT):
    """Return {name: bytes} for every name, each checked against expected_sha256[name]
    (when that mapping is empty: a source checkout, nothing to check). Raise FetchError
    for the first file that fails, after all have finished or timed out."""
    return start(source, names, expected_sha256, timeout).wait()
