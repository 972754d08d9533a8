"""The dashboard as an ASGI app (``st.App``) with the HTTP protections a public server needs.

    streamlit run app/asgi_app.py            # what scl-dashboard runs in public mode (SCL_PUBLIC=1)
    uvicorn app.asgi_app:app --port 8501     # the same with another ASGI server

:class:`SecurityHeaders` sets framing and content-security headers on every response
(``X-Frame-Options: DENY``, CSP ``frame-ancestors 'none'``, ``nosniff``, no referrer), and answers 404 for
Streamlit's ``/_stcore/metrics`` unless ``SCL_METRICS=1``. The page script itself is app/streamlit_app.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse

SCRIPT = Path(__file__).resolve().parent / "streamlit_app.py"
HIDDEN_PATHS = ("/_stcore/metrics",)
# Streamlit's front end uses inline styles, data:/blob: images, web workers and its own websocket; nothing from
# other origins, and no page may frame it.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self' ws: wss:; worker-src 'self' blob:; "
       "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")  # fmt: skip
HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders(BaseHTTPMiddleware):
    """Framing/CSP headers on every response; the metrics endpoint hidden unless ``SCL_METRICS=1``."""

    async def dispatch(self, request, call_next):
        metrics = os.environ.get("SCL_METRICS", "").lower() in ("1", "true", "yes")
        if not metrics and request.url.path.rstrip("/").endswith(HIDDEN_PATHS):
            response = PlainTextResponse("Not Found", status_code=404)
        else:
            response = await call_next(request)
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
        return response


app = st.App(str(SCRIPT), middleware=[Middleware(SecurityHeaders)])
