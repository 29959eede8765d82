"""What each assignment of the nbgrader course asks the student to derive, and how it is graded.

An assignment gives the forward, its computational graph and the shapes; the student writes the
derivation in a written-answer cell (an nbgrader *manually graded answer*: a Markdown cell with
``solution`` and ``grade`` set, its points below) and only then the code.  The hints say what to
differentiate and which shape rule to use, never the result.  The instructor's copy of that cell holds
the rubric (nbgrader's ``generate_assignment`` replaces the whole cell by "YOUR ANSWER HERE" in the
release); the worked derivation, ``docs/backward/<page>.md``, is the feedback released after grading
(``minibert exercises course`` writes it to ``DIR/derivations/``, outside ``source/``, so nbgrader never
releases it with the assignment; docs/instructors_guide.md, "Feedback").

Points reflect difficulty: one point per graded array for the code (``grader.points``), plus the written
derivation's points here, from 2 (a linear layer's three index sums) to 6 (attention's ten pieces).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    forward: str   # Markdown: the forward, in maths
    graph: str     # the computational graph, one node per line, as text
    shapes: str    # Markdown: every array's shape
    ask: str       # Markdown: what to derive in the written answer
    hints: tuple   # what to differentiate, which rule: never a result
    rubric: tuple  # (points, what earns them), for the instructor; the points add up to ``points``
    points: int


SHAPE_RULE = ("The gradient of an array has that array's shape. When a product's gradient comes out with "
              "the wrong shape, a transpose or a sum over a broadcast axis is missing.")

PROBLEMS = {
    "linear": Problem(
        forward=r"$y_{no} = \sum_i x_{ni} W_{oi} + b_o$ (the leading dimensions of `x` flattened into $n$)",
        graph="x (N, I) ──┐\nW (O, I) ──┴─▶ x Wᵀ (N, O) ──▶ + b ──▶ y (N, O)\nb (O,)   ─────────────────────┘",
        shapes="`x` `(..., I)`, `w` `(O, I)` (PyTorch's layout), `b` `(O,)`, `out` `(..., O)`",
        ask=r"Derive $\bar x$, $\bar W$ and $\bar b$ from $\bar y$, first by indices, then as matrix products.",
        hints=(r"Write $\partial y_{no} / \partial x_{mi}$, $\partial y_{no} / \partial W_{pi}$ and "
               r"$\partial y_{no} / \partial b_p$ with Kronecker deltas, then sum over every $(n, o)$ the "
               "chain rule touches.",
               "Turn each index sum back into a matrix product by matching the shapes."),
        rubric=((1, "the three partial derivatives by indices, and the chain-rule sums over (n, o)"),
                (1, "the three results as products whose shapes are checked, the bias summed over n")),
        points=2),
    "softmax": Problem(
        forward=r"per row: $z_j = x_j + m_j$, $p_j = e^{z_j - c} / \sum_k e^{z_k - c}$, $c = \max_k z_k$",
        graph="x ──▶ + mask ──▶ z ──▶ − max ──▶ exp ──▶ e ──▶ ÷ Σe ──▶ p",
        shapes="`x` `(..., T)` (in attention `(B, A, T, T)`), `mask_add` broadcast to it, `p` like `x`",
        ask=r"Derive the Jacobian $\partial p_i / \partial z_j$, then $\bar z$ from $\bar p$ without building "
            r"the Jacobian; say why the shift $c$ and the mask add nothing to the backward.",
        hints=(r"Differentiate $\log p_i$ first: it is simpler than $p_i$.",
               "Treat the two cases i = j and i ≠ j, then write both with a Kronecker delta.",
               "A vector-Jacobian product of a rank-one-plus-diagonal matrix costs O(T), not O(T²)."),
        rubric=((1, "the Jacobian with its two cases"),
                (1, "the vector-Jacobian product written with one row sum per row"),
                (1, "why the max shift and the additive mask have no gradient to pass (constants, and "
                    "softmax is invariant to a shift of a row)")),
        points=3),
    "layernorm": Problem(
        forward=r"per row of $C$: $\mu = \frac1C\sum_j x_j$, $\sigma^2 = \frac1C\sum_j (x_j-\mu)^2$, "
                r"$r = (\sigma^2+\epsilon)^{-1/2}$, $\hat x_j = (x_j-\mu) r$, $y_j = w_j \hat x_j + b_j$",
        graph="x ──▶ μ ──┐\nx ───────▶ x − μ ──▶ σ² ──▶ r\n          x − μ ─────────────▶ · r ──▶ x̂ ──▶ · w + b ──▶ y",
        shapes="`x` `(B, T, C)`, `w`, `b` `(C,)`; `mean`, `rstd` `(B, T)` (cached); `out` `(B, T, C)`",
        ask=r"Derive $\bar w$, $\bar b$, then $\bar x$ through $\hat x$, $\mu$ and $\sigma^2$; bring $\bar x$ "
            r"to a form that needs only $r$, $\hat x$ and $\bar{\hat x}$.",
        hints=("x reaches the output through three paths (directly, through μ, through σ²): the chain rule "
               "adds them.",
               r"Differentiate $\hat x_j$ with respect to $x_i$ for one row; the sums $\sum_j \bar{\hat x}_j$ "
               r"and $\sum_j \bar{\hat x}_j \hat x_j$ will appear.",
               "w and b are shared by every row: their gradients sum over the rows."),
        rubric=((1, "the gain and bias gradients, summed over the B·T rows"),
                (1, "the three paths of x named and each one's derivative"),
                (2, "the simplified form in r, x̂ and two row means, with its check that the result sums to 0 "
                    "over a row")),
        points=4),
    "gelu": Problem(
        forward=r"exact: $y = x\,\Phi(x)$, $\Phi$ the standard normal CDF; "
                r"tanh form: $y = \tfrac12 x (1 + \tanh u)$, $u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)$",
        graph="exact: x ──▶ Φ(x) ──▶ x · Φ(x) ──▶ y\ntanh:  x ──▶ u(x) ──▶ tanh ──▶ ½ x (1 + ·) ──▶ y",
        shapes="elementwise: `x`, `out` and every gradient have the same shape, e.g. `(B, T, F)`",
        ask=r"Derive $dy/dx$ for each form, and say what goes wrong when the forward of one form is paired "
            r"with the backward of the other.",
        hints=("A product rule in both forms; Φ′ is the standard normal density.",
               "For the tanh form, differentiate through u with the chain rule; tanh′ is written with tanh "
               "itself."),
        rubric=((1, "the exact form's derivative with the density term"),
                (1, "the tanh form's derivative through u"),
                (1, "mixing the forms: a gradient check fails by about the forms' difference (~1e-3 relative), "
                    "a silent bug")),
        points=3),
    "cross_entropy": Problem(
        forward=r"$L = \frac1{N_c}\sum_{n\in\mathcal C} -\log p_{n,y_n}$, $p_{nv} = e^{z_{nv}}/\sum_w e^{z_{nw}}$, "
                r"$\mathcal C$ the rows whose label is not `ignore_index`, $N_c = |\mathcal C|$ ($L = 0$ if none)",
        graph="logits z (N, V) ──▶ log-softmax ──▶ pick the label ──▶ − ──▶ mean over counted rows ──▶ L",
        shapes="`logits` `(N, V)`, `labels` `(N,)` integers (-100: not counted), `loss` a scalar, "
               "`dlogits` `(N, V)`",
        ask=r"Derive $\partial L / \partial z_{nv}$ for a counted row and for an ignored one, and say what "
            r"the mean's $1/N_c$ becomes when no row is counted.",
        hints=(r"Write $\log p_{n,y}$ as $z_{n,y} - \log\sum_w e^{z_{nw}}$ and differentiate each term.",
               "An ignored row does not appear in L at all."),
        rubric=((1, "the log-sum-exp derivative is the softmax"),
                (1, "the label's one-hot term, and the 1/N_c of the mean"),
                (1, "ignored rows get zero; no division by zero when N_c = 0")),
        points=3),
    "embedding": Problem(
        forward=r"$\text{out}_{bt,:} = W_{\text{ids}_{bt},:}$ (a row lookup)",
        graph="ids (B, T) ──┐\nW (V, C)   ──┴─▶ W[ids] ──▶ out (B, T, C)",
        shapes="`ids` `(B, T)` integers in [0, V), `w` `(V, C)`, `out` `(B, T, C)`, `dw` `(V, C)`",
        ask=r"Derive $\bar W$ by indices; say what happens to a row used twice in one batch and to the "
            r"`padding_idx` row, and why `dw[ids] += dout` is wrong in NumPy.",
        hints=(r"Write $\partial\,\text{out}_{bt,c} / \partial W_{v,c'}$ with an indicator of "
               r"$\text{ids}_{bt} = v$.",
               "Think about what NumPy's fancy-index assignment does with repeated indices."),
        rubric=((1, "the sum over every position holding token v"),
                (1, "repeated ids accumulate (buffered += keeps one), padding row zeroed")),
        points=2),
    "attention_ninja": Problem(
        forward="the attention forward cut into 13 atomic steps (the table of `attention_steps_forward`'s "
                "comments below): projections, split, scores, scale and mask, the softmax as six steps "
                "(max, shift, exp, row sum, reciprocal, normalise), context, merge, output",
        graph=("x ─▶ Q,K,V ─▶ q,k,v ─▶ S = q kᵀ ─▶ Z = s·S + M ─▶ Zmax ─┐\n"
               "                                   Z ───────────────▶ Zc = Z − Zmax ─▶ E = exp ─▶ Esum ─▶ Einv\n"
               "                                                                   E ──────────────▶ P = E·Einv\n"
               "P, v ─▶ ctx = P v ─▶ Ctx ─▶ out"),
        shapes="`x` `(B, T, C)`, `q, k, v` `(B, A, T, D)`, `S, Z, Zc, E, P` `(B, A, T, T)`, "
               "`Zmax, Esum, Einv` `(B, A, T, 1)`, `ctx` `(B, A, T, D)`, `out` `(B, T, C)`",
        ask="For each step write the local derivative and the gradient of its inputs; mark the two arrays "
            "used twice (their gradients add). Then fuse steps 4 to 9 into one expression for the gradient "
            "of Z from that of P and P alone, and say why the max path contributes nothing.",
        hints=("A (B, A, T, 1) array broadcast over the last axis gets a gradient summed over that axis.",
               "E feeds both P and Esum; Z feeds both Zc and Zmax.",
               "For the fusion, substitute each step into the next and simplify with Σ_j P_j = 1."),
        rubric=((1, "every step's local derivative, with the broadcast sums"),
                (1, "the two forks (E and Z) named and their gradients added"),
                (1, "the fused softmax backward derived from the steps"),
                (1, "the max path is exactly zero (softmax is shift-invariant), and why the key bias "
                    "gets no gradient")),
        points=4),
    "attention": Problem(
        forward=r"$Q = XW_q^\top + b_q$ (and $K$, $V$), split into $A$ heads; "
                r"$S = q k^\top$, $S' = S/\sqrt D$, $Z = S' + M$, $P = \text{softmax}(Z)$, "
                r"$\text{ctx} = P v$, merged into Ctx; $\text{out} = \text{Ctx}\,W_o^\top + b_o$",
        graph=("x ─┬▶ Q ─▶ q ─┐\n   ├▶ K ─▶ k ─┴▶ S ─▶ S' ─▶ Z ─▶ P ─┐\n   └▶ V ─▶ v ──────────────────────┴▶ ctx ─▶ Ctx ─▶ out"),
        shapes="`x` `(B, T, C)`, `wq, wk, wv, wo` `(C, C)`, biases `(C,)`, `mask_add` `(B, 1, 1, T)`; "
               "per head `q, k, v` `(B, A, T, D)`, `S, P` `(B, A, T, T)`, `ctx` `(B, A, T, D)`, `D = C / A`",
        ask=r"Derive, from the last piece to the first: $\bar{\text{Ctx}}$, $\bar P$, $\bar v$, $\bar Z$, "
            r"$\bar q$, $\bar k$, and $\bar x$ through its three paths; check each result's shape against "
            r"the table. Then explain why $\bar b_k$ is exactly zero.",
        hints=("Each product per head is a matrix product of (T, D) and (T, T) blocks: the linear layer's rule "
               "applies per (batch, head).",
               "q and k enter S symmetrically except for one transpose: write S_ij by indices before guessing.",
               "x feeds three projections: its gradient has three terms.",
               SHAPE_RULE),
        rubric=((1, "the output projection and the merge (a permutation: its inverse)"),
                (1, "the context product: both gradients, shapes checked"),
                (1, "the softmax backward (the fused form), the mask a constant"),
                (1, "scores: the scale, and the two gradients with the transpose on the right one"),
                (1, "the three paths into x and the parameter gradients"),
                (1, "the key bias: a constant added to a whole row of scores, which softmax ignores")),
        points=6),
    "adamw": Problem(
        forward=r"per step $t$: $p \leftarrow p - \eta\lambda p$ (not for biases and LayerNorm), "
                r"$m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$, "
                r"$p \leftarrow p - \frac{\eta}{1-\beta_1^t}\, m / (\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon)$",
        graph="g ──▶ m (first moment) ──┐\ng ──▶ v (second moment) ─┴▶ bias-corrected step ──▶ p\np ──▶ decay (decoupled) ──────────────────────────▶ p",
        shapes="every array has the parameter's shape; `lr`, the betas, `eps`, `weight_decay` are scalars",
        ask="Explain why the moments are bias-corrected (what m is at step 1 without it), why the decay is "
            "decoupled from the gradient (what L2 in the loss would do under Adam instead), and why the "
            "update is done in place.",
        hints=("Unroll m's recursion from m = 0 and take its expectation for a constant gradient.",
               "Under Adam a gradient term is divided by √v: follow what that does to an L2 term."),
        rubric=((1, "the bias correction: E[m_t] = (1 − β₁ᵗ) g, so dividing restores the scale"),
                (1, "decoupled decay: an L2 gradient would be rescaled by 1/√v, the decay would not be uniform")),
        points=2),
    "masking": Problem(
        forward="choose 15% of the non-special positions (at least one); of the chosen: 80% become [MASK], "
                "10% a random token, 10% stay; the label is the original token at a chosen position, -100 "
                "elsewhere",
        graph="tokens ──▶ candidates (no [CLS], [SEP], [PAD]) ──▶ choose 15% ──▶ 80/10/10 ──▶ input ids, labels",
        shapes="`tokens` a list of T token ids; the masked input has length T; `labels` `(T,)`",
        ask="Explain why BERT does not always put [MASK] at a chosen position, and how a statistical test "
            "can check 80/10/10 without being flaky.",
        hints=("[MASK] never appears when the model is fine-tuned: think about what the model learns about "
               "unmasked tokens.",
               "Over n independent draws a proportion's standard deviation is √(p(1−p)/n)."),
        rubric=((1, "the train/test mismatch of [MASK], and what the random and kept 10% teach"),
                (1, "a tolerance of several standard deviations over many draws, a fixed seed")),
        points=2),
    "encoder_layer": Problem(
        forward=r"$a = \text{Attn}(x)$, $h = \text{LN}_1(x + \text{drop}(a))$, $f = \text{FFN}(h)$, "
                r"$\text{out} = \text{LN}_2(h + \text{drop}(f))$ (post-LN, BERT's order)",
        graph=("x ─┬▶ Attn ─▶ dropout ─▶ a ─┐\n   └───────────────────────────┴▶ + ─▶ LN₁ ─▶ h ─┬▶ FFN ─▶ dropout ─▶ f ─┐\n"
               "                                                  └────────────────────────┴▶ + ─▶ LN₂ ─▶ out"),
        shapes="`x`, `h`, `out` `(B, T, C)`; the 16 parameters as in `PARAMETERS`; the FFN's inner "
               "activations `(B, T, F)`",
        ask=r"Derive $\bar x$ and the parameter gradients from $\overline{\text{out}}$ in terms of the "
            r"sub-layers' backward functions; write the gradient of the layer's input as a product of "
            r"Jacobians and say what the residuals add to it.",
        hints=("Read the graph from the top; at every fork (an arrow that splits) the gradients of both "
               "branches add.",
               "Each sub-layer's backward is a function you already have: name its input and its cache."),
        rubric=((2, "the order: LN₂, the FFN branch with its dropout, the first fork, LN₁, the attention "
                    "branch with its dropout, the second fork"),
                (2, "both residual forks add their branch's gradient (the identity path)"),
                (1, "the Jacobian form and why the identity path keeps the gradient's size through depth")),
        points=5),
}


def problem_markdown(name):
    """The assignment's statement: the forward, the graph, the shapes, what to derive and the hints."""
    p = PROBLEMS[name]
    hints = "\n".join(f"- {h}" for h in p.hints)
    return (f"## The problem\n\n**Forward.** {p.forward}\n\n**Computational graph.**\n\n```text\n{p.graph}\n```\n\n"
            f"**Shapes.** {p.shapes}\n\n## Derive first ({p.points} points, graded by hand)\n\n{p.ask}\n\n"
            f"Write it in the cell below (Markdown, with `$...$` for maths), before the code: the code is "
            f"then a transcription.\n\n**Hints.**\n\n{hints}\n\n"
            "The worked derivation comes back with your feedback, after grading.")


def rubric_markdown(name):
    """The instructor's copy of the written-answer cell: the rubric (the release replaces it)."""
    p = PROBLEMS[name]
    rows = "\n".join(f"| {pts} | {what} |" for pts, what in p.rubric)
    return (f"*Instructor's rubric ({p.points} points; the release replaces this cell by \"YOUR ANSWER HERE\"):*"
            f"\n\n| points | for |\n|---|---|\n{rows}\n\n"
            "Half a point off for a result stated without its derivation; no point for a copied derivation. "
            "The worked derivation to compare with: `docs/backward/` (released as feedback).")
