"""The promotion gate: does a candidate model replace the current champion? (pure; no registry access)

How it works
------------
A candidate becomes ``champion`` only when both hold:

* accuracy: ``Avg ≥ champion Avg + margin`` (any Avg passes when there is no champion yet);
* language retention: ``perplexity ≤ fp-base perplexity × ppl_bound`` (the adapted model must not have
  forgotten its language beyond the bound, measured in the same evaluation run).

Otherwise it gets alias ``challenger``, and the decision's message states every condition that failed,
with the numbers, so the registry says *why* a model was not promoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateDecision:
    alias: str
    """'champion' or 'challenger'."""
    failed: list[str] = field(default_factory=list)
    """One sentence per failed condition (empty when promoted)."""
    message: str = ""


def decide(avg: float, perplexity: float, fp_perplexity: float, champion_avg: float | None, margin: float,
           ppl_bound: float) -> GateDecision:
    """Apply the gate to a candidate's Avg accuracy and perplexity (and the fp base's)."""
    failed = []
    if champion_avg is not None and avg < champion_avg + margin:
        failed.append(f"accuracy: Avg {avg:.2f} < champion Avg {champion_avg:.2f} + margin {margin:.2f}")
    limit = fp_perplexity * ppl_bound
    if not perplexity <= limit:
        failed.append(f"language retention: perplexity {perplexity:.3f} > fp base {fp_perplexity:.3f} × bound "
                      f"{ppl_bound:.2f} = {limit:.3f}")
    if failed:
        return GateDecision("challenger", failed, "not promoted (challenger): " + "; ".join(failed))
    versus = "no champion yet" if champion_avg is None else f"Avg {avg:.2f} ≥ {champion_avg:.2f} + {margin:.2f}"
    return GateDecision("champion", [], f"promoted to champion: {versus}; perplexity {perplexity:.3f} ≤ "
                                        f"{limit:.3f} (fp base × {ppl_bound:.2f})")
