"""Small specs that together use every layer kind, named (a module) and unnamed (a functional
call where the kind has one), with the arguments that change what a kind computes."""
from __future__ import annotations

CASES = {
    "activations": """
model acts {
  input x: float[4, 6]
  a: relu
  b: relu6
  c: tanh
  d: sigmoid
  e: silu
  f: swish
  g: mish
  h: hardsigmoid
  i: hardswish
  j: tanhshrink
  k: gelu
  l: gelu(approximate="tanh")
  m: leaky_relu(0.2)
  n: elu(0.7)
  o: softplus(2.0, 1.5)
  p: hardtanh(-0.5, 0.8)
  q: prelu(4)
  r: prelu
  s: softmax(dim=1)
  t: log_softmax(dim=-1)
  u: identity
}""",
    "activations_functional": """
model acts_fn {
  input x: float[4, 6]
  y = x * 3.0
  out (relu(y) + relu6(y) + tanh(y) + sigmoid(y) + silu(y) + swish(y) + mish(y) + hardsigmoid(y)
       + hardswish(y) + tanhshrink(y) + gelu(y) + gelu(y, approximate="tanh") + leaky_relu(y)
       + elu(y) + softplus(y, beta=0.5, threshold=3.0) + hardtanh(y) + softmax(y, dim=1)
       + log_softmax(y, dim=2) + identity(y))
}""",
    "dropouts": """
model drops {
  input x: float[4, 6, 5]
  a: dropout(0.5)
  b: dropout2d(0.3)
  c: alpha_dropout(0.2)
  d: stochastic_depth(0.4, mode="batch")
  e: flatten(2)
  f: dropout1d(0.1)
  g: unsqueeze(dim=2)
  h: unsqueeze(dim=2)
  i: dropout3d(0.1)
}""",
    "linear": """
model lin {
  input x: float[5, 6]
  input y: float[5, 3]
  a = x -> fc: linear(7) -> fc2: linear(4, bias=false)
  b = bilinear(a, y, out_features=2) -> bil: bilinear(y, 3)
  out b, identity(a)
}""",
    "bilinear_nobias": """
model bil {
  input x: float[6]
  input y: float[3]
  out x -> b: bilinear(y, 4, bias=false)
}""",
    "conv": """
model convs {
  input x: float[4, 9, 10]
  input s: float[4, 11]
  input v: float[2, 5, 6, 7]
  a = x -> c1: conv2d(6, 3, stride=2, padding=1, groups=2)
         -> c2: conv2d(6, [3, 2], dilation=[2, 1], padding="same", padding_mode="reflect")
         -> c3: conv2d(4, 2, padding=[1, 0], padding_mode="circular", bias=false)
         -> c4: conv2d(4, 3, padding="valid", padding_mode="replicate")
         -> c5: conv2d(8, 3, padding="same", groups=4)
  b = s -> d1: conv1d(6, 4, padding="same", dilation=2)
        -> d2: conv1d(3, 2, stride=2, padding=2, padding_mode="reflect")
  c = v -> e1: conv3d(3, 2, padding=1, padding_mode="replicate")
        -> e2: conv3d(4, [1, 2, 3], stride=[1, 2, 1])
  out a, b, c
}""",
    "conv_transpose": """
model deconvs {
  input x: float[4, 5, 6]
  input s: float[4, 7]
  input v: float[2, 3, 4, 5]
  a = x -> t1: conv_transpose2d(6, 3, stride=2, padding=1, output_padding=1, groups=2)
         -> t2: conv_transpose2d(2, [2, 3], dilation=2, bias=false)
  b = s -> t3: conv_transpose1d(3, 4, stride=3, output_padding=2)
  c = v -> t4: conv_transpose3d(2, 2, stride=[1, 2, 2], padding=[0, 1, 0])
  out a, b, c
}""",
    "separable": """
model sep {
  input x: float[4, 9, 8]
  a: separable_conv2d(6, 3, padding="same", depth_multiplier=2)
  b: separable_conv2d(5, [3, 2], stride=2, padding=1, dilation=[1, 2], bias=false)
  c: separable_conv2d(3, 2, padding="valid")
}""",
    "norms": """
model norms {
  input x: float[6, 5, 4]
  input f: float[6]
  input s: float[6, 7]
  input v: float[4, 3, 4, 5]
  a = x -> bn: batchnorm2d -> bn2: batchnorm2d(eps=0.1, affine=false)
        -> bn3: batchnorm2d(track_running_stats=false) -> gn: groupnorm(3)
        -> gn2: groupnorm(2, affine=false, eps=0.01) -> in2: instancenorm2d
        -> in3: instancenorm2d(affine=true, track_running_stats=true)
        -> ln: layernorm(dims=2) -> ln2: layernorm(bias=false)
        -> ln3: layernorm(elementwise_affine=false, dims=3)
        -> rms: rmsnorm -> rms2: rmsnorm(dims=2, eps=0.001)
        -> rms3: rmsnorm(elementwise_affine=false)
  b = f -> bn1: batchnorm1d
  c = s -> bn4: batchnorm1d(momentum=0.3) -> in1: instancenorm1d(affine=true)
  d = v -> bn5: batchnorm3d -> in5: instancenorm3d(track_running_stats=true) -> gn3: groupnorm(4)
  out a, b, c, d
}""",
    "pooling": """
model pools {
  input x: float[3, 11, 9]
  input s: float[3, 13]
  input v: float[2, 5, 7, 6]
  a = x -> m1: maxpool2d(3, stride=2, padding=1, ceil_mode=true)
  a2 = x -> m2: maxpool2d([2, 3], dilation=[2, 1], stride=1)
  a3 = x -> p1: avgpool2d(3, stride=2, padding=1, count_include_pad=false, ceil_mode=true)
  a4 = maxpool2d(x, 2) + avgpool2d(x, 2)
  b = s -> m3: maxpool1d(3, stride=2, ceil_mode=true) -> p2: avgpool1d(2, padding=1)
  c = v -> m4: maxpool3d(2, padding=1) -> p3: avgpool3d([1, 2, 2], ceil_mode=true)
  d = x -> q1: adaptive_avgpool2d([4, 5]) -> q2: adaptive_maxpool2d([3, 4])
  e = s -> q3: adaptive_avgpool1d(5) -> q4: adaptive_maxpool1d(3)
  f = v -> q5: adaptive_avgpool3d([2, 3, 4]) -> q6: adaptive_maxpool3d(2)
  g = x -> g1: global_avgpool
  h = v -> g2: global_maxpool
  out a, a2, a3, a4, b, c, d, e, f, g + global_maxpool(x), h + global_avgpool(v)
}""",
    "embeddings": """
model embeds {
  input ids: long[6]
  input feats: float[6, 8]
  e = ids -> tok: embedding(11, 8, padding_idx=0)
  p = ids -> pos: position_embedding(9, 8, offset=2)
  s = feats -> sin: sinusoidal_position_encoding(max_len=20)
  z = unsqueeze(zeros_like(ids, dtype="float"), dim=2) + ones_like(feats)
  n = ones_like(ids) + zeros_like(ids)
  out e + p + s + z, n, zeros_like(feats, dtype="bool")
}""",
    "sinusoidal_odd": """
model sin_odd {
  input x: float[5, 7]
  out x -> sinusoidal_position_encoding(d_model=7)
}""",
    "shapes": """
model shapes {
  input x: float[4, 6, 5]
  r = x -> reshape([6, -1, 2]) -> permute([0, 3, 1, 2]) -> transpose(1, 3)
  s = r -> unsqueeze(dim=-1) -> squeeze(dim=4)
  a, b, c = x -> split([1, 2, 3], dim=2)
  d, e = x -> split(4, dim=3)
  f, g, h = x -> chunk(3, dim=3)
  k = select(x, 2, -1) + mean(narrow(x, 2, -3, 2), dim=2)
  m = sum(x, dim=[1, 3], keepdim=true) + mean(x, dim=-1, keepdim=true)
  n = stack(f, g, dim=2) -> flatten(2, 3)
  out s, a, b, c, d, e, f, g, h, k, m, n
}""",
    "chunk_fewer": """
model chunky {
  input x: float[6, 3]
  a, b, c = x -> chunk(4, dim=1)
  out a, b, c
}""",
    "padding": """
model pads {
  input x: float[3, 6, 7]
  input s: float[3, 5]
  input ids: long[3, 5]
  a = x -> pad([1, 2, 0, 1], value=0.5) -> pad([2, 1, 1, 2], mode="reflect")
        -> pad([1, 0, 0, 1], mode="replicate") -> pad([2, 2, 3, 1], mode="circular")
        -> pad([-1, 0, 0, -2])
  b = s -> pad([2, 3], mode="reflect") -> pad([1, 1], mode="replicate")
  c = ids -> pad([1, 1], value=3.0)
  d = s -> pad([0, 0, 1, 1])
  out a, b, c, d
}""",
    "upsample": """
model ups {
  input x: float[3, 4, 5]
  input s: float[3, 6]
  input v: float[2, 3, 4, 4]
  a = x -> u1: upsample(scale_factor=2.0)
  b = x -> u2: upsample(size=[7, 9], mode="bilinear", align_corners=true)
  c = x -> u3: upsample(scale_factor=1.5, mode="bicubic")
  d = x -> u4: upsample(size=[3, 2], mode="area")
  e = x -> u5: upsample(scale_factor=[2.0, 1.5], mode="nearest-exact")
  f = s -> u6: upsample(size=11, mode="linear")
  g = v -> u7: upsample(scale_factor=2.0, mode="trilinear", align_corners=false)
  out a, b, c, d, e, f, g, upsample(x, size=8)
}""",
    "arithmetic": """
model arith {
  input x: float[4, 5]
  input y: float[4, 1]
  input ids: long[4, 5]
  input flags: bool[4, 5]
  a = x + y - x * y / (y * y + 1.0)
  b = add(x, other=2.5) + sub(x, other=1.0) + mul(x, other=-2.0) + div(x, other=4.0)
  c = ids + ids * ids - ids
  d = add(ids, other=0.5)
  e = mul(ids, other=3)
  f = x @ transpose(x, 1, 2)
  g = cat(x, y, x, dim=2) -> channel_shuffle(2) -> reshape([4, 11]) -> flatten
  h = mul(flags, x)
  i = x ** 2 + pow(y * y + 1.0, x) - x ** 3.0 * 0.5 if true else x
  out a, b, c, d, e, f, g, h, sum(ids, dim=2), sum(flags, dim=1), i
}""",
    "matmul_broadcast": """
model mm {
  input a: float[3, 4, 5]
  input b: float[1, 5, 2]
  out a @ b
}""",
    "channel_shuffle": """
model shuffle {
  input x: float[6, 3, 2]
  a: channel_shuffle(3)
}""",
    "attention": """
model attn {
  input x: float[5, 8]
  input mem: float[3, 6]
  input pad: bool[5]
  input fpad: float[5]
  a = x -> self_attn: multihead_attention(2)
  b = x -> causal_attn: multihead_attention(4, causal=true, bias=false)
  c = x -> cross: multihead_attention(2, key=mem, value=mem)
  d = x -> masked: multihead_attention(2, key_padding_mask=pad)
  e = x -> masked_causal: multihead_attention(2, causal=true, key_padding_mask=pad)
  f = x -> masked_float: multihead_attention(2, key_padding_mask=fpad)
  out a + b + c + d + e + f
}""",
    "attention_positional": """
model attn_pos {
  input x: float[5, 8]
  input k: float[4, 8]
  input v: float[4, 3]
  input pad: long[4]
  a = x -> mha: multihead_attention(k, v, pad, num_heads=4)
  b = x -> mha2: multihead_attention(k, num_heads=2)
  out a + b
}""",
    "sdpa": """
model sdpa_cases {
  input x: float[6, 8]
  input m: long[6]
  input fm: float[6]
  q, k, v = x -> qkv: linear(24) -> split(8, dim=2)
  a = sdpa(q, k, v, heads=2)
  b = sdpa(q, k, v, heads=4, causal=true)
  c = sdpa(q, k, v, heads=2, mask=m)
  d = sdpa(q, k, v, heads=2, mask=m, causal=true, scale=0.3)
  e = sdpa(q, k, v, m, heads=1)
  f = sdpa(q, k, v, heads=2, mask=fm)
  out a + b + c + d + e + f
}""",
    "llm": """
model llm_cases {
  input x: float[6, 16]
  input m: long[6]
  input pb: float[4, 6, 6]
  q = x -> q_proj: linear(16) -> rotary(4)
  k = x -> k_proj: linear(8, bias=false)
        -> rotary(4, theta=500000.0, scaling="llama3", factor=8.0,
                  original_max_position_embeddings=4)
  v = x -> v_proj: linear(8)
  a = sdpa(q, k, v, heads=4, kv_heads=2, causal=true)
  b = sdpa(q, k, v, heads=4, kv_heads=2, window=2, mask=m)
  c = sdpa(q, q, q, heads=4, bias=pb, causal=true, window=3)
  d = sdpa(q, k, v, m, pb, heads=4, kv_heads=2)
  kv = x -> kv_proj: linear(4)
  h = sdpa(q, kv, kv, heads=4, kv_heads=1, scale=0.5)
  i = kv_attention(q, k, v, m, pb, heads=4, kv_heads=2, causal=true, window=2)
  j = cached: kv_attention(q, kv, kv, heads=4, kv_heads=1)
  e = x -> rotary(8, scaling="dynamic", factor=2.0, original_max_position_embeddings=4)
  f = x -> rotary(2, scaling="linear", factor=3.0)
  g = x -> rms: rmsnorm(eps=0.000001)
  out a + b + c + d + e + f + g + h + i + j
}""",
    "transformer": """
model trans {
  input x: float[5, 8]
  input mem: float[4, 8]
  input pad: bool[5]
  input mpad: bool[4]
  a = x -> enc: transformer_encoder_layer(2, dim_feedforward=16)
        -> enc2: transformer_encoder_layer(4, 12, norm_first=true, activation="gelu", causal=true)
        -> enc3: transformer_encoder_layer(2, 10, bias=false, layer_norm_eps=0.01)
  b = x -> enc4: transformer_encoder_layer(2, 16, src_key_padding_mask=pad)
  c = x -> dec: transformer_decoder_layer(mem, nhead=2, dim_feedforward=16)
  d = x -> dec2: transformer_decoder_layer(mem, pad, mpad, nhead=4, dim_feedforward=8,
                                           norm_first=true, causal=true)
  e = x -> dec3: transformer_decoder_layer(mem, mpad, nhead=2, dim_feedforward=8)
  f = x -> dec4: transformer_decoder_layer(mem, nhead=2, dim_feedforward=8,
                                           memory_key_padding_mask=mpad, activation="gelu",
                                           bias=false)
  out a + b + c + d + e + f
}""",
    "recurrent": """
model rnns {
  input x: float[6, 5]
  a = x -> r1: rnn(4) -> r2: rnn(3, num_layers=2, bidirectional=true, nonlinearity="relu")
  b = x -> l1: lstm(4, num_layers=2, bidirectional=true) -> l2: lstm(3, last=true)
  c = x -> g1: gru(4, bias=false) -> g2: gru(3, num_layers=3, bidirectional=true, last=true)
  out a, b, c
}""",
    "structure": """
block Res(c) {
  in x
  h = x -> body: [conv2d(c, 3, padding=1), batchnorm2d, relu, conv2d(c, 3, padding=1)]
  out relu(x + h)
}

block Pair(w) {
  in x, y
  out x -> fc: linear(w), y -> fc
}

model structure {
  input x: float[4, 6, 6]
  input y: float[4, 6, 6]
  a = x -> stem: conv2d(4, 1) -> stages: [Res(4), Res(4) * 2] -> flatten
  b = y -> stem -> stages -> flatten
  p, q = Pair(a, b, 5)
  out p -> shared: linear(5) -> shared, q -> head: linear(5, bias=false, tie=shared)
}""",
    "several_tensors_through_a_list": """
block Layer(width, act = relu) {
  in x, bias
  h = x -> fc: linear(width) -> act
  out h + bias, bias * 0.5
}
block First(width) {
  in x
  out x -> fc: linear(width), x -> bias: linear(width)
}
model chain {
  input x: float[3, 6]
  input bias: float[3, 6]
  h, b = (x, bias) -> layers: Layer(6, act = gelu) * 3
  g, c = x -> blocks: [First(6), Layer(6), Layer(6, act = tanh)]
  k, j = (g, bias) -> [Layer(6), Layer(6)]
  out h, b, g, c, k, j
}""",
    "repeat_with_mask": """
model rep {
  input x: float[5, 8]
  input pad: bool[5]
  out x -> layers: [transformer_encoder_layer(pad, nhead=2, dim_feedforward=16)] * 2
}""",
    "elementwise": """
model elementwise {
  input ids: long[5]
  input x: float[4, 5]
  input img: float[3, 4, 4]
  tok = ids -> wte: embedding(10, 4)
  pos = positions(ids) -> wpe: embedding(8, 4)
  mask = ids != 0
  row = unsqueeze(ids, 1)
  bias = (1.0 - cast(mask, "float")) * -100.0
  far = unsqueeze(positions(x, dim=2, start=3, dtype="float"), 1)
  inv = 2.0 / (abs(x) + 1.0)
  s = sin(x) * cos(x) + exp(neg(x)) + log(sqrt(abs(x) + 1.0)) + abs(row) * 0.5 - 3 - neg(row)
  m = (x > 0) == (0.0 < x)
  sel = where(x > 0, x, 0.0) + where(x <= -0.5, x, inv) + where(x >= 0.2, row, 7)
  cmp = cast(x < inv, "long") + cast(x != x, "long") + cast(row == 2, "long")
  q = cast(x * 3.0, "long") + cast(lt(x, 0.1), "long") + cast(ge(x, inv), "long")
  r = repeat_interleave(unsqueeze(x, 1), 2, dim=1) + expand(unsqueeze(x, 1), [2, -1, -1])
  n = img -> ln: layernorm2d(eps=1e-6) -> ln2: layernorm2d(elementwise_affine=false)
  out tok + pos, bias, s + sel + far, m, cmp + q, r, cast(x, "bool"), n + layernorm2d(img, bias=false)
}""",
    "shifted_window_attention": """
model swin_attn {
  input x: float[5, 6, 4]
  a: shifted_window_attention(2, 3, shift=1)
  b: shifted_window_attention(1, 2, qkv_bias=false, proj_bias=false)
  c: shifted_window_attention(4, 7, shift=3)
  d: shifted_window_attention(2, 1)
  e: shifted_window_attention(2, [2, 4], shift=[1, 3])
}""",
}
