"""Bias audits of generated samples: attribute shares, fairness discrepancy, amplification."""
