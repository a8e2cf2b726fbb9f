//! TinyViT's windowed self-attention in one pass over the token grid, on the CPU.
//!
//! candle's path (MobileSAM's `tiny_vit.rs`) pads the grid to whole windows, copies it into
//! window order, runs the attention as batched products on `(windows · heads, n, n)` score
//! tensors — a copy each for q, k and v, a new tensor for the scores, the scaling, the bias
//! and the softmax — then copies the result back into grid order and crops it. This kernel
//! reads q, k and v where the `qkv` projection wrote them (grid order, padding included
//! without a copy) and writes each token's heads where the `proj` projection reads them; the
//! scores of one block of queries live in a few kilobytes and never reach memory.
//!
//! The arithmetic is candle's: scores `q · kᵀ · scale + bias`, softmax over the window,
//! then the weighted sum of `v`. Padded tokens take part as keys, as they do in candle: a
//! padded token is a zero vector before the attention's layer norm, so its q, k and v are
//! the projection of the layer norm's bias ([`WindowAttention::new`]'s `pad`).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

/// Queries scored together: eight rows of eight lanes keep the products in registers.
const QUERY_BLOCK: usize = 8;
/// Keys per vector of scores.
const LANES: usize = 8;

/// Attention over `window × window` tiles of an `h × w` token grid.
#[derive(Debug)]
pub(crate) struct WindowAttention {
    heads: usize,
    /// Width of each head's query and key.
    key_dim: usize,
    /// Width of each head's value.
    value_dim: usize,
    window: usize,
    grid: (usize, usize),
    scale: f32,
    /// `(heads, n, n)` attention biases, `n = window²`.
    bias: Vec<f32>,
    /// The `qkv` product of a padded token, before the bias: `heads · (2 · key_dim + value_dim)`.
    pad: Vec<f32>,
    /// The `qkv` projection's bias, added to every row as it is read.
    qkv_bias: Vec<f32>,
}

/// The shape of one attention layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowShape {
    pub(crate) heads: usize,
    pub(crate) key_dim: usize,
    pub(crate) value_dim: usize,
    pub(crate) window: usize,
    /// Rows and columns of the token grid.
    pub(crate) grid: (usize, usize),
}

impl WindowAttention {
    /// `bias` is `(heads, n, n)` with `n = window²`; `pad` is the `qkv` product of a padded
    /// token; `qkv_bias` is the `qkv` projection's bias, which the kernel adds to every row
    /// it reads (the input is the product without it).
    pub(crate) fn new(
        shape: WindowShape,
        scale: f32,
        bias: Vec<f32>,
        pad: Vec<f32>,
        qkv_bias: Vec<f32>,
    ) -> candle_core::Result<Self> {
        let WindowShape {
            heads,
            key_dim,
            value_dim,
            window,
            grid,
        } = shape;
        let n = window * window;
        if heads == 0 || key_dim == 0 || value_dim == 0 || window == 0 {
            candle_core::bail!("window attention needs heads, widths and a window; got {shape:?}");
        }
        if bias.len() != heads * n * n {
            candle_core::bail!(
                "{} attention biases for {heads} heads over {n} tokens (need {})",
                bias.len(),
                heads * n * n
            );
        }
        let width = heads * (2 * key_dim + value_dim);
        if pad.len() != width || qkv_bias.len() != width {
            candle_core::bail!(
                "a padded token's qkv row has {} values and the bias {}, not {width}",
                pad.len(),
                qkv_bias.len()
            );
        }
        Ok(Self {
            heads,
            key_dim,
            value_dim,
            window,
            grid,
            scale,
            bias,
            pad,
            qkv_bias,
        })
    }

    fn row_width(&self) -> usize {
        self.heads * (2 * self.key_dim + self.value_dim)
    }

    fn windows(&self) -> (usize, usize) {
        (
            self.grid.0.div_ceil(self.window),
            self.grid.1.div_ceil(self.window),
        )
    }

    /// One window of one image: each real token's heads, `tokens × (heads · value_dim)` in
    /// the window's row-major order.
    fn window(&self, qkv: &[f32], wy: usize, wx: usize) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if super::elementwise::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.window_avx2(qkv, wy, wx) };
        }
        self.window_generic(qkv, wy, wx)
    }

    /// [`Self::window`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn window_avx2(&self, qkv: &[f32], wy: usize, wx: usize) -> Vec<f32> {
        self.window_generic(qkv, wy, wx)
    }

    #[inline(always)]
    fn window_generic(&self, qkv: &[f32], wy: usize, wx: usize) -> Vec<f32> {
        let (h, w) = self.grid;
        let ws = self.window;
        let n = ws * ws;
        let n8 = n.div_ceil(LANES) * LANES;
        let (kd, vd) = (self.key_dim, self.value_dim);
        let row_width = self.row_width();
        let head_width = 2 * kd + vd;
        // The window's tokens in row-major order: their qkv rows (the pad row where the
        // window hangs over the grid's edge), and which of them are real.
        let rows: Vec<&[f32]> = (0..n)
            .map(|t| {
                let (y, x) = (wy * ws + t / ws, wx * ws + t % ws);
                if y < h && x < w {
                    let at = (y * w + x) * row_width;
                    &qkv[at..at + row_width]
                } else {
                    &self.pad[..]
                }
            })
            .collect();
        let real: Vec<usize> = (0..n)
            .filter(|&t| wy * ws + t / ws < h && wx * ws + t % ws < w)
            .collect();
        let out_width = self.heads * vd;
        let mut out = vec![0f32; real.len() * out_width];

        let mut keys_t = vec![0f32; kd * n8]; // kᵀ: key_dim × n8, zero past n
        let mut values = vec![0f32; n * vd];
        let mut queries = vec![0f32; QUERY_BLOCK * kd];
        let mut scores = vec![0f32; QUERY_BLOCK * n8];
        for head in 0..self.heads {
            let (q_at, k_at, v_at) = (
                head * head_width,
                head * head_width + kd,
                head * head_width + 2 * kd,
            );
            let (q_bias, k_bias, v_bias) = (
                &self.qkv_bias[q_at..q_at + kd],
                &self.qkv_bias[k_at..k_at + kd],
                &self.qkv_bias[v_at..v_at + vd],
            );
            for (j, row) in rows.iter().enumerate() {
                for (c, (&k, &b)) in row[k_at..k_at + kd].iter().zip(k_bias).enumerate() {
                    keys_t[c * n8 + j] = k + b;
                }
                let value = &mut values[j * vd..(j + 1) * vd];
                for ((d, &v), &b) in value.iter_mut().zip(&row[v_at..v_at + vd]).zip(v_bias) {
                    *d = v + b;
                }
            }
            let bias = &self.bias[head * n * n..(head + 1) * n * n];
            for (block, block_tokens) in real.chunks(QUERY_BLOCK).enumerate() {
                queries.fill(0.0);
                for (r, &t) in block_tokens.iter().enumerate() {
                    let query = &mut queries[r * kd..(r + 1) * kd];
                    for ((d, &q), &b) in query.iter_mut().zip(&rows[t][q_at..q_at + kd]).zip(q_bias)
                    {
                        *d = q + b;
                    }
                }
                scores_block(&queries, &keys_t, kd, n8, &mut scores);
                for (r, &t) in block_tokens.iter().enumerate() {
                    let s = &mut scores[r * n8..r * n8 + n];
                    softmax_scaled(s, self.scale, &bias[t * n..(t + 1) * n]);
                    let token = block * QUERY_BLOCK + r;
                    let dst = &mut out[token * out_width + head * vd..][..vd];
                    weighted_sum(s, &values, vd, dst);
                }
            }
        }
        out
    }
}

/// `scores[r][j] = queries[r] · kᵀ[·][j]` for a block of [`QUERY_BLOCK`] queries and all
/// `n8` keys.
#[inline(always)]
fn scores_block(queries: &[f32], keys_t: &[f32], kd: usize, n8: usize, scores: &mut [f32]) {
    for jc in (0..n8).step_by(LANES) {
        let mut acc = [[0f32; LANES]; QUERY_BLOCK];
        for c in 0..kd {
            let k: &[f32; LANES] = keys_t[c * n8 + jc..][..LANES]
                .try_into()
                .unwrap_or(&[0.0; LANES]);
            for (r, acc) in acc.iter_mut().enumerate() {
                let q = queries[r * kd + c];
                for (a, k) in acc.iter_mut().zip(k) {
                    *a = q.mul_add(*k, *a);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            scores[r * n8 + jc..][..LANES].copy_from_slice(acc);
        }
    }
}

/// `s ← softmax(s · scale + bias)`, eight lanes at a time (the maximum and the sum kept per
/// lane, so that neither is a chain of scalar steps).
#[inline(always)]
fn softmax_scaled(s: &mut [f32], scale: f32, bias: &[f32]) {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut chunks = s.chunks_exact_mut(LANES);
    let mut bias_chunks = bias.chunks_exact(LANES);
    for (x, b) in (&mut chunks).zip(&mut bias_chunks) {
        for ((x, b), m) in x.iter_mut().zip(b).zip(&mut max) {
            *x = x.mul_add(scale, *b);
            *m = if *x > *m { *x } else { *m };
        }
    }
    let mut max = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (x, b) in chunks
        .into_remainder()
        .iter_mut()
        .zip(bias_chunks.remainder())
    {
        *x = x.mul_add(scale, *b);
        max = max.max(*x);
    }
    exp_normalize(s, max);
}

/// `s ← exp(s − max) / Σ exp(s − max)`: the softmax once the maximum is known, the sum kept
/// per lane.
#[inline(always)]
pub(crate) fn exp_normalize(s: &mut [f32], max: f32) {
    let mut sum = [0f32; LANES];
    let mut chunks = s.chunks_exact_mut(LANES);
    for x in &mut chunks {
        for (x, sum) in x.iter_mut().zip(&mut sum) {
            *x = exp(*x - max);
            *sum += *x;
        }
    }
    let mut sum: f32 = sum.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in s.iter_mut() {
        *x *= inv;
    }
}

/// Value width whose sums are kept in registers (TinyViT's heads are all 32 wide).
const REGISTER_VALUES: usize = 32;

/// `dst = Σⱼ p[j] · values[j]`.
#[inline(always)]
fn weighted_sum(p: &[f32], values: &[f32], vd: usize, dst: &mut [f32]) {
    if vd == REGISTER_VALUES {
        // A fixed width: the sum stays in four vector registers instead of a load, an FMA
        // and a store per key.
        let mut acc = [0f32; REGISTER_VALUES];
        for (&p, v) in p.iter().zip(values.chunks_exact(REGISTER_VALUES)) {
            for (a, v) in acc.iter_mut().zip(v) {
                *a = p.mul_add(*v, *a);
            }
        }
        dst.copy_from_slice(&acc);
        return;
    }
    dst.fill(0.0);
    for (&p, v) in p.iter().zip(values.chunks_exact(vd)) {
        for (d, v) in dst.iter_mut().zip(v) {
            *d = p.mul_add(*v, *d);
        }
    }
}

/// `eˣ` for `x ≤ 0` (softmax's shifted scores), within 2 ulp: Cephes' `expf` reduction and
/// polynomial, written without branches so that it vectorises.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let t = x.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5); // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let y = p.mul_add(r * r, r) + 1.0;
    // 2ⁿ from n's bits: t's low bits hold n + 2²² · 3 (two's complement in 23 bits).
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let two_n = f32::from_bits(((n_bits + 127) as u32) << 23);
    y * two_n
}

impl CustomOp1 for WindowAttention {
    fn name(&self) -> &'static str {
        "window-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = super::elementwise::contiguous_f32(storage, layout, "window attention")?;
        let (b, l, width) = layout.shape().dims3()?;
        let (h, w) = self.grid;
        if l != h * w || width != self.row_width() {
            candle_core::bail!(
                "qkv is {:?}; window attention over a {h} × {w} grid needs (b, {}, {})",
                layout.shape().dims(),
                h * w,
                self.row_width()
            );
        }
        let (n_h, n_w) = self.windows();
        let results: Vec<Vec<f32>> = (0..b * n_h * n_w)
            .into_par_iter()
            .map(|task| {
                let image = task / (n_h * n_w);
                let (wy, wx) = ((task / n_w) % n_h, task % n_w);
                let qkv = &data[image * l * width..(image + 1) * l * width];
                self.window(qkv, wy, wx)
            })
            .collect();
        let out_width = self.heads * self.value_dim;
        let mut out = vec![0f32; b * l * out_width];
        let ws = self.window;
        for (task, tokens) in results.iter().enumerate() {
            let image = task / (n_h * n_w);
            let (wy, wx) = ((task / n_w) % n_h, task % n_w);
            // The window's real tokens, row by row of the grid.
            let cols = ws.min(w - wx * ws);
            for (r, src) in tokens.chunks_exact(cols * out_width).enumerate() {
                let (y, x) = (wy * ws + r, wx * ws);
                let at = (image * l + y * w + x) * out_width;
                out[at..at + src.len()].copy_from_slice(src);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, l, out_width))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The attention written out token by token in f64, straight from the definition:
    /// each window of the padded grid, each head, each real query.
    fn reference(op: &WindowAttention, qkv: &[f32], b: usize) -> Vec<f32> {
        let (h, w) = op.grid;
        let ws = op.window;
        let n = ws * ws;
        let (kd, vd) = (op.key_dim, op.value_dim);
        let width = op.row_width();
        let head_width = 2 * kd + vd;
        let out_width = op.heads * vd;
        let mut out = vec![0f32; b * h * w * out_width];
        let row = |image: usize, y: usize, x: usize| -> Vec<f32> {
            let product = if y < h && x < w {
                &qkv[(image * h * w + y * w + x) * width..][..width]
            } else {
                &op.pad
            };
            product
                .iter()
                .zip(&op.qkv_bias)
                .map(|(p, b)| p + b)
                .collect()
        };
        for image in 0..b {
            for wy in 0..h.div_ceil(ws) {
                for wx in 0..w.div_ceil(ws) {
                    let at = |t: usize| (wy * ws + t / ws, wx * ws + t % ws);
                    for head in 0..op.heads {
                        let base = head * head_width;
                        for i in 0..n {
                            let (y, x) = at(i);
                            if y >= h || x >= w {
                                continue;
                            }
                            let q_row = row(image, y, x);
                            let q = &q_row[base..base + kd];
                            let scores: Vec<f64> = (0..n)
                                .map(|j| {
                                    let (ky, kx) = at(j);
                                    let k_row = row(image, ky, kx);
                                    let k = &k_row[base + kd..base + 2 * kd];
                                    let dot: f64 =
                                        q.iter().zip(k).map(|(a, b)| f64::from(a * b)).sum();
                                    dot * f64::from(op.scale)
                                        + f64::from(op.bias[(head * n + i) * n + j])
                                })
                                .collect();
                            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                            let sum: f64 = e.iter().sum();
                            for c in 0..vd {
                                let v: f64 = (0..n)
                                    .map(|j| {
                                        let (vy, vx) = at(j);
                                        e[j] / sum
                                            * f64::from(row(image, vy, vx)[base + 2 * kd + c])
                                    })
                                    .sum();
                                out[(image * h * w + y * w + x) * out_width + head * vd + c] =
                                    v as f32;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn random(len: usize) -> Vec<f32> {
        Tensor::randn(0f32, 1.0, len, &Device::Cpu)
            .and_then(|t| t.to_vec1::<f32>())
            .expect("random values")
    }

    /// Grids that are whole windows, that leave partial windows on both edges, and a single
    /// window larger than the grid; two images in a batch; more than one query block; the
    /// 32-wide heads TinyViT has.
    #[test]
    fn matches_the_definition_with_partial_windows_and_batches() {
        for &(grid, window, heads, kd, vd, b) in &[
            ((6, 6), 3, 2, 4, 4, 1),
            ((5, 9), 3, 2, 8, 4, 2),
            ((11, 7), 4, 3, 8, 8, 1),
            ((2, 3), 4, 1, 4, 4, 1),
            // TinyViT's head width, whose sums stay in registers.
            ((9, 10), 7, 2, 32, 32, 2),
        ] {
            let shape = WindowShape {
                heads,
                key_dim: kd,
                value_dim: vd,
                window,
                grid,
            };
            let n = window * window;
            let width = heads * (2 * kd + vd);
            let op = WindowAttention::new(
                shape,
                1.0 / (kd as f32).sqrt(),
                random(heads * n * n),
                random(width),
                random(width),
            )
            .expect("valid shape");
            let qkv = random(b * grid.0 * grid.1 * width);
            let input = Tensor::from_vec(qkv.clone(), (b, grid.0 * grid.1, width), &Device::Cpu)
                .expect("qkv tensor");
            let ours = input
                .apply_op1_no_bwd(&op)
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                .expect("window attention");
            let expected = reference(&op, &qkv, b);
            assert_eq!(ours.len(), expected.len());
            let worst = ours
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{shape:?}, batch {b}: differs by {worst}");
        }
    }

    #[test]
    fn refuses_a_qkv_tensor_of_another_shape() {
        let shape = WindowShape {
            heads: 2,
            key_dim: 4,
            value_dim: 4,
            window: 3,
            grid: (4, 4),
        };
        let op = WindowAttention::new(shape, 0.5, vec![0.0; 2 * 81], vec![0.0; 24], vec![0.0; 24])
            .expect("valid shape");
        let wrong_tokens = Tensor::zeros((1, 15, 24), candle_core::DType::F32, &Device::Cpu);
        let wrong_width = Tensor::zeros((1, 16, 23), candle_core::DType::F32, &Device::Cpu);
        for t in [wrong_tokens, wrong_width] {
            let err = t
                .and_then(|t| t.apply_op1_no_bwd(&op))
                .expect_err("wrong shape");
            assert!(err.to_string().contains("grid"), "{err}");
        }
        let ok = |bias: usize, pad: usize, qkv_bias: usize| {
            WindowAttention::new(
                shape,
                0.5,
                vec![0.0; bias],
                vec![0.0; pad],
                vec![0.0; qkv_bias],
            )
            .is_ok()
        };
        assert!(ok(162, 24, 24));
        assert!(!ok(5, 24, 24) && !ok(162, 7, 24) && !ok(162, 24, 23));
    }

    #[test]
    fn exp_matches_the_standard_library_on_softmax_inputs() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -(i as f32) * 1e-3 * 0.5; // 0 … −100
            let (ours, std) = (exp(x), x.exp());
            let rel = if std > f32::MIN_POSITIVE * 16.0 {
                (ours - std).abs() / std
            } else {
                (ours - std).abs()
            };
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "relative error {worst}");
    }
}
