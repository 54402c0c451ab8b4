"""The answer: ``Advice`` and its ``Recommendation`` objects (``types``), the evidence that
backs each one (``evidence``, ``convergence``), and how it is shown (``render``)."""

from __future__ import annotations

from autoaccel.advice.convergence import with_convergence
from autoaccel.advice.evidence import lr_follows_batch, recommendations
from autoaccel.advice.types import Advice, Recommendation

__all__ = ["Advice", "Recommendation", "lr_follows_batch", "recommendations", "with_convergence"]
