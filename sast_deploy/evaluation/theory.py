"""The paper's constants of a trained network: B1, B2 (surrogate), M_theta_hat, gamma_hat."""
from __future__ import annotations

from ..model.network import SNN


def theory_constants(model: SNN) -> dict:
    """B1 = sup|sigma'|, B2 = sup|sigma''|, M_theta_hat = largest threshold, and
    gamma_hat = max over layers of alpha_l + max(theta_l) * B1 (the contraction factor; < 1 is
    the regime the theory covers)."""
    lifs = model.lifs
    B1 = lifs[0].surrogate.B1
    m_theta = max(float(l.theta.detach().max()) for l in lifs)
    gamma = max(l.alpha + float(l.theta.detach().max()) * B1 for l in lifs)
    return {"B1": B1, "B2": lifs[0].surrogate.B2, "M_theta_hat": m_theta, "gamma_hat": gamma}
