"""Evaluation protocols: which normalisations, thresholds and test subsets a dataset reports.

A protocol turns per-image NMEs (one array per normalisation, fractions) into the numbers papers
report: mean NME per normalisation, failure rate and CED AUC at each threshold for the primary
(first) normalisation, for the whole test split and for each named subset of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from wingface.metrics import DEFAULT_NORMALISATIONS, NORMALISATIONS, ced_auc, failure_rate

log = logging.getLogger(__name__)


@dataclass
class EvaluationProtocol:
    """What to report on a test split.

    Attributes:
        normalisations: NME normalisations; the first is the primary one (``val/nme``,
            ``test/nme``, the checkpoint monitor and the one FR/AUC use).
        thresholds: failure-rate and CED-AUC limits (fractions), e.g. ``[0.08, 0.10]``.
        subsets: named test subsets, each the union of faces carrying any of the listed
            attribute flags (e.g. ``common: [helen/testset, lfpw/testset]``).
        pose_subsets: the subsets that form the pose axis, from frontal to the largest poses
            (e.g. ``[yaw_0_30, yaw_30_60, yaw_60_90]``); reported together as the NME-per-pose
            table and plot. Each must be one of ``subsets``.
    """

    normalisations: Sequence[str] = DEFAULT_NORMALISATIONS
    thresholds: Sequence[float] = (0.08, 0.10)
    subsets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    pose_subsets: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.pose_subsets = tuple(self.pose_subsets)
        unknown = [name for name in self.pose_subsets if name not in dict(self.subsets)]
        if unknown:
            raise ValueError(
                f"data.protocol.pose_subsets: {unknown} are not among data.protocol.subsets "
                f"{list(dict(self.subsets))}"
            )
        self.normalisations = tuple(self.normalisations)
        self.thresholds = tuple(float(t) for t in self.thresholds)
        self.subsets = {name: tuple(flags) for name, flags in dict(self.subsets).items()}
        if not self.normalisations:
            raise ValueError("data.protocol.normalisations must list at least one normalisation")
        for norm in self.normalisations:
            if norm not in NORMALISATIONS:
                raise ValueError(
                    f"data.protocol.normalisations: unknown {norm!r}; "
                    f"expected {list(NORMALISATIONS)}"
                )
        for threshold in self.thresholds:
            if not threshold > 0:
                raise ValueError(f"data.protocol.thresholds must be > 0, got {threshold}")

    @property
    def primary(self) -> str:
        """The primary normalisation."""
        return self.normalisations[0]

    def metric_name(self, norm: str) -> str:
        """``nme`` for the primary normalisation, ``nme_<norm>`` for the others."""
        return "nme" if norm == self.primary else f"nme_{norm}"

    def subset_masks(
        self, attributes: Mapping[str, np.ndarray], size: int
    ) -> dict[str, np.ndarray]:
        """``(size,)`` bool masks of the subsets whose attribute flags the test split carries.

        A subset is reported only when every flag it names is present, so a partial copy of a
        dataset never passes off part of a subset as the whole (it is logged and left out).
        """
        masks = {}
        for name, flags in self.subsets.items():
            missing = [f for f in flags if f not in attributes]
            if missing:
                log.info("test subset %r left out: the test split has no %s", name, missing)
                continue
            present = [np.asarray(attributes[f], dtype=bool) for f in flags]
            masks[name] = np.logical_or.reduce(present)
        for name, mask in masks.items():
            if mask.shape != (size,):
                raise ValueError(f"subset {name!r} mask has shape {mask.shape}, expected ({size},)")
        return masks

    def summarise(self, per_image: Mapping[str, np.ndarray], prefix: str) -> dict[str, float]:
        """Report numbers for one set of faces.

        Args:
            per_image: normalisation → ``(N,)`` per-image NMEs (fractions).
            prefix: metric name prefix, e.g. ``"test/"`` or ``"test/common/"``.

        Returns:
            ``{prefix}nme`` (primary), ``{prefix}nme_<norm>`` (others), and for the primary
            normalisation ``{prefix}fr_<t>`` and ``{prefix}auc_<t>`` for each threshold ``t``
            (formatted with two decimals, e.g. ``fr_0.10``).
        """
        out = {
            f"{prefix}{self.metric_name(norm)}": float(np.mean(per_image[norm]))
            for norm in self.normalisations
        }
        primary = np.asarray(per_image[self.primary], dtype=np.float64)
        for threshold in self.thresholds:
            out[f"{prefix}fr_{threshold:.2f}"] = failure_rate(primary, threshold)
            out[f"{prefix}auc_{threshold:.2f}"] = ced_auc(primary, threshold)
        return out

    def pose_rows(
        self, values: Mapping[str, float], sizes: Mapping[str, int], prefix: str = "test/"
    ) -> tuple[list[str], list[list]]:
        """The NME-per-pose table from summarised values (see :meth:`summarise`).

        Args:
            values: ``{prefix}{subset}/nme...`` numbers for the pose subsets (fractions).
            sizes: faces per subset.
            prefix: the prefix the values were summarised with.

        Returns:
            ``(columns, rows)``: ``pose``, ``faces``, then NME per normalisation and FR per
            threshold in percent; one row per pose subset present in ``values``, in
            :attr:`pose_subsets` order.
        """
        names = [self.metric_name(norm) for norm in self.normalisations]
        failures = [f"fr_{t:.2f}" for t in self.thresholds]
        columns = ["pose", "faces", *(f"{n} %" for n in names), *(f"{f} %" for f in failures)]
        rows = []
        for subset in self.pose_subsets:
            if f"{prefix}{subset}/nme" not in values:
                continue
            numbers = [100.0 * values[f"{prefix}{subset}/{k}"] for k in (*names, *failures)]
            rows.append([subset, int(sizes[subset]), *numbers])
        return columns, rows
