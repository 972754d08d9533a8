"""The paper's published numbers and stated claims, each with where it stands in the paper.

``PAPER`` holds every number the paper's text gives (Tables 1-4) and the qualitative statement behind each figure
(Figs. 2-4, 6, 8, 10-13 carry no numbers in the text); ``FIGURE_SHORT`` the short form for the claims table.
"""

from __future__ import annotations

from typing import Any

PAPER_SOURCE = "Wu, Sang, Zhao, Chen: 'An Experimental Study of Semantic Continuity for Deep Learning Models'"

#: Every number the paper's text gives, with where it stands. Accuracies in percent.
PAPER: dict[str, Any] = {
    "source": PAPER_SOURCE,
    "table1": {
        "source": "section 4.2, Table 1: parameters of the perturbation levels",
        "levels": {
            1: {"brightness": 16, "contrast": 1.25, "saturation": 1.25, "hue": 0.1},
            2: {"brightness": 32, "contrast": 1.50, "saturation": 1.50, "hue": 0.2},
            3: {"brightness": 48, "contrast": 1.75, "saturation": 1.75, "hue": 0.3},
            4: {"brightness": 64, "contrast": 2.0, "saturation": 2.0, "hue": 0.4},
        },
    },
    "table2": {
        "source": "section 4.4, Table 2: clean and PGD accuracy (%); PGD eps 8 px, step 2 px, 10 iterations",
        "ResNet18 / CIFAR-100": {
            "standard": {"clean": 66.99, "adv": 9.34},
            "C": {"clean": 67.01, "adv": 16.01},
            "ADV": {"clean": 63.80, "adv": 44.30},
            "ADV+C": {"clean": 59.62, "adv": 54.04},
        },
        "ResNet50 / ImageNet": {
            "standard": {"clean": 73.42, "adv": 0.49},
            "C": {"clean": 72.01, "adv": 0.94},
            "ADV": {"clean": 55.43, "adv": 8.25},
            "ADV+C": {"clean": 50.66, "adv": 32.55},
        },
    },
    "table3": {
        "source": "section 4.6, Table 3: test accuracy (%) of the CIFAR-100 ResNet18s fine-tuned on each target",
        "targets": ("cifar10", "svhn", "mnist"),
        "standard": {"cifar10": 84.61, "svhn": 94.25, "mnist": 99.32},
        "C": {"cifar10": 84.78, "svhn": 94.60, "mnist": 99.37},
        "ADV": {"cifar10": 85.17, "svhn": 94.66, "mnist": 99.50},
        "ADV+C": {"cifar10": 86.40, "svhn": 94.90, "mnist": 99.50},
    },
    "table4": {
        "source": "section 4.7, Table 4 (the text calls it 'Table 3'): test accuracy (%) on Colorful MNIST, "
        "95% red backgrounds in training, 95% blue in test",
        "standard": 96.01,
        "C": 97.54,
    },
    "figures": {
        "fig2": "section 2.2, Figs. 1-2 (ResNet50, ImageNet val): 'the perturbated samples are not the closest "
        "samples to the original sample in the representation space'",
        "fig3": "section 4.2, Fig. 3 (ResNet18, CIFAR-100; referenced as 'Fig. LABEL:fig:diff_result'): 'the DS of "
        "the model with semantic continuity constraints is smaller than that of the original model'",
        "fig4": "section 4.2, Fig. 4 (ResNet18, CIFAR-100): 'as alpha increases, the accuracy of the model decreases "
        "slightly, but the semantic continuity of the model is significantly improved' (continuity = sum of DS "
        "over the four kinds at level 1); the paper settles on alpha = 1.0",
        "fig6": "section 4.3.1, Fig. 6 (cited as 'Table 6'): 'the models with semantic continuity constraints are "
        "sensitive to the semantic perturbation' (lower accuracy on RGB-channel-translated images)",
        "fig8": "section 4.3.2, Fig. 8 (cited as 'Table 8'): 'the accuracy of the semantic-continuity-constrained "
        "model has been more affected' by randomising the centre area",
        "fig10": "section 4.3.3, Fig. 10 (cited as 'Table 10'; Figs. 9 and 10 share a caption): 'rapid decline in the "
        "classification accuracy of the re-spliced image of the model with continuity constraints'",
        "fig11_13": "section 4.5, Figs. 11-13 (IG, GradCAM, LIME; examples only): C and ADV+C attributions are "
        "'smoother and more concentrated in the recognized object' than those of standard and ADV",
    },
}


#: The paper's figure for each figure-based claim, short enough for the claims table (full quotes in PAPER).
FIGURE_SHORT = {
    "fig2": "Figs. 1-2, no numbers: perturbed copies 'are not the closest samples to the original'",
    "fig3": "Fig. 3, no numbers: constrained models' DS 'is smaller than that of the original model'",
    "fig4_right": "Fig. 4 right, no numbers: continuity 'significantly improved' as alpha grows",
    "fig4_left": "Fig. 4 left, no numbers: accuracy 'decreases slightly' as alpha grows",
    "fig6": "Fig. 6, no numbers: constrained models more sensitive (lower accuracy)",
    "fig8": "Fig. 8, no numbers: constrained models 'more affected' (lower accuracy)",
    "fig10": "Fig. 10, no numbers: 'rapid decline' of the constrained models' accuracy",
    "fig11_13": "Figs. 11-13, examples only: constrained maps 'more concentrated in the recognized object'",
}
