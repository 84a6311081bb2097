"""The doctor's thresholds: the ``doctor`` node of the root config holds the same keys and defaults."""

from dataclasses import dataclass


@dataclass(frozen=True)
class DoctorSettings:
    """Thresholds of ``action=doctor``, each a rule of thumb from common practice.

    Args:
        data_batches: Training batches (and at most as many validation and test batches) the data
            checks read. Default ``50``.
        scale_limit: Inputs count as far from standardized when their mean is beyond ``±scale_limit``
            or their standard deviation above ``scale_limit`` or below ``1 / scale_limit``. Default ``5.0``.
        imbalance_ratio: Labels are imbalanced when the most common class has this many times the
            samples of the rarest one. Default ``10.0``.
        overlap_fraction: A held-out split overlaps the training data when more than this share of
            its samples also occur in training (any overlap below it is reported as info). Default ``0.01``.
        init_loss_tolerance: Classification: the first loss is off when it is more than this share
            of ``ln C`` away from ``ln C``. Default ``0.5``.
        init_mse_ratio: Regression: the first outputs are off when their mean squared error is above
            this many times that of predicting the targets' mean. Default ``10.0``.
        saturation_fraction: A tanh/sigmoid-like layer is saturated when more than this share of its
            outputs sit within 1% of its limits. Default ``0.25``.
        dead_fraction: A ReLU-like layer is dying when more than this share of its units never fire on
            a batch. Default ``0.5``.
        exploding_norm: A layer's gradient norm above this is exploding. Default ``100.0``.
        vanishing_ratio: A layer's gradient norm this many times below the largest layer's is
            vanishing. Default ``1000.0``.
        overfit_steps: Most optimizer steps of the one-batch overfit test; it stops as soon as the
            batch is learnt. Default ``200``.
        overfit_loss_ratio: The batch counts as learnt when the loss is below this share of the
            loss of predicting the mean (regression) or of the first loss (a module whose outputs
            cannot be read). Default ``0.05``.
        lr_low_factor: The LR is too low when it is more than this many times below the range
            test's suggestion. Default ``30.0``.
    """

    data_batches: int = 50
    scale_limit: float = 5.0
    imbalance_ratio: float = 10.0
    overlap_fraction: float = 0.01
    init_loss_tolerance: float = 0.5
    init_mse_ratio: float = 10.0
    saturation_fraction: float = 0.25
    dead_fraction: float = 0.5
    exploding_norm: float = 100.0
    vanishing_ratio: float = 1000.0
    overfit_steps: int = 200
    overfit_loss_ratio: float = 0.05
    lr_low_factor: float = 30.0
