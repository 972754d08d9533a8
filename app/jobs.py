"""The server's job runner: heavy work off the page script, with progress, cancellation, fairness across sessions
and per-session quotas (``analysis.job_runner.JobRunner``; its docstring says how jobs are run and in what order).

One runner per server process (:func:`get_runner`), with the heavy-job quota of ``SCL_HEAVY_RUNNING`` /
``SCL_HEAVY_PER_MINUTE`` (stricter in public mode: ``analysis.jobs_protocol.HeavyQuota``). Sessions are
Streamlit's: :func:`current_session_id` names the one a script run belongs to, and the sweeper closes sessions
Streamlit's session manager no longer knows (:func:`streamlit_session_alive`), so memory returns to its baseline
when sessions close.
"""

from __future__ import annotations

import threading

from analysis.job_runner import Cancelled, Job, JobProgress, JobRunner, QuotaExceeded, overall_progress
from analysis.jobs_protocol import HeavyQuota

__all__ = ["Cancelled", "Job", "JobProgress", "JobRunner", "QuotaExceeded", "current_session_id", "get_runner",
           "overall_progress", "reset_runner"]  # fmt: skip


def current_session_id() -> str:
    """The Streamlit session this script run belongs to ('no-session' outside a script run)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "no-session"


def streamlit_session_alive(session_id: str) -> bool:
    """Is this Streamlit session still connected? (The runtime's session manager; without a runtime, e.g. under
    AppTest, a heartbeat seen in the runner's ``heartbeat_ttl_s``.)"""
    from streamlit.runtime import Runtime

    if Runtime.exists():
        return Runtime.instance().is_active_session(session_id)
    runner = _RUNNER
    return runner is not None and runner._heartbeat_alive(session_id)


_RUNNER: JobRunner | None = None
_RUNNER_GUARD = threading.Lock()


def get_runner() -> JobRunner:
    """The server's job runner (made on first use; its results are freed as sessions close)."""
    global _RUNNER
    with _RUNNER_GUARD:
        if _RUNNER is None:
            from app import long_lived

            _RUNNER = JobRunner(is_alive=streamlit_session_alive, on_release=long_lived.trim,
                                quota=HeavyQuota.from_env())  # fmt: skip
        return _RUNNER


def reset_runner() -> None:
    """Shut the server's runner down (every job cancelled); the next :func:`get_runner` makes a fresh one."""
    global _RUNNER
    with _RUNNER_GUARD:
        runner, _RUNNER = _RUNNER, None
    if runner is not None:
        runner.shutdown()
