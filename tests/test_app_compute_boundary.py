"""No module of app/ computes attributions, perturbations, attacks or distance scores itself.

The rule, checked on the source of every module under app/ (all import statements anywhere in a file, and every
call), so it cannot be dodged by a lazy import:

1. No app module imports the attribution or attack libraries: ``captum``, ``lime``, ``torchattacks``,
   ``skimage.segmentation`` (LIME's superpixels).
2. The lab's compute primitives (:data:`PRIMITIVES`: perturbations, losses and DS, attacks, attribution methods and
   their quality measures, probes, continuity tables) are reached only through ``analysis/``'s entry points for the
   dashboard (``analysis.service_api``, ``analysis.per_image``, ``analysis.embeddings``,
   ``analysis.embeddings_whole_set``, ``analysis.ood``, ``analysis.results_store``). From a primitive module an app
   module may import only names that are *not functions* there (registries, constants, classes: ``KINDS``,
   ``VARIANT_REGISTRY``) or are in :data:`ALLOWED_FUNCTIONS` (look-ups and locks that compute nothing), and never
   the module itself (``import analysis.robustness``, ``from analysis import attributions``).
3. No app module takes gradients: no call of ``backward``, ``torch.autograd.*`` or ``requires_grad_`` (every
   attribution and attack needs them).

What this cannot see: arithmetic written inline (a page summing squared logit differences with numpy would pass
rules 1-3). Review keeps that out; the distance score's one definition is ``models.objectives.distance_score``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

from tests.test_import_graph import ROOT, imported_names, lab_modules

LIBRARIES = ("captum", "lime", "torchattacks", "skimage.segmentation")
PRIMITIVES = (
    "models.perturbations",
    "models.objectives",
    "analysis.continuity",
    "analysis.robustness",
    "analysis.attributions",
    "analysis.attribution_methods",
    "analysis.attribution_quality",
    "analysis.probes",
)
#: Functions of the primitive modules that compute nothing: registry look-ups, a lock, a check of a stored table.
ALLOWED_FUNCTIONS = {"get_variant", "variant_colour", "model_lock", "masking_warnings"}
GRADIENT_CALLS = {"backward", "requires_grad_"}


def _is_library(target: str) -> bool:
    return any(target == lib or target.startswith(lib + ".") for lib in LIBRARIES)


def boundary_problems(module: str, path: Path) -> list[str]:
    """Every breach of rules 1-3 in one module's source, as readable lines."""
    problems = []
    for target, names in imported_names(module, path):
        if _is_library(target) or any(_is_library(f"{target}.{n}") for n in names):
            problems.append(f"{module} imports {target}")
        if target in PRIMITIVES and not names:
            problems.append(f"{module} imports the compute module {target} whole")
        for name in names:
            if f"{target}.{name}" in PRIMITIVES:
                problems.append(f"{module} imports the compute module {target}.{name} whole")
        if target in PRIMITIVES and names:
            source = importlib.import_module(target)
            for name in names:
                value = getattr(source, name, None)
                if inspect.isfunction(value) and name not in ALLOWED_FUNCTIONS:
                    problems.append(f"{module} imports the function {target}.{name}")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in GRADIENT_CALLS:
                problems.append(f"{module}:{node.lineno} calls .{func.attr}()")
            if isinstance(func, ast.Attribute) and "autograd" in ast.unparse(func).split("."):
                problems.append(f"{module}:{node.lineno} calls {ast.unparse(func)}")
    return problems


def test_the_rule_catches_what_it_names(tmp_path):
    """A planted module that breaks each rule is caught (so the real check can fail)."""
    source = (
        "import captum.attr\n"
        "from analysis import robustness\n"
        "from models.objectives import distance_score, VARIANT_REGISTRY, get_variant\n"
        "def f(x):\n    from models.perturbations import perturb\n    x.sum().backward()\n"
        "    return torch.autograd.grad(x, x)\n"
    )
    path = tmp_path / "planted.py"
    path.write_text(source)
    found = "\n".join(boundary_problems("app.planted", path))
    assert "imports captum.attr" in found
    assert "compute module analysis.robustness whole" in found
    assert "function models.objectives.distance_score" in found and "get_variant" not in found
    assert "VARIANT_REGISTRY" not in found
    assert "function models.perturbations.perturb" in found
    assert "calls .backward()" in found and "calls torch.autograd.grad" in found


def test_no_app_module_computes_itself():
    modules = {name: path for name, path in lab_modules().items() if name == "app" or name.startswith("app.")}
    assert len(modules) > 20, "the check should see the dashboard's modules"
    problems = [p for name, path in sorted(modules.items()) for p in boundary_problems(name, path)]
    assert not problems, "app/ computes itself:\n" + "\n".join(problems)


def test_the_facade_is_gone():
    """Pages import what they use from the modules that define it; there is no app.backend to re-export them."""
    assert not (ROOT / "app" / "backend.py").exists()
