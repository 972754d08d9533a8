"""The image's HEALTHCHECK for either role: the dashboard's /_stcore/health, else the backend's /-/healthz."""

import os
import sys
import urllib.request

URLS = (f"http://127.0.0.1:{os.environ.get('SCL_PORT', '8501')}/_stcore/health",
        f"http://127.0.0.1:{os.environ.get('SCL_BACKEND_PORT', '8000')}/-/healthz")  # fmt: skip

for url in URLS:
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            if resp.status == 200:
                sys.exit(0)
    except OSError:
        pass
sys.exit(1)
