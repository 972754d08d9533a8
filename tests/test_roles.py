"""One role vocabulary (``models.roles``), derived from the variant registry; every copy reads it."""

from __future__ import annotations

import pytest

from models import roles as MR
from models.errors import ZooError
from models.objectives import VARIANT_REGISTRY, Variant, register_variant, standard_loss


def test_roles_follow_a_variant_registered_later():
    name = "test-roles-variant"
    assert "test-role" not in MR.ROLES
    register_variant(Variant(name, standard_loss, "CE", "A variant for this test.", "#000000", role="test-role"))
    try:
        assert MR.check_role("test-role") == "test-role"
        assert MR.default_role(name) == "test-role"
        assert "A variant for this test." in MR.ROLES["test-role"]
    finally:
        del VARIANT_REGISTRY[name]
    assert "test-role" not in MR.ROLES
    with pytest.raises(ZooError, match="unknown role 'test-role'"):
        MR.check_role("test-role")


def test_paper_names_and_constants_come_from_the_registry():
    assert MR.paper_names() == {v.role: n for n, v in VARIANT_REGISTRY.items() if v.paper}
    assert MR.paper_name(MR.BASELINE) == "standard" and MR.paper_name(MR.JITTER_CONTROL) is None
    assert MR.default_role("an-imported-model") == MR.OTHER and MR.OTHER in MR.ROLES


def test_no_module_restates_the_role_vocabulary():
    """No module but the variant registry and models/roles.py spells out two or more role names as string literals
    (docstrings aside): that is a copy of the vocabulary. One literal alone is allowed, since ``"adversarial"`` is
    also an ordinary word (a result's key)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    vocabulary = {v.role for v in VARIANT_REGISTRY.values()}
    allowed = {root / "models" / "objectives.py", root / "models" / "roles.py"}
    found: dict[str, set[str]] = {}
    for package in ("models", "analysis", "app"):
        for path in sorted((root / package).rglob("*.py")):
            if path in allowed:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                and node.body
                and isinstance(node.body[0], ast.Expr)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and node.value in vocabulary and id(node) not in docstrings:
                    found.setdefault(str(path.relative_to(root)), set()).add(node.value)
    copies = {path: sorted(names) for path, names in found.items() if len(names) > 1}
    assert not copies, f"role names restated outside models/roles.py: {copies}"


def test_the_zoo_summary_names_alpha_for_the_roles_with_a_continuity_term():
    """The shipped zoo's summary table shows alpha exactly for the constrained roles (by role, not by name)."""
    import json
    from pathlib import Path

    from models.zoo_cards import summary_table

    manifest = json.loads((Path(__file__).resolve().parent.parent / "assets/zoo/default/zoo.json").read_text())
    rows = {line.split("|")[1].strip(): line for line in summary_table(manifest).splitlines()[2:]}
    for variant in manifest["variants"]:
        role = MR.default_role(variant)
        assert ("alpha" in rows[variant]) == (role in (MR.CONSTRAINED, MR.ADVERSARIAL_CONSTRAINED)), variant
