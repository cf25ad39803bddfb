"""Subspace tools for gradient-projection methods (GPM, Saha et al. 2021), on Gram matrices.

Everything works on the d x d Gram matrix ``G = X X^T`` of a d x n activation matrix X (n may be
hundreds of thousands of tokens, so the Gram is accumulated batch by batch) in float64: the left
singular vectors of X are the eigenvectors of G and its squared singular values the eigenvalues.
Bases are d x k matrices with orthonormal columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Relative slack when comparing accumulated energy with the threshold: an energy that reaches the
# threshold exactly (up to float64 round-off) counts as reaching it.
_ENERGY_RTOL = 1e-9


def empty_basis(dim: int) -> torch.Tensor:
    return torch.zeros(dim, 0, dtype=torch.float64)


def gram(tokens: torch.Tensor) -> torch.Tensor:
    """``X X^T`` for rows ``tokens`` [n, d] (each row one column of X), in float64."""
    x = tokens.detach().reshape(-1, tokens.shape[-1]).double()
    return x.T @ x


def _sorted_eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending, clamped at 0) and eigenvectors of a symmetric PSD matrix."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return values.flip(0).clamp(min=0), vectors.flip(1)


@dataclass
class Extension:
    """Result of one GPM step: ``basis`` (d x k, orthogonal to the memory) and the energies."""

    basis: torch.Tensor
    total: float  # ||X||_F^2
    covered_before: float  # ||U^T X||_F^2 / ||X||_F^2 with the memory as it was
    covered_after: float  # the same with the new directions added

    @property
    def k(self) -> int:
        return int(self.basis.shape[1])


def gpm_extend(G: torch.Tensor, memory: torch.Tensor, threshold: float) -> Extension:
    """The GPM rule: new directions for the memory ``U`` (d x m) from the Gram ``G`` of X.

    With ``X_hat = (I - U U^T) X`` and its singular values s_1 >= s_2 >= ..., keep the smallest k with
    ``||U^T X||^2 + sum_{i<=k} s_i^2 >= threshold * ||X||^2`` (k = 0 when the memory already reaches it)
    and return the k leading left singular vectors of X_hat. An empty memory gives the plain
    energy-threshold rank of X.
    """
    G = G.double()
    U = memory.double().to(G.device)
    dim = G.shape[0]
    total = float(torch.trace(G))
    if total <= 0.0:
        return Extension(empty_basis(dim).to(G.device), 0.0, 0.0, 0.0)
    if U.shape[1]:
        residual_op = torch.eye(dim, dtype=G.dtype, device=G.device) - U @ U.T
        covered = float(torch.trace(U.T @ G @ U))
        G = residual_op @ G @ residual_op
    else:
        covered = 0.0
    values, vectors = _sorted_eigh(G)
    target = threshold * total * (1.0 - _ENERGY_RTOL)
    if covered >= target:
        k = 0
    else:
        reached = (covered + torch.cumsum(values, 0)) >= target
        k = int(reached.nonzero()[0]) + 1 if reached.any() else int(values.numel())
        # never add directions X_hat has no energy in (numerically zero eigenvalues)
        k = min(k, int((values > values[0] * 1e-12).sum()), dim - U.shape[1])
    basis = vectors[:, :k]
    if U.shape[1] and k:  # one more Gram-Schmidt pass so that [U, basis] stays orthonormal in floats
        basis = basis - U @ (U.T @ basis)
        basis = torch.linalg.qr(basis).Q
    captured = covered + float(values[:k].sum())
    return Extension(basis, total, covered / total, min(1.0, captured / total))


def energy_rank(G: torch.Tensor, threshold: float) -> int:
    """Smallest k whose leading singular values hold ``threshold`` of the energy of X."""
    return gpm_extend(G, empty_basis(G.shape[0]).to(G.device), threshold).k


def numerical_rank(G: torch.Tensor, rtol: float = 1e-4) -> int:
    """Number of singular values of X above ``rtol`` times the largest (from the Gram of X)."""
    values, _ = _sorted_eigh(G.double())
    if values.numel() == 0 or values[0] <= 0:
        return 0
    singular = values.sqrt()
    return int((singular > rtol * singular[0]).sum())


def energy_fraction(G: torch.Tensor, basis: torch.Tensor) -> float:
    """``||B^T X||^2 / ||X||^2``: the share of X's energy inside span(B)."""
    total = float(torch.trace(G))
    if total <= 0 or basis.shape[1] == 0:
        return 0.0
    B = basis.double().to(G.device)
    return float(torch.trace(B.T @ G.double() @ B)) / total


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||A^T B||_F^2 / min(k_a, k_b)`` in [0, 1]: mean squared cosine of the principal angles
    (1 = the smaller space lies inside the larger, 0 = orthogonal)."""
    k = min(a.shape[1], b.shape[1])
    if k == 0:
        return 0.0
    return float((a.double().T @ b.double().to(a.device)).pow(2).sum()) / k


def intersection_basis(space: torch.Tensor, excluded: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """Orthonormal basis of ``span(space) ∩ span(excluded)^⊥``.

    Vectors ``space @ a`` with ``excluded^T space a = 0``: ``a`` ranges over the null space of
    ``excluded^T space`` (right singular vectors with singular value <= tol).
    """
    S = space.double()
    if excluded.shape[1] == 0 or S.shape[1] == 0:
        return S
    M = excluded.double().to(S.device).T @ S
    _, singular, vh = torch.linalg.svd(M, full_matrices=True)
    rank = int((singular > tol).sum())
    null = vh[rank:].T  # [k_space, k_space - rank]
    return S @ null


def projector(basis: torch.Tensor) -> torch.Tensor:
    """``B B^T`` (d x d) for an orthonormal basis B."""
    B = basis.double()
    return B @ B.T
