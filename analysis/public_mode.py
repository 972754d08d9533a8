"""Public mode: what a server shown to visitors lets them choose, and what its messages may say.

With ``SCL_PUBLIC=1`` visitors pick zoos and data sets by *name* from the operator's catalogue and never type
a server path; error messages lose their absolute paths (:func:`redact_paths`); an optional shared access token
(``SCL_TOKEN``) is checked by the backend and by the dashboard.

The catalogue comes from ``SCL_ZOOS`` (``name=path,name=path``), ``SCL_DATASETS`` (``name`` for a built-in set,
``name=root`` for one read from a folder) or a YAML file named by ``SCL_CATALOGUE`` with ``zoos:`` and
``datasets:`` maps (``backend.yaml`` has the same keys).
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_PUBLIC, ENV_TOKEN, ENV_ZOOS, ENV_DATASETS, ENV_CATALOGUE = (
    "SCL_PUBLIC", "SCL_TOKEN", "SCL_ZOOS", "SCL_DATASETS", "SCL_CATALOGUE",
)  # fmt: skip
PATH_PLACEHOLDER = "<path>"

# An absolute POSIX path (not the path part of a URL nor a division: no ':', '/', ')' or word character before
# its slash, a letter, '_', '.' or '~' after it), a home-relative path, or a Windows drive path.
_PATH = re.compile(r"(?<![\w.:/\\)\]}])(?:~?/[A-Za-z_.~][^\s'\"()<>,;`]*|[A-Za-z]:\\[^\s'\"()<>,;`]+)")


class NotOffered(ValueError):
    """A zoo or data set that the operator's catalogue does not list (public mode)."""


def is_public(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``SCL_PUBLIC`` is 1/true/yes."""
    environ = os.environ if environ is None else environ
    return environ.get(ENV_PUBLIC, "").strip().lower() in ("1", "true", "yes", "on")


def redact_paths(text: str, names: Mapping[str, str] | None = None) -> str:
    """``text`` with every absolute path replaced: by the catalogue name whose path it is or lies in (``names``:
    path -> name), else by ``<path>``. Relative names (``zoo.json``) stay."""
    known = sorted(((str(Path(p).expanduser()), n) for p, n in (names or {}).items()), key=lambda pn: -len(pn[0]))

    def replace(match: re.Match[str]) -> str:
        path = match.group(0).rstrip(".:!?")
        tail = match.group(0)[len(path) :]
        expanded = str(Path(path).expanduser()) if path.startswith("~") else path
        for root, name in known:
            if expanded == root or expanded.startswith(root.rstrip("/") + "/"):
                return f"<{name}>{tail}"
        return PATH_PLACEHOLDER + tail

    return _PATH.sub(replace, str(text))


def token_ok(given: str | None, expected: str | None) -> bool:
    """Whether ``given`` matches the access token (always True when no token is set); constant-time."""
    if not expected:
        return True
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _pairs(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in (part.strip() for part in text.split(",")):
        if item:
            name, _, value = item.partition("=")
            out[name.strip()] = value.strip() or None
    return out


@dataclass
class Catalogue:
    """The operator's list: zoo name -> folder, data set name -> root folder (None: a built-in set)."""

    zoos: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping) -> Catalogue:
        zoos = {str(k): str(v) for k, v in dict(data.get("zoos") or {}).items()}
        datasets = {str(k): (None if v in (None, "") else str(v)) for k, v in dict(data.get("datasets") or {}).items()}
        return cls(zoos, datasets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Catalogue:
        """``SCL_CATALOGUE``'s YAML file, then ``SCL_ZOOS`` and ``SCL_DATASETS`` added on top."""
        environ = os.environ if environ is None else environ
        cat = cls()
        if environ.get(ENV_CATALOGUE):
            cat = cls.from_file(environ[ENV_CATALOGUE])
        cat.zoos.update({k: v for k, v in _pairs(environ.get(ENV_ZOOS, "")).items() if v})
        cat.datasets.update(_pairs(environ.get(ENV_DATASETS, "")))
        return cat

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Catalogue:
        import yaml

        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{Path(path).name}: expected a YAML map with zoos: and datasets:")
        return cls.from_mapping(data)

    def path_names(self) -> dict[str, str]:
        """Folder -> catalogue name, for :func:`redact_paths`."""
        out = {str(Path(p).expanduser().resolve()): n for n, p in self.zoos.items()}
        out.update({str(Path(r).expanduser().resolve()): n for n, r in self.datasets.items() if r})
        return out

    def zoo_path(self, choice: str, public: bool) -> str:
        """The folder of zoo ``choice``: a listed name, or (not public) any folder; NotOffered otherwise."""
        if choice in self.zoos:
            return self.zoos[choice]
        if public:
            offered = ", ".join(self.zoos) or "none (the operator has listed no zoo: SCL_ZOOS)"
            raise NotOffered(f"zoo {redact_paths(choice)!r} is not offered on this server; choose one of: {offered}")
        return choice

    def dataset_root(self, name: str, root: str | None, public: bool) -> str | None:
        """The root folder to read data set ``name`` from. Public: the listed root (a typed one is refused), and
        only listed sets when the operator lists any."""
        if not public:
            return root
        if self.datasets and name not in self.datasets:
            raise NotOffered(f"data set {name!r} is not offered on this server; choose one of: "
                             + ", ".join(self.datasets))  # fmt: skip
        listed = self.datasets.get(name)
        if root and (listed is None or Path(root).expanduser().resolve() != Path(listed).expanduser().resolve()):
            raise NotOffered(f"data set {name!r}: a data folder cannot be chosen on this server")
        return listed
