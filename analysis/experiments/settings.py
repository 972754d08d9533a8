"""Sizes and lengths of every experiment (``Settings``), the full and quick presets, ``--set`` parsing and the CPU
time estimate printed before a run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models import roles as R
from models.errors import SettingsError
from models.perturbations import KINDS


@dataclass
class Settings:
    """Requested sizes and lengths (each experiment records what it actually ran). Defaults: the full run."""

    mode: str = "full"
    seeds: tuple[int, ...] = (0, 1, 2)  # alpha sweep: one run per seed and alpha
    subset_seed: int = 0  # which test images form the evaluation subset
    batch_size: int = 256  # inference / attack batch
    train_batch_size: int = 128
    # continuity (DS), probes: the first n_images of a seeded permutation of the test split
    n_images: int = 1000
    probe_seed: int = 0
    # section 2: anchors drawn from the candidates (the whole test split, or the evaluation subset)
    rank_anchors: int = 200
    rank_whole_test_split: bool = True
    # robustness (Table 2) and the attack ensemble: the first pgd_images / audit_images of the same subset
    pgd_images: int = 1000
    audit_images: int = 1000
    audit_steps: tuple[int, ...] = (50,)  # APGD iterations (the largest is used)
    audit_restarts: int = 1  # APGD restarts
    apgd_targets: int = 3  # APGD-T target classes (the top non-true classes)
    # trade-off curves (issue 23): the adversarial variants interpolated in weight space from the baseline, clean
    # and PGD-10 accuracy at each lambda on the first tradeoff_images of the subset (analysis.tradeoff)
    tradeoff_images: int = 1000
    tradeoff_lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    eps_images: int = 200
    eps_values_255: tuple[float, ...] = (0, 1, 2, 4, 8, 16, 32)
    # attributions: the gradient methods' claims on attr_images, the slow methods' (LIME, ScoreCAM) on attr_slow_images
    attr_images: int = 500
    attr_slow_images: int = 200
    attr_methods: tuple[str, ...] | None = None  # None: every registered attribution method
    ig_steps: int = 50
    lime_samples: int = 300
    deletion_steps: int = 16
    stability_images: int = 12
    stability_methods: tuple[str, ...] | None = None  # None: every registered method that is not slow
    stability_levels: tuple[int, ...] = (1, 2, 4)
    # ROAD (faithfulness): the attributions' methods and images; removed shares 100 - p for p in road_percentiles
    road_percentiles: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    # sanity checks (cascading randomisation) and explanation continuity: None = every in-report method not slow
    sanity_images: int = 64
    sanity_methods: tuple[str, ...] | None = None
    map_continuity_images: int = 200
    map_continuity_methods: tuple[str, ...] | None = None
    map_continuity_levels: tuple[int, ...] = (1, 2, 3, 4)
    # embeddings: neighbour ranks of the perturbed copies of a few anchors among same-class test images
    embed_anchors: int = 20
    embed_same_class: int = 200
    # alpha sweep: C fine-tuned from the zoo's baseline checkpoint
    alphas: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0)
    alpha_epochs: float = 1.0
    alpha_preset: str = "paper"  # Adam, constant lr, no warm-up: the paper's fine-tuning optimiser ...
    alpha_lr: float = 1e-4  # ... at 10x its lr 1e-5, as the runs are short (SGD lr 0.01 collapses C's accuracy)
    alpha_batch_size: int = 64
    alpha_train_limit: int = 3000
    alpha_val_size: int = 500
    alpha_eval_images: int = 500  # DS is measured on the first k images of the evaluation subset
    # transfer (Table 3): a target with new classes trains on its whole training split (None), a domain-shift
    # target (the zoo's classes) on the first domain_shift_train_limit images
    transfer_targets: tuple[str, ...] = ("digits", "fashion-mnist")
    transfer_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    transfer_epochs: float = 3.0
    transfer_min_steps: int = 40
    transfer_train_limit: int | None = None
    domain_shift_train_limit: int = 3000
    transfer_test_limit: int | None = None
    # fairness (Table 4): the paper's pair and its control, trained from scratch on the colour-bias set
    fairness_source: str = "fashion-mnist"
    # beside the paper's design (colour independent of the label), the shortcut one (colour predicts the class in
    # training only) with the same variants, seeds and settings (analysis.fairness.DESIGNS)
    fairness_shortcut: bool = True
    fairness_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    fairness_epochs: float = 4.0
    fairness_train_limit: int = 41000  # 40,000 trained on + fairness_val_size held out; at 12,000 (4-5 epochs) ~89%
    fairness_test_limit: int | None = None
    fairness_width: int = 16
    fairness_pgd_steps: int = 3
    fairness_preset: str = "paper"  # Adam, constant lr: with SGD (lr 0.05 or 0.01) C barely learns in a short run
    fairness_lr: float = 1e-3
    fairness_schedule: str = "cosine"  # of the lr after warm-up; "constant" stopped short of 90% validation accuracy
    fairness_val_size: int = 1000  # held out of the training images: the in-distribution check is +-2 points at 95%
    # C's DS weight in the colour-bias runs: the zoo's 0.1, chosen on the validation split of the same garments (alpha
    # 1 cost C 5 points of validation accuracy there); at the paper's 1 the colour-bias C stayed near 83.5%
    fairness_alpha: float = 0.1
    fairness_min_val_acc: float = 0.90  # runs below it are flagged in the report
    warmup_steps: int = 10  # of every short training run (the presets' 50-100 would never finish)
    train_threads: int = 1  # torch threads inside every training run: same command, seeds, threads -> same numbers

    @property
    def attr_method_names(self) -> tuple[str, ...]:
        """The attribution methods to measure: ``attr_methods``, or every registered one marked ``in_report`` (read
        at run time, so a method registered after import is measured too)."""
        from analysis.attributions import METHOD_REGISTRY

        if self.attr_methods is None:
            return tuple(name for name, method in METHOD_REGISTRY.items() if method.in_report)
        return tuple(self.attr_methods)

    @property
    def stability_method_names(self) -> tuple[str, ...]:
        """The methods of the stability experiment: ``stability_methods``, or every registered ``in_report`` method
        not marked slow."""
        from analysis.attributions import METHOD_REGISTRY

        if self.stability_methods is not None:
            return tuple(self.stability_methods)
        return tuple(name for name, method in METHOD_REGISTRY.items() if method.in_report and not method.slow)

    def attr_images_for(self, method: str) -> int:
        """How many test images the attribution experiments (mask share, deletion / insertion, ROAD) explain with
        ``method``: ``attr_slow_images`` for a method registered as slow (LIME, ScoreCAM, Occlusion), else
        ``attr_images``."""
        from analysis.attributions import get_method

        return self.attr_slow_images if get_method(method).slow else self.attr_images

    @property
    def sanity_method_names(self) -> tuple[str, ...]:
        """The sanity checks' methods: ``sanity_methods``, or every in-report method not marked slow."""
        return self._fast_or(self.sanity_methods)

    @property
    def map_continuity_method_names(self) -> tuple[str, ...]:
        """The explanation-continuity methods: ``map_continuity_methods``, or every in-report method not slow."""
        return self._fast_or(self.map_continuity_methods)

    def _fast_or(self, names: tuple[str, ...] | None) -> tuple[str, ...]:
        from analysis.attributions import METHOD_REGISTRY

        if names is not None:
            return tuple(names)
        return tuple(name for name, method in METHOD_REGISTRY.items() if method.in_report and not method.slow)


FULL = Settings()
QUICK = dataclasses.replace(
    FULL, mode="quick", seeds=(0,), n_images=256, rank_anchors=20, rank_whole_test_split=False, pgd_images=64,
    audit_images=64, audit_steps=(10,), apgd_targets=1, eps_images=32, eps_values_255=(0, 2, 8, 32), attr_images=8,
    attr_slow_images=8, road_percentiles=(20, 50, 80), sanity_images=4, sanity_methods=("gradcam",),
    map_continuity_images=4, map_continuity_methods=("gradcam",), map_continuity_levels=(1, 4),
    ig_steps=16, lime_samples=100, deletion_steps=8, stability_images=4, stability_methods=("gradcam",),
    stability_levels=(1, 4), embed_anchors=1, embed_same_class=50, alphas=(0.0, 1.0), alpha_train_limit=512,
    alpha_val_size=64, alpha_eval_images=256, transfer_seeds=(0,), transfer_epochs=1.0, transfer_min_steps=4,
    transfer_train_limit=256, domain_shift_train_limit=256, transfer_test_limit=256, fairness_source="digits",
    fairness_seeds=(0,), fairness_epochs=1.0, fairness_train_limit=384, fairness_test_limit=360, fairness_width=8,
    fairness_pgd_steps=2, warmup_steps=2, tradeoff_images=32, tradeoff_lambdas=(0.0, 0.5, 1.0),
)  # fmt: skip

SEED_FIELDS = ("seeds", "transfer_seeds", "fairness_seeds")
# comma lists of names whose default (None) means "all"
NAME_LIST_FIELDS = ("attr_methods", "stability_methods", "sanity_methods", "map_continuity_methods")


def parse_overrides(settings: Settings, pairs: Sequence[str]) -> Settings:
    """Apply ``key=value`` overrides (tuples as comma lists, ``none`` for None); a bad one raises SettingsError
    naming the key."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise SettingsError(f"--set {pair!r}: expected key=value with key one of {', '.join(fields)}")
        changes[key] = _parse_value(key, getattr(FULL, key), text.strip())
    return dataclasses.replace(settings, **changes)


def _parse_value(key: str, default: Any, text: str) -> Any:
    if text.lower() == "none":
        return None
    if key in NAME_LIST_FIELDS:
        return tuple(t.strip() for t in text.split(",") if t.strip())
    try:
        if isinstance(default, tuple):
            kind = type(default[0]) if default else str
            return tuple(kind(t.strip()) for t in text.split(",") if t.strip())
        if isinstance(default, bool):
            if text.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes", "on")
        if default is None:
            return int(text)
        return type(default)(text)
    except ValueError:
        kind = "a comma list" if isinstance(default, tuple) else type(default).__name__
        raise SettingsError(f"--set {key}={text!r}: {key} must be {kind} (default {default!r})") from None


def with_seeds(settings: Settings, n: int) -> Settings:
    """Every seed list set to 0..n-1 (``--seeds N``)."""
    if n < 1:
        raise SettingsError("--seeds must be >= 1")
    return dataclasses.replace(settings, **{f: tuple(range(n)) for f in SEED_FIELDS})


#: Single-thread training throughput (images/s) by role, measured on this project's width-16 ResNet18 at 32x32.
TRAIN_RATE = {R.BASELINE: 200.0, R.CONSTRAINED: 75.0, R.JITTER_CONTROL: 110.0, R.ADVERSARIAL: 60.0,
              R.ADVERSARIAL_CONSTRAINED: 50.0, R.MIXED_CONTROL: 55.0, R.OTHER: 75.0}  # fmt: skip
INFER_RATE, ATTACK_STEP_RATE = 500.0, 310.0  # forwards/s; image x PGD-step/s (forward + backward)
#: Attribution samples/s: forward+backward (IG at 50 steps: 0.19 s an image) and batched forwards (LIME at 300
#: samples: 0.36 s an image); ROAD: seconds per image, percentile and direction (imputation + forward), all measured
#: single-thread on the width-16 ResNet18 at 32x32.
ATTR_BACKWARD_RATE, ATTR_FORWARD_RATE, ROAD_STEP_S = 270.0, 830.0, 0.011
SANITY_STEPS = 12  # the trained model and a ResNet18's 11 randomisation blocks (head, 8 residual blocks, stem)


def _map_s(method: str, s: Settings) -> float:
    """Single-thread seconds of one image's map by ``method`` with the settings' options (at 32x32)."""
    from analysis.attribution_estimates import samples_per_image
    from analysis.attributions import get_method

    backward, forward = samples_per_image(method, get_method(method).options(s), (3, 32, 32))
    return backward / ATTR_BACKWARD_RATE + forward / ATTR_FORWARD_RATE


def estimate_cpu_s(
    s: Settings, roles: Mapping[str, str], test_size: int = 10_000, cost_scale: float = 1.0
) -> dict[str, float]:
    """Planned single-thread CPU seconds per experiment for ``s`` on a zoo with these variant roles (a rough
    estimate from measured unit costs: see TRAIN_RATE, INFER_RATE, ATTACK_STEP_RATE). ``cost_scale``: the zoo's
    networks' cost relative to the width-16 ResNet18 at 32x32 the rates were measured on
    (``analysis.network_cost.cost_scale``: forward FLOPs at the zoo's input size); it scales every experiment that
    runs the zoo's networks (not fairness, which trains its own width-16 networks)."""
    v = len(roles)
    adv = sum(r in (R.ADVERSARIAL, R.ADVERSARIAL_CONSTRAINED, R.MIXED_CONTROL) for r in roles.values())
    robust_share = 0.45  # images an adversarial variant keeps under PGD-10; others keep about none
    apgd = max(s.audit_steps) * s.audit_restarts * (1 + s.apgd_targets)
    candidates = test_size if s.rank_whole_test_split else s.n_images
    alpha = len(s.alphas) * len(s.seeds) * (s.alpha_train_limit * s.alpha_epochs / TRAIN_RATE[R.CONSTRAINED] + 20)
    transfer_imgs = 1150 + s.domain_shift_train_limit  # digits' training split + the domain-shift subset
    transfer = len(s.transfer_seeds) * v * transfer_imgs * s.transfer_epochs / TRAIN_RATE[R.BASELINE]
    fair_roles = [r for r in (R.BASELINE, R.CONSTRAINED, R.JITTER_CONTROL) if r in roles.values()]
    fair = sum(TRAIN_RATE[r] ** -1 for r in fair_roles or (R.BASELINE, R.CONSTRAINED))
    own = {"fairness": (1 + s.fairness_shortcut) * len(s.fairness_seeds) * s.fairness_train_limit * s.fairness_epochs
           * fair}  # fmt: skip
    zoo = {
        "continuity": v * s.n_images * 17 / INFER_RATE,
        "alpha_sweep": alpha,
        "neighbourhood_rank": v * (candidates + s.rank_anchors * 16) / INFER_RATE,
        "probes": v * s.n_images * 12 / INFER_RATE,
        "robustness": v * s.pgd_images * 10 / ATTACK_STEP_RATE,
        "tradeoff": adv * len(s.tradeoff_lambdas) * s.tradeoff_images * 11 / ATTACK_STEP_RATE,
        "eps_sweep": v * s.eps_images * 10 * len(s.eps_values_255) / ATTACK_STEP_RATE,
        "attack_audit": (v * s.audit_images * 10 + adv * s.audit_images * robust_share * apgd) / ATTACK_STEP_RATE,
        "attributions": v
        * sum(
            s.attr_images_for(m) * (_map_s(m, s) + 2 * (s.deletion_steps + 1) / INFER_RATE) for m in s.attr_method_names
        ),
        "road": v
        * sum(
            s.attr_images_for(m) * (_map_s(m, s) + 2 * len(s.road_percentiles) * ROAD_STEP_S)
            for m in s.attr_method_names
        ),
        "stability": v * s.stability_images * 13 * len(s.stability_method_names) * 0.1,
        "sanity_checks": v * s.sanity_images * SANITY_STEPS * sum(_map_s(m, s) for m in s.sanity_method_names),
        "explanation_continuity": v
        * s.map_continuity_images
        * (1 + len(KINDS) * len(s.map_continuity_levels))
        * sum(_map_s(m, s) for m in s.map_continuity_method_names),
        "embeddings": v * s.embed_anchors * (s.embed_same_class + 17) / INFER_RATE,
        "transfer": transfer,
    }
    return {**{k: x * cost_scale for k, x in zoo.items()}, **own}
