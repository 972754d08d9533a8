"""The image's HEALTHCHECK for either role: the dashboard's /_stcore/health, else the backend's GET /zoos.

Not Ray Serve's /-/healthz for the backend: its proxy answers that about 45 s before the zoos are deployed
(measured in the image), while /zoos is deployed last, so it answers only once every zoo is served.
"""

import os
import sys
import urllib.request

TOKEN = os.environ.get("SCL_TOKEN")
CHECKS = (
    (f"http://127.0.0.1:{os.environ.get('SCL_PORT', '8501')}/_stcore/health", {}),
    (
        f"http://127.0.0.1:{os.environ.get('SCL_BACKEND_PORT', '8000')}/zoos",
        {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {},
    ),
)

for url, headers in CHECKS:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=4) as resp:
            if resp.status == 200:
                sys.exit(0)
    except OSError:  # refused, timed out, or an HTTP error status (urllib's HTTPError is an OSError)
        pass
sys.exit(1)
