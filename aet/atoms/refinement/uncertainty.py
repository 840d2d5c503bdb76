"""Per-atom position covariance of a refined model.

``"jackknife"`` (default): the spread of the estimate when one projection is left out, one
Gauss–Newton step per projection. With the refinement's per-projection alignment fitted
(``alignment``), each left-out step moves the atoms *and* re-solves the other projections'
shifts and Euler corrections with them (their coupling to every atom, neighbours' overlapping
footprints included; the positions' own blocks per atom), and the rigid motion the free
alignment leaves unmeasured (a translation of every atom with the matching shifts, a rotation
with the matching angles) is removed from each step: σ is of the positions relative to the
particle. Why: an atom's y along a tilt axis is seen the same way by every projection, and so
is any error the fitted alignment passes to all of them at once (a shift or an in-plane
rotation of the others that the left-out projection pinned); holding the alignment fixed
hides exactly that part. Measured (abTEM 3 nm FePt through ``aet.run``, ``python
benchmarks/bench_accuracy.py``; the truth only scores): RMS(error/σ) of the per-atom
jackknife 1.27 (Fe 1.34) on the base case and 1.58 on the small one, largest along y
(Pt 2.42 on the small case); see the bench's per-species, per-axis line for this one.
``"jackknife-atom"``: that per-atom jackknife, ``δ_jk = (F_j − F_jk)⁻¹ g_jk`` with the
neighbours and the alignment held fixed (what ``"jackknife"`` is when no alignment was
fitted).

``"sandwich"``: the per-atom 3×3 Gauss–Newton block ``F_j = Σ_k J_jkᵀ J_jk`` and the
spread of the per-projection gradients ``g_jk = J_jkᵀ r_k`` give the robust (cluster-sandwich)
covariance ``F_j⁻¹ (Σ_k g_jk g_jkᵀ) F_j⁻¹ · n/(n − 1)`` with the projections as clusters.

``"pixels"``: the sandwich with the pixels as clusters. ``"curvature"``: the Cramér–Rao bound
``σ² F_j⁻¹`` with σ² the mean residual variance (white noise of one variance, a correct model).

Not in σ: the uncertainty of the profile and response (shared by all atoms of a species) and
errors no projection disagrees about (an atom model wrong the same way at every angle).
"""

from __future__ import annotations

import numpy as np

from .alignment import rotation_derivatives
from .problem import (
    FISHER,
    FISHER_K,
    G_POS_K,
    LOSS,
    MEAT,
    ProjectionProblem,
)


def _inverse_blocks(F):
    cov = np.full(F.shape, np.nan)
    ok = np.all(np.isfinite(F), axis=(1, 2))
    ok[ok] = np.linalg.det(F[ok]) > 1e-12 * np.maximum(
        np.trace(F[ok], axis1=1, axis2=2) ** 3, 1e-300)
    cov[ok] = np.linalg.inv(F[ok])
    return cov


def _atom_jackknife(F, Fk, gk, Finv):
    """Per-atom leave-one-projection-out moves ``δ_jk = (F_j − F_jk)⁻¹ g_jk`` (neighbours and
    alignment held fixed): ``(n_proj, n, 3)``."""
    rest = F[None] - Fk
    ok = np.linalg.det(rest) > 1e-9 * np.maximum(np.linalg.det(F)[None], 1e-300)
    dlt = np.zeros_like(gk)
    dlt[ok] = np.linalg.solve(rest[ok], gk[ok][..., None])[..., 0]
    fallback = ~ok  # one projection holds (nearly) all of an axis: plain sandwich term
    dlt[fallback] = np.einsum("jab,kjb->kja", np.nan_to_num(Finv), gk)[fallback]
    return dlt


def _rigid_basis(pos, *, translations: bool = True, rotations: bool = True) -> np.ndarray:
    """Orthonormal ``(3n, ≤ 6)`` basis of the rigid motions of ``pos`` (the 3 translations,
    the 3 small rotations about the centroid)."""
    c = pos - pos.mean(axis=0)
    cols = [np.tile(np.eye(3), (len(pos), 1))] if translations else []
    if rotations:
        cols += [np.cross(ax, c).reshape(-1, 1) for ax in np.eye(3)]
    q, _ = np.linalg.qr(np.column_stack(cols))
    return q


def _footprints(prob: ProjectionProblem, pos, k: int):
    """Atom footprints in projection ``k``: ``(pix, valid, ju, jv)``, the pixel index
    ``(n, P, P)`` of each footprint pixel, whether it lies in the image, and ``∂M/∂u``,
    ``∂M/∂v`` of each atom there (``u, v``: its image position), as the kernel evaluates
    them (``cutoff`` half-widths per Gaussian, the response at the summed linear image)."""
    n_proj, ny, nx = prob.meas.shape
    g = prob.geo
    px, x0, y0 = float(g["pixel_A"]), float(g["x0"]), float(g["y0"])
    rad = np.ceil(prob.cutoff * prob.sigmas / px).astype(int)
    o = np.arange(-rad.max(), rad.max() + 1)
    uv = pos @ prob.R2[k].T + prob.shifts[k]
    ix = np.rint((uv[:, 0] - x0) / px).astype(int)[:, None] + o
    iy = np.rint((uv[:, 1] - y0) / px).astype(int)[:, None] + o
    dx = x0 + ix * px - uv[:, :1]
    dy = y0 + iy * px - uv[:, 1:]
    inside = np.abs(o)[None, :] <= rad[:, None]                     # (n_gauss, P)
    ex = np.exp(-dx[:, None, :] ** 2 / (2 * prob.S[None, :, None])) * inside
    ey = np.exp(-dy[:, None, :] ** 2 / (2 * prob.S[None, :, None])) * inside
    C = prob.C[prob.sp]                                             # (n, n_gauss)
    a = np.matmul((ey * C[:, :, None]).transpose(0, 2, 1), ex)      # (n, P, P)
    b = np.matmul((ey * (C / prob.S)[:, :, None]).transpose(0, 2, 1), ex)
    valid = ((iy >= 0) & (iy < ny))[:, :, None] & ((ix >= 0) & (ix < nx))[:, None, :]
    pix = np.clip(iy, 0, ny - 1)[:, :, None] * nx + np.clip(ix, 0, nx - 1)[:, None, :]
    lin = np.bincount(pix[valid], a[valid], minlength=ny * nx)
    dmdl = prob.gamma * (np.maximum(lin, 0.0) / prob.ref + prob.eps) ** (prob.gamma - 1)
    s = np.where(valid, dmdl[pix], 0.0) * b
    return pix, valid, s * dx[:, None, :], s * dy[:, :, None]


def _pair_blocks(uv, ju, jv, wpix, radius_px):
    """Image-plane Gauss–Newton blocks ``Σ w ∂M/∂u_i ∂M/∂u_j`` (2×2) of the atom pairs
    whose footprint centres lie within ``radius_px`` pixels, summed over the footprints'
    cores (``radius_px`` about each centre, where the derivatives are large): ``(i, j,
    G (m, 2, 2))``, i < j."""
    from scipy.spatial import cKDTree

    ci = np.rint(uv).astype(int)
    pairs = cKDTree(ci).query_pairs(radius_px + 0.5, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2, 2))
    h = min(ju.shape[1] // 2, int(np.ceil(radius_px)))
    c = ju.shape[1] // 2
    core = slice(c - h, c + h + 1)
    ju, jv, wpix = ju[:, core, core], jv[:, core, core], wpix[:, core, core]
    P = 2 * h + 1
    uw = ju * wpix
    vw = jv * wpix
    off = ci[pairs[:, 1]] - ci[pairs[:, 0]]                         # (m, 2): (x, y)
    ok = np.all(np.abs(off) < P, axis=1)
    pairs, off = pairs[ok], off[ok]
    G = np.zeros((len(pairs), 2, 2))
    key = (off[:, 1] + h * 4) * (8 * h + 1) + (off[:, 0] + h * 4)
    for kk in np.unique(key):
        sel = np.flatnonzero(key == kk)
        ox, oy = off[sel[0]]
        # pixel (y, x) of atom i's footprint is pixel (y − oy, x − ox) of atom j's
        yi = slice(max(oy, 0), P + min(oy, 0))
        xi = slice(max(ox, 0), P + min(ox, 0))
        yj = slice(max(-oy, 0), P + min(-oy, 0))
        xj = slice(max(-ox, 0), P + min(-ox, 0))
        i, j = pairs[sel, 0], pairs[sel, 1]
        for r, A in enumerate((uw, vw)):
            Ai = A[i][:, yi, xi]
            G[sel, r, 0] = np.einsum("myx,myx->m", Ai, ju[j][:, yj, xj])
            G[sel, r, 1] = np.einsum("myx,myx->m", Ai, jv[j][:, yj, xj])
    return pairs[:, 0], pairs[:, 1], G


def _projection_blocks(prob: ProjectionProblem, pos, fit_shifts, angle_idx, pair_radius_A):
    """Gauss–Newton blocks beyond the kernel's per-atom ones, per projection: the coupling
    ``B (n_proj, n, 3, na)`` of every atom's position to the projection's alignment
    coordinates (the two shifts, Å, then the fitted Euler corrections, rad), their block
    ``Haa (n_proj, na, na)``, and the position blocks of neighbouring atoms (footprint
    centres within ``pair_radius_A``): a list of ``(i, j, H_ij (m, 3, 3))``.

    Atom ``j``'s image position in projection ``k`` is ``u = R2_k p_j + s_k``; the image
    derivative of an alignment coordinate ``Σ_j (∂M/∂u_j) ∂u_j/∂a`` holds the overlap of
    neighbouring footprints. NumPy, from :func:`_footprints`."""
    n_proj = prob.meas.shape[0]
    n = len(pos)
    R2 = prob.R2
    dR = rotation_derivatives(prob.geo["euler_deg"] + prob.d_euler)[:, :, :2, :]
    ns = 2 if fit_shifts else 0
    na = ns + len(angle_idx)
    px = float(prob.geo["pixel_A"])
    B = np.zeros((n_proj, n, 3, na))
    Haa = np.zeros((n_proj, na, na))
    pairs = []
    for k in range(n_proj):
        pix, valid, ju, jv = _footprints(prob, pos, k)
        wk = prob.w[k].ravel()
        wpix = np.where(valid, wk[pix], 0.0)
        if pair_radius_A > 0:
            uv = (pos @ R2[k].T + prob.shifts[k]) / px
            i, j, G = _pair_blocks(uv, ju, jv, wpix, pair_radius_A / px)
            pairs.append((i, j, np.einsum("ra,mrs,sb->mab", R2[k], G, R2[k])))
        if na == 0:
            continue
        # ∂u_j/∂a: the shifts move every atom by one Å; an angle by dR_k p_j
        E = np.zeros((n, 2, na))
        if fit_shifts:
            E[:, 0, 0] = E[:, 1, 1] = 1.0
        for c, i in enumerate(angle_idx):
            E[:, :, ns + c] = pos @ dR[k, i].T
        pv = pix[valid]
        ja = np.stack([np.bincount(pv, (ju * E[:, 0, c, None, None]
                                        + jv * E[:, 1, c, None, None])[valid],
                                   minlength=wk.size) for c in range(na)], axis=1)
        Haa[k] = ja.T @ (wk[:, None] * ja)
        wja = (wk[:, None] * ja)[pix] * valid[..., None]             # (n, P, P, na)
        Ku = np.einsum("jyx,jyxc->jc", ju, wja)
        Kv = np.einsum("jyx,jyxc->jc", jv, wja)
        B[k] = R2[k, 0][None, :, None] * Ku[:, None, :] + R2[k, 1][None, :, None] * Kv[:, None, :]
    return B, Haa, pairs


# up to this many atoms the jackknife's systems are solved directly (sparse LU, ~2 s for 225
# atoms and 15 projections; ~160 s for 1160 atoms and 47 on a loaded 2-core machine)
_DIRECT_MAX_ATOMS = 400


def _joint_jackknife(prob: ProjectionProblem, pos, out, Finv, fit_shifts, angle_idx,
                     damping, pair_radius_A=2.0, tol=1e-3, max_iter=200, direct=None):
    """Leave-one-projection-out moves ``(n_proj, n, 3)`` of the atoms solved jointly with
    their neighbours and the other projections' alignment (one Gauss–Newton step each), the
    rigid motion the alignment makes free removed; and the iterations the solves took.

    Each step solves ``(H − H_k) δ = g_k`` over the positions and the alignment of the
    projections left in, by MINRES preconditioned with the same system without the
    neighbour coupling (per-atom blocks, solved exactly through the Schur complement on the
    alignment). ``tol``: relative residual of the solves. ``direct`` (default: up to
    ``_DIRECT_MAX_ATOMS`` atoms): a sparse LU instead. The rigid motion the free alignment
    leaves makes the system nearly singular and MINRES slow to converge on it: on a
    27-atom Gaussian case (tests/atoms) 1e-3 gave σ a sixth of the exact one; on the abTEM
    FePt cases (225–1160 atoms) it gives the direct solve's err/σ to 0.01, in a tenth of
    its time on 1160 atoms."""
    import scipy.sparse as sp
    from scipy.linalg import LinAlgError, cho_factor, cho_solve, lu_factor, lu_solve
    from scipy.sparse.linalg import LinearOperator, minres, splu

    F, Fk, gk = out[FISHER], out[FISHER_K], out[G_POS_K]
    n_proj, n = gk.shape[:2]
    B, Haa, pairs = _projection_blocks(prob, pos, fit_shifts, angle_idx, pair_radius_A)
    na = Haa.shape[1]
    ns = 2 if fit_shifts else 0
    good = np.all(np.isfinite(Finv), axis=(1, 2))
    # the damping refine puts on the angle corrections (the combinations no projection
    # determines); a small one on the shifts (the 3D translation they share with the atoms,
    # removed below)
    D = Haa.copy()
    if angle_idx:
        mu = prob._angle_damping(F, pos, angle_idx, damping if damping else 1e-12)
        for c in range(len(angle_idx)):
            D[:, ns + c, ns + c] += mu[c * n_proj:(c + 1) * n_proj]
    for c in range(ns):
        D[:, c, c] += 1e-4 * np.maximum(Haa[:, c, c], 1e-300)

    def offdiag(ps):
        if not ps:
            return sp.csr_matrix((3 * n, 3 * n))
        i = np.concatenate([q[0] for q in ps])
        j = np.concatenate([q[1] for q in ps])
        H = np.concatenate([q[2] for q in ps])
        keep = good[i] & good[j]
        i, j, H = i[keep], j[keep], H[keep]
        r = np.broadcast_to(3 * i[:, None, None] + np.arange(3)[None, :, None], H.shape)
        c = np.broadcast_to(3 * j[:, None, None] + np.arange(3)[None, None, :], H.shape)
        O = sp.coo_matrix((H.ravel(), (r.ravel(), c.ravel())), shape=(3 * n, 3 * n)).tocsr()
        return O + O.T

    O_all = offdiag(pairs)
    Ball = np.where(good[None, :, None, None], B, 0.0)
    Ball = Ball.transpose(1, 2, 0, 3).reshape(n, 3, n_proj * na)
    # the preconditioner's blocks: every atom's own terms only (a Gram matrix: positive
    # definite), the kernel's F_jk, its coupling F_jk R2ᵀ ∂u/∂a and Σ_j ∂u/∂aᵀ G_jk ∂u/∂a
    E = np.zeros((n_proj, n, 2, na))
    if fit_shifts:
        E[:, :, 0, 0] = E[:, :, 1, 1] = 1.0
    dR = rotation_derivatives(prob.geo["euler_deg"] + prob.d_euler)[:, :, :2, :]
    for c, i in enumerate(angle_idx):
        E[:, :, :, ns + c] = np.einsum("krc,jc->kjr", dR[:, i], pos)
    FR = np.einsum("kjab,kcb->kjac", Fk, prob.R2)
    Bown = np.where(good[None, :, None, None], FR @ E, 0.0)
    Bown = Bown.transpose(1, 2, 0, 3).reshape(n, 3, n_proj * na)
    Down = np.einsum("kjra,kjrs,kjsb->kab", E, np.einsum("kra,kjac->kjrc", prob.R2, FR), E)
    Down += D - Haa
    # a rank-deficient remainder (one projection held nearly all of an axis): that atom's
    # block stays whole, the plain sandwich term (as in the per-atom jackknife)
    rest = F[None] - Fk
    ok = np.linalg.det(rest) > 1e-9 * np.maximum(np.linalg.det(F)[None], 1e-300)
    dlt = np.zeros((n_proj, n, 3))
    m = 3 * n
    if direct is None:
        direct = n <= _DIRECT_MAX_ATOMS
    iters = [0]

    def counter(_):
        iters[0] += 1

    for k in range(n_proj):
        A = np.where(ok[k][:, None, None], rest[k], F)
        A[~good] = np.eye(3)
        Ainv = np.linalg.inv(A)
        others = np.arange(n_proj) != k
        keep = np.repeat(others, na)
        Bf = Ball[:, :, keep].reshape(m, -1)                     # (3n, na (n_proj − 1))
        Bo = Bown[:, :, keep]
        T = Ainv @ Bo
        S = -(Bo.reshape(m, -1).T @ T.reshape(m, -1))
        for q, Dq in enumerate(Down[others]):
            S[q * na:(q + 1) * na, q * na:(q + 1) * na] += Dq
        Sf = None
        if S.size:
            try:
                Sf = (cho_factor(S), cho_solve)
            except LinAlgError:  # rounding on a nearly singular alignment block
                Sf = (lu_factor(S), lu_solve)
        Tf = T.reshape(m, -1)
        Bof = Bo.reshape(m, -1)
        Dk = D[others]
        Ok = O_all - offdiag(pairs[k:k + 1]) if pairs else O_all
        Ablk = sp.bsr_matrix((A, np.arange(n), np.arange(n + 1)), shape=(m, m)).tocsr() + Ok

        def apply(x, Ablk=Ablk, Bf=Bf, Dk=Dk):
            xp, xa = x[:m], x[m:]
            ya = Bf.T @ xp + np.einsum("qab,qb->qa", Dk, xa.reshape(-1, na)).ravel()
            return np.concatenate([Ablk @ xp + Bf @ xa, ya])

        def precond(r, Ainv=Ainv, Sf=Sf, Tf=Tf, Bof=Bof):
            rp, ra = r[:m], r[m:]
            Ar = np.einsum("jab,jb->ja", Ainv, rp.reshape(n, 3)).ravel()
            if Sf is None:
                return np.concatenate([Ar, ra])
            za = Sf[1](Sf[0], ra - Bof.T @ Ar)
            return np.concatenate([Ar - Tf @ za, za])

        N = m + Bf.shape[1]
        rhs = np.concatenate([np.where(good[:, None], gk[k], 0.0).ravel(), np.zeros(N - m)])
        if direct:  # sparse LU: exact whatever the conditioning, fast on small systems
            Dblk = sp.block_diag(list(Dk), format="csr") if na else None
            K = sp.bmat([[Ablk, sp.csr_matrix(Bf)], [sp.csr_matrix(Bf.T), Dblk]],
                        format="csc") if na else Ablk.tocsc()
            x = splu(K).solve(rhs)
        else:
            x, _ = minres(LinearOperator((N, N), matvec=apply), rhs,
                          M=LinearOperator((N, N), matvec=precond), rtol=tol,
                          maxiter=max_iter, callback=counter)
        dlt[k] = x[:m].reshape(n, 3)
    # with every projection's shifts (angles) free, a translation (rotation) of all atoms and
    # the matching change of the alignment leave every image as it was: the data do not
    # measure it, and σ is of the positions relative to the particle
    if good.sum() > 3 and (fit_shifts or angle_idx):
        Q = _rigid_basis(pos[good], translations=fit_shifts, rotations=bool(angle_idx))
        x = dlt[:, good].reshape(n_proj, -1)
        dlt[:, good] = (x - (x @ Q) @ Q.T).reshape(n_proj, -1, 3)
    return dlt, iters[0]


def position_covariance(prob: ProjectionProblem, pos, *, method: str = "jackknife",
                        n_params: int | None = None, alignment=(False, ()),
                        alignment_damping: float = 1e-2):
    """``(n_atoms, 3, 3)`` position covariance (Å²) and a dict of diagnostics.

    ``alignment``: ``(shifts fitted?, indices of the fitted Euler angles)`` of the
    refinement (:func:`~aet.atoms.refinement.alignment.check_refine_alignment`); the
    jackknife then re-solves them with the atoms. ``alignment_damping``: refine's."""
    fit_shifts, angle_idx = bool(alignment[0]), tuple(alignment[1])
    out = prob.evaluate(pos, 3)
    F = out[FISHER]
    Finv = _inverse_blocks(F)
    n_proj = prob.meas.shape[0]
    n_pix = float(prob.w.sum())
    n_params = 3 * len(pos) if n_params is None else int(n_params)
    var = 2.0 * out[LOSS] / max(n_pix - n_params, 1.0)
    facts: dict = {}
    if method == "curvature":
        cov = var * Finv
    elif method == "pixels":
        cov = Finv @ out[MEAT] @ Finv
    elif method == "sandwich":
        gk = out[G_POS_K]
        meat = np.einsum("kja,kjb->jab", gk, gk) * (n_proj / max(n_proj - 1, 1))
        cov = Finv @ meat @ Finv
    elif method in ("jackknife", "jackknife-atom"):
        if method == "jackknife" and (fit_shifts or angle_idx):
            dlt, facts["jackknife_iterations"] = _joint_jackknife(
                prob, pos, out, Finv, fit_shifts, angle_idx, alignment_damping)
        else:
            dlt = _atom_jackknife(F, out[FISHER_K], out[G_POS_K], Finv)
        cov = np.einsum("kja,kjb->jab", dlt, dlt) * ((n_proj - 1) / max(n_proj, 1))
        cov[~np.all(np.isfinite(Finv), axis=(1, 2))] = np.nan
    else:
        raise ValueError(f"method must be 'jackknife', 'jackknife-atom', 'sandwich', 'pixels' "
                         f"or 'curvature', got {method!r}")
    facts["residual_variance"] = float(var)
    return cov, facts


def fitted_alignment(attrs) -> tuple[bool, tuple[int, ...]]:
    """The alignment coordinates a model's last refinement fitted, as its provenance
    records them: ``(shifts?, Euler angle indices)`` (none without such a record)."""
    from ...core.meta import get_provenance
    from .alignment import ANGLE_NAMES

    for rec in reversed(get_provenance(attrs)):
        if rec.get("op") != "refine":
            continue
        done = (rec.get("result") or {}).get("refine_alignment") or []
        return "shifts" in done, tuple(i for i, a in enumerate(ANGLE_NAMES) if a in done)
    return False, ()


def sigmas_of(cov) -> np.ndarray:
    """``(n, 3)`` 1σ per axis (Å) from ``(n, 3, 3)`` covariances."""
    return np.sqrt(np.abs(np.diagonal(cov, axis1=1, axis2=2)))
