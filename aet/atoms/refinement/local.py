"""Local joint refits of a few atoms against the rest of the model held fixed (NumPy).

The add pass of :func:`~aet.atoms.refinement.refine` tests a new atom with every other atom
held where it is. Where a traced atom absorbed part of a missed neighbour (it sits between
the two true sites, or the two sites are closer than the add pass's minimum distance, as at
a grain boundary), that test refuses the new atom: the neighbour still explains half of it.
:class:`LocalPatch` fits the new atom *and* its neighbours together, in windows of each
projection around them, with the model image of every other atom held fixed. It is the
refinement's forward model (:func:`aet.atoms._kernels.profile_kernel`: the same profile,
square cut-off per Gaussian, response and offsets) restricted to those windows, so its loss
changes are the exact changes of the whole problem's loss.
"""

from __future__ import annotations

import math

import numpy as np


class LocalPatch:
    """The pixels a few atoms can reach, with the image of all other atoms fixed.

    Parameters
    ----------
    prob : ProjectionProblem
        Its profile, response, offsets and alignment are used as they are.
    image : (n_proj, ny, nx) array
        The model image of ``prob`` at the full model (:meth:`ProjectionProblem.model_image`).
    pos, sp : arrays
        The local atoms' current positions ``(n, 3)`` (Å) and species indices; their images
        are taken out of ``image`` (exactly, through the inverse response).
    centre : (3,) array
        The point (Å) the windows are centred on; with ``reach_A`` (Å), how far from it any
        local atom may go.
    """

    def __init__(self, prob, image, pos, sp, centre, reach_A: float):
        g = prob.geo
        self.prob = prob
        self.x0, self.y0, self.px = float(g["x0"]), float(g["y0"]), float(g["pixel_A"])
        nproj, ny, nx = prob.meas.shape
        self.rad = np.array([int(math.ceil(prob.cutoff * math.sqrt(S) / self.px))
                             for S in prob.S])
        half = int(self.rad.max()) + int(math.ceil(reach_A / self.px)) + 2
        uv = np.asarray(centre, dtype=np.float64) @ prob.R2.transpose(0, 2, 1) + prob.shifts
        ci = np.rint((uv[:, 0] - self.x0) / self.px).astype(np.int64)
        cj = np.rint((uv[:, 1] - self.y0) / self.px).astype(np.int64)
        wx, wy = min(2 * half + 1, nx), min(2 * half + 1, ny)
        self.i0 = np.clip(ci - half, 0, nx - wx)
        self.j0 = np.clip(cj - half, 0, ny - wy)
        ii = self.i0[:, None] + np.arange(wx)[None, :]
        jj = self.j0[:, None] + np.arange(wy)[None, :]
        self.ii, self.jj = ii, jj
        self.xs = self.x0 + ii * self.px            # (k, wx)
        self.ys = self.y0 + jj * self.px            # (k, wy)
        k = np.arange(nproj)[:, None, None]
        take = (k, jj[:, :, None], ii[:, None, :])
        self.meas = prob.meas[take]
        self.w = prob.w[take]
        self.hw = prob.hw[take]
        self.off = prob.offset[:, None, None]
        img = image[take]
        gam, ref, eps = prob.gamma, prob.ref, prob.eps
        self.epsg = eps**gam
        pw = np.maximum((img - self.off) / ref + self.epsg, eps**gam)
        lin = ref * (pw ** (1.0 / gam) - eps)
        self.rest = np.maximum(lin - self.linear(pos, sp), 0.0)
        self.model0 = img

    # -- forward ---------------------------------------------------------------------------
    def _terms(self, p, s):
        """One atom's separable factors over its Gaussians (the kernel's square cut-off of
        ``rad[g]`` pixels about the atom's rounded pixel): ``ey (k, wy, G)`` with the
        amplitudes folded in, ``ex (k, G, wx)``, and ``(x − u) / S``, ``(y − v) / S`` in the
        same layouts; the atom's linear image is ``ey @ ex``."""
        prob = self.prob
        uv = p @ prob.R2.transpose(0, 2, 1) + prob.shifts   # (k, 2)
        ci = np.rint((uv[:, 0] - self.x0) / self.px).astype(np.int64)
        cj = np.rint((uv[:, 1] - self.y0) / self.px).astype(np.int64)
        keep = prob.C[s] != 0.0
        S = prob.S[keep][None, :, None]
        c = prob.C[s][keep]
        r = self.rad[keep][None, :, None]
        dx = (self.xs - uv[:, 0:1])[:, None, :]                     # (k, 1, wx)
        dy = (self.ys - uv[:, 1:2])[:, None, :]                     # (k, 1, wy)
        mx = np.abs(self.ii - ci[:, None])[:, None, :] <= r         # (k, G, wx)
        my = np.abs(self.jj - cj[:, None])[:, None, :] <= r
        ex = np.where(mx, np.exp(-dx * dx / (2.0 * S)), 0.0)
        ey = np.where(my, np.exp(-dy * dy / (2.0 * S)), 0.0) * c[None, :, None]
        return ex, ey.transpose(0, 2, 1), dx / S, (dy / S).transpose(0, 2, 1)

    def linear(self, pos, sp):
        """The linear image (windows) of the atoms ``pos`` of species ``sp``."""
        lin = np.zeros(self.meas.shape)
        for p, s in zip(np.asarray(pos, dtype=np.float64).reshape(-1, 3), sp):
            ex, ey, _, _ = self._terms(p, int(s))
            lin += ey @ ex
        return lin

    def model(self, lin):
        prob = self.prob
        lp = np.maximum(lin, 0.0) / prob.ref + prob.eps
        pw = lp**prob.gamma
        return prob.ref * (pw - self.epsg) + self.off, pw, lp

    def loss(self, pos, sp, *, jac: bool = False):
        """(training loss, held-out loss, model windows) with the local atoms at ``pos``
        (absolute units, windows only); ``jac``: also the residual ``r = M − measured`` and
        the derivatives ``D (2n, n_proj, wy, wx)`` of ``M`` with respect to each atom's
        image-plane position (u, v) (:meth:`jacobian` turns them into 3D ones)."""
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
        lin = self.rest.copy()
        parts = []
        for p, s in zip(pos, sp):
            t = self._terms(p, int(s))
            parts.append(t)
            lin += t[1] @ t[0]
        m, pw, lp = self.model(lin)
        r = m - self.meas
        lt = 0.5 * float((self.w * r * r).sum())
        lh = 0.5 * float((self.hw * r * r).sum())
        if not jac:
            return lt, lh, m
        fp = self.prob.gamma * pw / lp              # dM/dL
        D = np.empty((2 * len(pos),) + r.shape)
        for a, (ex, ey, dxs, dys) in enumerate(parts):
            # d/du exp(-(x-u)^2/2S) = e (x-u)/S
            D[2 * a] = (ey @ (ex * dxs)) * fp
            D[2 * a + 1] = ((ey * dys) @ ex) * fp
        return lt, lh, m, r, D

    def jacobian(self, D):
        """The Jacobian ``(3n, n_proj, wy, wx)`` of the model windows with respect to the
        positions, from the image-plane derivatives ``D`` of :meth:`loss`."""
        R = self.prob.R2
        n = len(D) // 2
        return np.stack([D[2 * a] * R[:, 0, q, None, None] + D[2 * a + 1] * R[:, 1, q, None, None]
                         for a in range(n) for q in range(3)])

    def _normal_equations(self, D, r):
        """Gauss–Newton ``(A, g)`` of the training loss in the positions, through the
        per-projection Gram matrices of the image-plane derivatives (2n × 2n per
        projection instead of a 3n-column Jacobian)."""
        n2, K = D.shape[0], D.shape[1]
        Dk = D.reshape(n2, K, -1).transpose(1, 0, 2)          # (K, 2n, P)
        wk = self.w.reshape(K, 1, -1)
        Dw = Dk * wk
        G = Dw @ Dk.transpose(0, 2, 1)                         # (K, 2n, 2n)
        gk = (Dw @ r.reshape(K, -1, 1))[..., 0]                # (K, 2n)
        n = n2 // 2
        R = self.prob.R2                                       # (K, 2, 3)
        A = np.einsum("kiq,kaibj,kjr->aqbr", R, G.reshape(K, n, 2, n, 2), R)
        g = np.einsum("kiq,kai->aq", R, gk.reshape(K, n, 2))
        return A.reshape(3 * n, 3 * n), g.ravel()

    def fit(self, pos, sp, *, anchor, reach_A: float, max_iter: int = 15,
            rtol: float = 1e-7):
        """Levenberg–Marquardt fit of the local atoms' positions on the training pixels
        (each coordinate kept within ``reach_A`` of ``anchor``), until a step lowers the
        loss by less than ``rtol`` of the whole problem's norm. Returns (positions,
        training loss, held-out loss, model windows)."""
        x = np.asarray(pos, dtype=np.float64).ravel().copy()
        anchor = np.asarray(anchor, dtype=np.float64).ravel()
        lo, hi = anchor - reach_A, anchor + reach_A
        x = np.clip(x, lo, hi)
        lt, lh, m, r, D = self.loss(x, sp, jac=True)
        lam = 1e-3
        tol = rtol * self.prob.norm
        for _ in range(max_iter):
            A, g = self._normal_equations(D, r)
            diag = np.maximum(np.diagonal(A), 1e-12 * max(float(np.max(np.diagonal(A))),
                                                          1e-300))
            improved = False
            while lam < 1e8:
                step = np.linalg.solve(A + lam * np.diag(diag), -g)
                xn = np.clip(x + step, lo, hi)
                new = self.loss(xn, sp, jac=True)
                if new[0] < lt:
                    gain = lt - new[0]
                    x = xn
                    lt, lh, m, r, D = new
                    lam = max(lam / 3.0, 1e-7)
                    improved = True
                    break
                lam *= 4.0
            if not improved or gain < tol:
                break
        return x.reshape(-1, 3), lt, lh, m
