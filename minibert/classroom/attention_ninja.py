"""Exercise: become a backprop ninja on attention.

The forward of one multi-head self-attention layer (the same function as ``minibert/layers/attention.py``,
without dropout) is cut below into steps so small that each one's backward is a line or two: the
softmax alone becomes six steps (max, shift, exp, row sum, reciprocal, normalise).  You backprop
through them one at a time, from the output down to the input ``x``; the grader compares every
intermediate gradient with the reference and prints, as Karpathy's "becoming a backprop ninja" does::

    dk                       | exact: False | approx: True  | maxdiff: 1.73e-16

Each step function receives the gradient of its output and the cache (a dict holding every forward
intermediate by name, plus the parameters) and returns the gradients of its inputs.  The grader calls
every step with the *correct* upstream gradient, so one wrong step does not make the later ones wrong.

Part 2: derive the fused softmax backward (``softmax_fused_backward``), which replaces steps 4 to 9 by
one line, and check that it agrees with your step-by-step result.  That line is what
``minibert/layers/softmax.py`` uses; ``attention.py`` (the next exercise) then writes the layer's
backward in this compact form.

Read first: docs/backward/attention.md and docs/backward/softmax.md.
Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``A`` heads, ``D = C / A`` head size.

    python attention_ninja.py                          # your checks, in float64
    minibert exercises check attention_ninja --dir .   # the grade

(This is exercise 7 of ``minibert exercises``, the only one that is not a file of ``minibert/layers``.)
"""
import math

import numpy as np

from minibert.layers.attention import merge_heads, split_heads
from minibert.layers.linear import linear_backward


def attention_steps_forward(x, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads):
    """The forward in atomic steps.  Returns ``out, cache``; ``cache`` is a dict of everything below."""
    A = num_heads
    scale = 1.0 / math.sqrt(x.shape[-1] // A)
    Q = x @ wq.T + bq                          # (B, T, C)     step 13: projections
    K = x @ wk.T + bk                          # (B, T, C)
    V = x @ wv.T + bv                          # (B, T, C)
    q = split_heads(Q, A)                      # (B, A, T, D)  step 12: split heads
    k = split_heads(K, A)                      # (B, A, T, D)
    v = split_heads(V, A)                      # (B, A, T, D)
    S = q @ k.transpose(0, 1, 3, 2)            # (B, A, T, T)  step 11: scores
    Z = S * scale + mask_add                   # (B, A, T, T)  step 10: scale and mask
    Zmax = Z.max(axis=-1, keepdims=True)       # (B, A, T, 1)  step 9:  row maximum
    Zc = Z - Zmax                              # (B, A, T, T)  step 8:  shift
    E = np.exp(Zc)                             # (B, A, T, T)  step 7:  exp
    Esum = E.sum(axis=-1, keepdims=True)       # (B, A, T, 1)  step 6:  row sum
    Einv = 1.0 / Esum                          # (B, A, T, 1)  step 5:  reciprocal
    P = E * Einv                               # (B, A, T, T)  step 4:  normalise: P = softmax(Z)
    ctx = P @ v                                # (B, A, T, D)  step 3:  weighted sum of values
    Ctx = merge_heads(ctx)                     # (B, T, C)     step 2:  merge heads
    out = Ctx @ wo.T + bo                      # (B, T, C)     step 1:  output projection
    cache = dict(x=x, wq=wq, wk=wk, wv=wv, wo=wo, A=A, scale=scale, Q=Q, K=K, V=V, q=q, k=k, v=v,
                 S=S, Z=Z, Zmax=Zmax, Zc=Zc, E=E, Esum=Esum, Einv=Einv, P=P, ctx=ctx, Ctx=Ctx)
    return out, cache


# ---- part 1: one step at a time, from the output down ------------------------------------------

def step01_output(dout, c):
    """forward: out = Ctx @ wo.T + bo.  (B, T, C) -> dCtx (B, T, C), dwo (C, C), dbo (C,)"""
    # TODO: the linear layer's three gradients.
    #   hint: you wrote linear_backward in exercise 1 (imported above); its cache is (input, weight).
    ### BEGIN SOLUTION
    dCtx, dwo, dbo = linear_backward(dout, (c["Ctx"], c["wo"]))
    ### END SOLUTION
    return dCtx, dwo, dbo


def step02_merge(dCtx, c):
    """forward: Ctx = merge_heads(ctx).  (B, T, C) -> dctx (B, A, T, D)"""
    # TODO: undo a pure re-indexing.
    #   hint: every entry of ctx lands in exactly one place of Ctx: send each gradient back to where it came from.
    ### BEGIN SOLUTION
    dctx = split_heads(dCtx, c["A"])
    ### END SOLUTION
    return dctx


def step03_context(dctx, c):
    """forward: ctx = P @ v.  (B, A, T, D) -> dP (B, A, T, T), dv (B, A, T, D)"""
    # TODO: a matrix product per (batch, head).
    #   hint: ctx[i, d] = sum_j P[i, j] v[j, d]. Transpose the last two axes only: .transpose(0, 1, 3, 2).
    ### BEGIN SOLUTION
    dP = dctx @ c["v"].transpose(0, 1, 3, 2)
    dv = c["P"].transpose(0, 1, 3, 2) @ dctx
    ### END SOLUTION
    return dP, dv


def step04_normalise(dP, c):
    """forward: P = E * Einv.  (B, A, T, T) -> dE_direct (B, A, T, T), dEinv (B, A, T, 1)"""
    # TODO: the gradients of both factors.
    #   hint: Einv (B, A, T, 1) was broadcast over the last axis: its gradient sums over it (keepdims=True).
    #   hint: E is used again in step 6: this is only its first path (step 6 adds the second).
    ### BEGIN SOLUTION
    dE_direct = dP * c["Einv"]
    dEinv = (dP * c["E"]).sum(axis=-1, keepdims=True)
    ### END SOLUTION
    return dE_direct, dEinv


def step05_reciprocal(dEinv, c):
    """forward: Einv = 1.0 / Esum.  (B, A, T, 1) -> dEsum (B, A, T, 1)"""
    # TODO: d(1/s)/ds.
    ### BEGIN SOLUTION
    dEsum = -dEinv / c["Esum"] ** 2
    ### END SOLUTION
    return dEsum


def step06_rowsum(dEsum, c):
    """forward: Esum = E.sum(axis=-1, keepdims=True).  (B, A, T, 1) -> dE_via_sum (B, A, T, T)"""
    # TODO: every E[..., j] of a row added into the row's sum with weight 1.
    #   hint: the backward of a sum is a broadcast (np.broadcast_to or a multiplication by ones_like(E)).
    ### BEGIN SOLUTION
    dE_via_sum = dEsum * np.ones_like(c["E"])
    ### END SOLUTION
    return dE_via_sum


def step07_exp(dE, c):
    """forward: E = np.exp(Zc).  (B, A, T, T) -> dZc (B, A, T, T).  ``dE`` is the sum of both paths."""
    # TODO: d exp(z)/dz, from the cache.
    ### BEGIN SOLUTION
    dZc = dE * c["E"]
    ### END SOLUTION
    return dZc


def step08_shift(dZc, c):
    """forward: Zc = Z - Zmax.  (B, A, T, T) -> dZ_direct (B, A, T, T), dZmax (B, A, T, 1)"""
    # TODO: the gradients of Z (first path) and of Zmax (broadcast over the last axis, with a minus).
    #   hint: dZmax comes out ~1e-17, not exactly 0. Why must the true value be exactly zero?
    ### BEGIN SOLUTION
    dZ_direct = dZc.copy()
    dZmax = -dZc.sum(axis=-1, keepdims=True)
    ### END SOLUTION
    return dZ_direct, dZmax


def step09_rowmax(dZmax, c):
    """forward: Zmax = Z.max(axis=-1, keepdims=True).  (B, A, T, 1) -> dZ_via_max (B, A, T, T)"""
    # TODO: the max passes its gradient to the entry that was the maximum, and 0 to every other one.
    #   hint: np.argmax along the last axis and np.put_along_axis (or a one-hot made with ==).
    ### BEGIN SOLUTION
    Z = c["Z"]
    dZ_via_max = np.zeros_like(Z)
    np.put_along_axis(dZ_via_max, Z.argmax(axis=-1)[..., None], dZmax, axis=-1)
    ### END SOLUTION
    return dZ_via_max


def step10_scale_mask(dZ, c):
    """forward: Z = S * scale + mask_add.  (B, A, T, T) -> dS (B, A, T, T).  The mask is a constant."""
    # TODO: dS.
    ### BEGIN SOLUTION
    dS = dZ * c["scale"]
    ### END SOLUTION
    return dS


def step11_scores(dS, c):
    """forward: S = q @ k.transpose(0, 1, 3, 2).  (B, A, T, T) -> dq, dk (B, A, T, D)"""
    # TODO: dq and dk.
    #   hint: S[i, j] = sum_d q[i, d] k[j, d]. With T x T scores a missing transpose still has the
    #         right shape, so only the numbers tell: check dk in particular.
    ### BEGIN SOLUTION
    dq = dS @ c["k"]
    dk = dS.transpose(0, 1, 3, 2) @ c["q"]
    ### END SOLUTION
    return dq, dk


def step12_split(dq, dk, dv, c):
    """forward: q, k, v = split_heads(Q, A), split_heads(K, A), split_heads(V, A).
    (B, A, T, D) x3 -> dQ, dK, dV (B, T, C)"""
    # TODO: undo the re-indexing, three times.
    ### BEGIN SOLUTION
    dQ, dK, dV = merge_heads(dq), merge_heads(dk), merge_heads(dv)
    ### END SOLUTION
    return dQ, dK, dV


def step13_projections(dQ, dK, dV, c):
    """forward: Q, K, V = x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv.
    (B, T, C) x3 -> dx (B, T, C), dwq, dbq, dwk, dbk, dwv, dbv"""
    # TODO: three linear layers that share their input x.
    #   hint: x feeds all three, so dx is a sum of three terms.
    ### BEGIN SOLUTION
    dxq, dwq, dbq = linear_backward(dQ, (c["x"], c["wq"]))
    dxk, dwk, dbk = linear_backward(dK, (c["x"], c["wk"]))
    dxv, dwv, dbv = linear_backward(dV, (c["x"], c["wv"]))
    dx = dxq + dxk + dxv
    ### END SOLUTION
    return dx, dwq, dbq, dwk, dbk, dwv, dbv


def attention_steps_backward(dout, c):
    """The whole backward, chaining the steps.  Returns a dict: name -> gradient of that name."""
    g = {}
    g["Ctx"], g["wo"], g["bo"] = step01_output(dout, c)
    g["ctx"] = step02_merge(g["Ctx"], c)
    g["P"], g["v"] = step03_context(g["ctx"], c)
    dE_direct, g["Einv"] = step04_normalise(g["P"], c)
    g["Esum"] = step05_reciprocal(g["Einv"], c)
    g["E"] = dE_direct + step06_rowsum(g["Esum"], c)  # E was used twice (in P and in Esum): add both paths
    g["Zc"] = step07_exp(g["E"], c)
    dZ_direct, g["Zmax"] = step08_shift(g["Zc"], c)
    g["Z"] = dZ_direct + step09_rowmax(g["Zmax"], c)  # Z was used twice (in Zc and in Zmax)
    g["S"] = step10_scale_mask(g["Z"], c)
    g["q"], g["k"] = step11_scores(g["S"], c)
    g["Q"], g["K"], g["V"] = step12_split(g["q"], g["k"], g["v"], c)
    g["x"], g["wq"], g["bq"], g["wk"], g["bk"], g["wv"], g["bv"] = step13_projections(g["Q"], g["K"], g["V"], c)
    return g


# ---- part 2: the fused softmax backward ---------------------------------------------------------

def softmax_fused_backward(dP, P):
    """Steps 4 to 9 in one line: dZ (B, A, T, T) from dP and P = softmax(Z) alone."""
    # TODO: take your steps 4-9 and simplify on paper: write dZ_j in terms of P and dP.
    #   hint: substitute each step into the next; sum_j P_j = 1 simplifies what is left.
    ### BEGIN SOLUTION
    dZ = P * (dP - (dP * P).sum(axis=-1, keepdims=True))
    ### END SOLUTION
    return dZ


def test_attention_ninja():
    """Checks every gradient against finite differences in float64 (through the whole forward) and
    the fused softmax against your step-by-step result."""
    from minibert.gradcheck import check_gradients
    from minibert.layers.softmax import attention_mask_to_additive
    rng = np.random.default_rng(0)
    B, T, C, A = 2, 5, 12, 3
    x = rng.standard_normal((B, T, C))
    params = [rng.standard_normal(s) * 0.5 for s in [(C, C), (C,)] * 4]
    mask = attention_mask_to_additive(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), np.float64)
    order = ["x", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"]

    def backward(dout, cache):
        g = attention_steps_backward(dout, cache)
        return tuple(g[n] for n in order)

    fwd = lambda x, *p: attention_steps_forward(x, *p, mask, A)  # noqa: E731
    check_gradients(fwd, backward, [x] + params, ["d" + n for n in order], zero=["dbk"])
    out, cache = fwd(x, *params)
    g = attention_steps_backward(rng.standard_normal(out.shape), cache)
    from minibert.gradcheck import rel_error
    err = rel_error(softmax_fused_backward(g["P"], cache["P"]), g["Z"])
    print(f"fused softmax backward vs steps 4-9: rel_error {err:.1e} (expect < 1e-12)")
    assert err < 1e-12
    ### BEGIN HIDDEN TESTS
    assert np.abs(g["Zmax"]).max() < 1e-12, "dZmax is zero up to rounding: softmax ignores a shift"
    assert np.abs(g["bk"]).max() < 1e-12, "the key-bias gradient is exactly zero"
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_attention_ninja()
