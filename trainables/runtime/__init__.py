"""The deployment runtime: a compressed model as it ships, with per-layer kernels chosen by
measurement (CSR inputs, sparse-adjacency SpMM, integer GEMMs, CSR weights).

``deploy`` (:mod:`.deploy`) builds the deployed form of a model reloaded from its file;
``choose_kernels`` / ``apply_plan`` (:mod:`.plan`) pick each layer's kernel;
``infer_peak_mb`` (:mod:`.memory`) measures what one inference needs. The layers and their
options are in :mod:`.layers`, the kernels in :mod:`.kernels`.
"""

from trainables.runtime.deploy import Deployed, deploy
from trainables.runtime.memory import SCOPE as INFER_PEAK_SCOPE
from trainables.runtime.memory import infer_peak_mb
from trainables.runtime.plan import PLAN_VERSION, apply_plan, choose_kernels

__all__ = ["INFER_PEAK_SCOPE", "PLAN_VERSION", "Deployed", "apply_plan", "choose_kernels",
           "deploy", "infer_peak_mb"]
