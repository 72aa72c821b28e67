"""Random causal decoders for the k/v cache path: token ids in, logits out, every attention a
`kv_attention`, nothing else that mixes positions (norms, linears, activations and rotary work
on each position alone), so that nnspec.generate(use_cache=True) must give the uncached result.

A decoder draws its widths, heads and grouped k/v heads, rotary (with a scaling) or none, a
sliding window or none, q/k/v biases, the norm and the feed-forward (SwiGLU or an activation),
one to three layers (a repeat of one block or a list of blocks with other arguments), and its
head: its own linear, tied to the embedding in the model, or tied from inside a block that is
given the embedding (`Head(vocab, wte)`).
"""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

ATTENTION = """block Attention(hidden, heads, kv_heads, head_dim) {{
  in x
  q = x -> q_proj: linear(heads * head_dim, bias={bias}){rotary}
  k = x -> k_proj: linear(kv_heads * head_dim, bias={bias}){rotary}
  v = x -> v_proj: linear(kv_heads * head_dim, bias={bias})
  out kv_attention(q, k, v, heads=heads, kv_heads=kv_heads, causal=true{window})
      -> o_proj: linear(hidden, bias=false)
}}"""

MLP = {
    "swiglu": """block Mlp(hidden, inner) {{
  in x
  g = x -> gate_proj: linear(inner, bias=false) -> {act}
  out g * (x -> up_proj: linear(inner, bias=false)) -> down_proj: linear(hidden, bias=false)
}}""",
    "plain": """block Mlp(hidden, inner) {{
  in x
  out x -> fc: linear(inner) -> {act} -> proj: linear(hidden)
}}""",
}

LAYER = """block Layer(hidden, inner, heads, kv_heads, head_dim) {{
  in x
  h = x + (x -> ln_1: {norm} -> attn: Attention(hidden, heads, kv_heads, head_dim))
  out h + (h -> ln_2: {norm} -> mlp: Mlp(hidden, inner))
}}"""

HEAD_BLOCK = """block Head(vocab, embed) {
  in h
  out h -> lm_head: linear(vocab, bias=false, tie=embed)
}"""


@dataclass(frozen=True)
class Decoder:
    """A drawn decoder: its spec text, its vocabulary and what it exercises."""

    text: str
    vocab: int
    drawn: frozenset[str]


@st.composite
def decoders(draw) -> Decoder:
    drawn: set[str] = set()
    heads = draw(st.sampled_from([1, 2, 4]))
    kv_heads = draw(st.sampled_from([k for k in (1, 2, 4) if heads % k == 0]))
    head_dim = draw(st.sampled_from([2, 4]))
    hidden, vocab = heads * head_dim, draw(st.integers(5, 12))
    if kv_heads != heads:
        drawn.add("grouped_kv")
    rotary = ""
    if draw(st.booleans()):
        scaling = draw(st.sampled_from(["default", "linear", "llama3"]))
        theta = draw(st.sampled_from([10000.0, 500.0]))
        extra = "" if scaling == "default" else \
            f", scaling=\"{scaling}\", factor=2.0, original_max_position_embeddings=4"
        rotary = f" -> rotary(head_dim, theta={theta}{extra})"
        drawn.add(f"rotary_{scaling}")
    window = draw(st.sampled_from([None, 1, 2, 3]))
    if window is not None:
        drawn.add("window")
    norm = draw(st.sampled_from(["rmsnorm", "layernorm"]))
    act = draw(st.sampled_from(["silu", "gelu", "relu", "tanh"]))
    mlp = draw(st.sampled_from(sorted(MLP)))
    blocks = [ATTENTION.format(bias=str(draw(st.booleans())).lower(), rotary=rotary,
                               window="" if window is None else f", window={window}"),
              MLP[mlp].format(act=act), LAYER.format(norm=f"{norm}(eps=0.00001)")]
    inner = [draw(st.integers(1, 8)) for _ in range(draw(st.integers(1, 3)))]
    args = f"hidden, {{}}, {heads}, {kv_heads}, {head_dim}"
    if len(set(inner)) == 1 and draw(st.booleans()):
        layers = f"h: Layer({args.format(inner[0])}) * {len(inner)}"
        drawn.add("repeat")
    else:
        layers = "h: [" + ", ".join(f"Layer({args.format(n)})" for n in inner) + "]"
        drawn.add("list")
    head = draw(st.sampled_from(["own", "tied", "tied_from_block"]))
    drawn.add(f"head_{head}")
    body = [f"  input ids: long[{draw(st.integers(2, 5))}]",
            "  e = ids -> wte: embedding(vocab, hidden)",
            f"  x = e -> {layers} -> ln_f: {norm}(eps=0.00001)"]
    if head == "own":
        body.append("  out x -> lm_head: linear(vocab, bias=false)")
    elif head == "tied":
        body.append("  out x -> lm_head: linear(vocab, bias=false, tie=wte)")
    else:
        blocks.append(HEAD_BLOCK)
        body.append("  out x -> head: Head(vocab, wte)")
    model = f"model decoder(vocab = {vocab}, hidden = {hidden}) {{\n" + "\n".join(body) + "\n}"
    return Decoder("\n\n".join(blocks + [model]) + "\n", vocab, frozenset(drawn))
