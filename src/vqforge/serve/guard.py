"""What keeps other sites from driving the web app: a same-origin check and a per-process token on every
request that changes state, and the security headers on every response.

A page on another site can make the user's browser send a form POST to ``http://127.0.0.1:8000`` without a
preflight (a "simple" request); the Host check (``TrustedHostMiddleware``) passes, because the browser sends the
server's own Host. So a request other than GET / HEAD / OPTIONS is answered only when

* its ``Origin`` (when the browser sends one; a script such as curl sends none) is this server's own origin
  (``scheme://Host``), and its ``Sec-Fetch-Site`` (when sent) is ``same-origin`` or ``none``; and
* it carries the header ``X-VQForge-Token`` with this process's token: the page has it in a ``<meta>`` tag,
  scripts read it from ``GET /api/models`` (``token``). Another site can neither read that response nor set a
  custom header without a CORS preflight, which this server never grants.

Anything else is ``403 {"error": one line}``. Every response carries ``X-Frame-Options: DENY`` (no framing, so
no clickjacking), ``X-Content-Type-Options: nosniff`` and a Content-Security-Policy that lets the page load only
its own scripts, styles and API (images also from ``data:`` / ``blob:`` URLs, which the painters make).
"""

from __future__ import annotations

import hmac
import json
import secrets

TOKEN_HEADER = "x-vqforge-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", CSP.encode()), (b"referrer-policy", b"same-origin")]


def new_token() -> str:
    """A fresh per-process token (192 random bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def with_token(html: str, token: str) -> str:
    """The page with the token in a ``<meta name="vqforge-token">`` tag (its script sends it back with each POST)."""
    return html.replace("<head>", f'<head>\n<meta name="vqforge-token" content="{token}">', 1)


def refusal(method: str, headers: dict[str, str], scheme: str, token: str) -> str:
    """Why a request must be refused ("" when it may go on); ``headers``: lower-case names."""
    if method in SAFE_METHODS:
        return ""
    origin = headers.get("origin")
    own = f"{scheme}://{headers.get('host', '')}"
    if origin is not None and origin != own:
        return f"cross-origin request refused (Origin {origin[:80]} is not this server, {own})"
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site[:20]})"
    given = headers.get(TOKEN_HEADER, "")  # header names arrive in lower case
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        return ("missing or wrong X-VQForge-Token header: the page sends it; scripts read it from GET /api/models "
                "(token)")
    return ""


class Guard:
    """ASGI middleware: :func:`refusal` before the app, :data:`SECURITY_HEADERS` on every response."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        why = refusal(scope["method"], headers, scope.get("scheme", "http"), self.token)

        async def send_secure(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": list(message.get("headers", [])) +
                           [(k, v) for k, v in SECURITY_HEADERS if k not in names]}
            await send(message)

        if why:
            body = json.dumps({"error": why}).encode()
            await send_secure({"type": "http.response.start", "status": 403,
                               "headers": [(b"content-type", b"application/json"),
                                           (b"content-length", str(len(body)).encode())]})
            await send_secure({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_secure)
