"""The method itself: ToMato's merge step and the ToMe baseline, for timm ViTs.

Depends on torch and timm only; nothing here imports the harness or the book.

The method (ToMato, Token Merging at Once), with the shapes of a DeiT at 224 px
(B images, P prefix tokens, N = 14 x 14 patches, C channels), in the patched block 0::

    x = x + attn(norm1(x))                       # (B, P + N, C), block 0's attention
    A = softmax(p @ p.T)                         # (B, N, N), p = x[:, P:]  (similarity)
    s = A at each patch's 4 grid neighbours      # (B, N, 4), the only part of A kept
    edge i -> j  where  s[i, j] >= sim           # sim fixed, or per image from a budget
    group of j = smallest token reaching j       # = the paper's flood fill (visit)
    x = [prefix, mean of each group]             # (B, P + G, C), sizes (B, P + G, 1)
    x = x + mlp(norm2(x))                        # then blocks 1.. with log(size) added
                                                 # to their attention logits

G is the largest group count of the batch (smaller images padded with size-0 tokens,
which attention masks out exactly), or exactly the budget k in static mode.
:mod:`tomato.core.reference` states the same for one image as plainly as the paper.

similarity   the attention distribution ToMato thresholds
grid         the patch grid and each token's four neighbours
visit        edges and grouping: the paper's visit, faithful and parallel
propagation  the parallel visit's labels, by rounds of label propagation, checked exact
budget       choosing ``sim`` per image from a token budget
pipeline     block-0 tokens -> group labels, for a threshold or a budget (written once)
merge        group labels -> merged tokens with sizes
attention    timm attention with proportional attention
reference    the paper's merge for one image, as plainly as it reads (the tests' yardstick)
probe        block 0 up to its attention residual, for pictures and studies
tome         the ToMe baseline (Bolya et al., ICLR 2023)
patch        ``tomato.patch.timm(model)`` / ``tomato.patch.tome(model)``
"""
