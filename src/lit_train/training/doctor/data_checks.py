"""Checks of the data alone: non-finite values, scale, labels, overlap between splits, shapes.

Each check takes batches as the loaders give them and returns findings; one that cannot
run for this data raises :class:`~lit_train.training.doctor.findings.CheckSkipped`.
"""

from collections import Counter
from typing import Any

import torch
from torch import Tensor

from lit_train.training.doctor.findings import CheckSkipped, Finding
from lit_train.training.doctor.probe import split_batch

NOT_PAIRS = "the batches are not (inputs, targets) pairs of tensors"


def _tensors(batch: Any, prefix: str = "batch") -> list[tuple[str, Tensor]]:
    """Every tensor in a batch (nested tuples, lists and dicts), named by where it sits."""
    if isinstance(batch, Tensor):
        return [(prefix, batch)]
    if isinstance(batch, dict):
        return [found for key, value in batch.items() for found in _tensors(value, f"{prefix}[{key!r}]")]
    if isinstance(batch, (tuple, list)):
        return [found for i, value in enumerate(batch) for found in _tensors(value, f"{prefix}[{i}]")]
    return []


def _pairs(batches: list[Any]) -> list[tuple[Tensor, Tensor]]:
    pairs = [split_batch(batch) for batch in batches]
    if not pairs or any(pair is None for pair in pairs):
        raise CheckSkipped(NOT_PAIRS)
    return pairs


def _name(position: str) -> str:
    return {"batch[0]": "inputs", "batch[1]": "targets"}.get(position, position)


def data_nonfinite(batches: list[Any]) -> list[Finding]:
    """NaN or infinite values in any floating-point tensor of the batches."""
    bad: Counter[str] = Counter()
    first: dict[str, int] = {}
    for index, batch in enumerate(batches):
        for position, tensor in _tensors(batch):
            if tensor.is_floating_point() and (count := int((~torch.isfinite(tensor)).sum())):
                bad[_name(position)] += count
                first.setdefault(_name(position), index)
    if not bad:
        return []
    where = ", ".join(f"{count} in the {name} (first in batch {first[name]})" for name, count in bad.items())
    return [Finding("data_nonfinite", "error", f"NaN or infinite values in the training data: {where}",
                    "clean the data: drop or impute the non-finite values in the data module before batching",
                    {"nonfinite": dict(bad), "first_batch": first, "batches_read": len(batches)})]


def data_scale(batches: list[Any], limit: float) -> list[Finding]:
    """Float inputs whose overall mean or standard deviation is far from a standardized 0 and 1."""
    inputs = [x for x, _ in _pairs(batches)]
    if not inputs[0].is_floating_point():
        raise CheckSkipped(f"the inputs are {inputs[0].dtype} (indices such as token ids), not features to scale")
    values = torch.cat([x.detach().reshape(-1).double() for x in inputs])
    values = values[torch.isfinite(values)]
    if values.numel() < 2:
        raise CheckSkipped("fewer than two finite input values")
    mean, std = float(values.mean()), float(values.std())
    if abs(mean) <= limit and 1 / limit <= std <= limit:
        return []
    return [Finding("data_scale", "warning",
                    f"the inputs are far from standardized: mean {mean:.3g}, std {std:.3g} (expected about 0 and 1)",
                    "standardize the inputs in the data module: x = (x - mean) / std, with the training split's "
                    "statistics",
                    {"mean": mean, "std": std, "limit": limit})]


def label_range(batches: list[Any], num_classes: int) -> list[Finding]:
    """Integer class labels outside ``[0, num_classes)``: cross-entropy fails or learns nonsense on them."""
    targets = [y for _, y in _pairs(batches)]
    if targets[0].is_floating_point():
        raise CheckSkipped("the targets are floats (regression), not class labels")
    labels = torch.cat([y.reshape(-1) for y in targets])
    outside = (labels < 0) | (labels >= num_classes)
    if not bool(outside.any()):
        return []
    low, high = int(labels.min()), int(labels.max())
    return [Finding("label_range", "error",
                    f"{int(outside.sum())} of {labels.numel()} labels are outside [0, {num_classes}) for the model's "
                    f"{num_classes} outputs (labels range {low} .. {high})",
                    f"map the labels to 0 .. {num_classes - 1} in the data module, or give the model {high + 1} "
                    f"outputs (model.num_classes / data.num_classes={high + 1})",
                    {"outside": int(outside.sum()), "labels": int(labels.numel()), "min": low, "max": high,
                     "num_classes": num_classes})]


def label_imbalance(batches: list[Any], ratio: float) -> list[Finding]:
    """The most common class with ``ratio`` times the samples of the rarest one."""
    targets = [y for _, y in _pairs(batches)]
    if targets[0].is_floating_point():
        raise CheckSkipped("the targets are floats (regression), not class labels")
    if targets[0].dim() != 1:
        raise CheckSkipped("the targets are sequences (one label per position), whose class balance is the data's own")
    labels = torch.cat(targets)
    counts = torch.bincount(labels[labels >= 0])
    present = {label: int(count) for label, count in enumerate(counts.tolist()) if count > 0}
    if len(present) < 2:
        return []
    common, rare = max(present, key=present.get), min(present, key=present.get)
    if present[common] < ratio * present[rare]:
        return []
    return [Finding("label_imbalance", "warning",
                    f"class {common} has {present[common]} training samples, class {rare} only {present[rare]} "
                    f"({present[common] / present[rare]:.1f}x)",
                    "weight the loss by inverse class frequency, resample the rare classes, or watch per-class "
                    "metrics rather than accuracy",
                    {"counts": present, "ratio": present[common] / present[rare], "limit": ratio})]


def _fingerprints(inputs: list[Tensor]) -> list[int]:
    return [hash(row.numpy().tobytes()) for x in inputs for row in x.detach().cpu().contiguous()]


def split_overlap(train: list[Any], held_out: dict[str, list[Any]], fraction: float) -> list[Finding]:
    """Samples whose inputs also occur, identically, in the training data."""
    if not held_out:
        raise CheckSkipped("no validation or test data to compare with the training data")
    seen = set(_fingerprints([x for x, _ in _pairs(train)]))
    findings = []
    for split, batches in held_out.items():
        samples = _fingerprints([x for x, _ in _pairs(batches)])
        shared = sum(sample in seen for sample in samples)
        if not shared:
            continue
        share = shared / len(samples)
        severity = "warning" if share > fraction else "info"
        findings.append(Finding("split_overlap", severity,
                                f"{shared} of {len(samples)} {split} samples ({share:.1%}) are identical to training "
                                "samples: the held-out score overstates how well the model generalizes",
                                f"split before any augmentation or duplication, and drop duplicates across splits "
                                f"(deduplicate the dataset before the {split} split)",
                                {"split": split, "shared": shared, "samples": len(samples), "share": share,
                                 "limit": fraction}))
    return findings


def data_shapes(batches: list[Any]) -> list[Finding]:
    """Tensors whose per-sample shape or dtype changes from batch to batch."""
    seen: dict[str, set[tuple[tuple[int, ...], str]]] = {}
    for batch in batches:
        for position, tensor in _tensors(batch):
            seen.setdefault(_name(position), set()).add((tuple(tensor.shape[1:]), str(tensor.dtype).replace("torch.", "")))
    varying = {name: sorted(kinds) for name, kinds in seen.items() if len(kinds) > 1}
    if not varying:
        return []
    described = "; ".join(f"{name}: " + ", ".join(f"{list(shape)} {dtype}" for shape, dtype in kinds)
                          for name, kinds in varying.items())
    return [Finding("data_shapes", "warning", f"per-sample shapes or dtypes differ between batches: {described}",
                    "give every sample the same shape and dtype (pad or crop in a collate_fn; convert once in the "
                    "data module)",
                    {name: [[list(shape), dtype] for shape, dtype in kinds] for name, kinds in varying.items()})]
