//! SAM ViT-B's self-attention with decomposed relative positions, one row of queries at a
//! time, on the CPU.
//!
//! candle's path (`segment_anything::image_encoder::Attention`) builds, for each of the four
//! global blocks, a `12 × 4096 × 4096` score tensor (805 MB), then a second one holding the
//! scores plus the relative-position terms, then a third for the softmax, each freshly
//! allocated and faulted in page by page. This op computes the same arithmetic for one image
//! row of queries and one head at a time: its scores (`w × h·w`, 1 MiB for the global blocks)
//! stay in the thread's cache while the relative-position terms are added, the softmax runs
//! and the values are summed.
//!
//! The arithmetic is candle's (SAM's `add_decomposed_rel_pos`): for the query at `(qy, qx)`
//! and the key at `(ky, kx)` of an `h × w` grid, the score is `scale · q·k` plus
//! `q·Rh[qy − ky + h − 1]` plus `q·Rw[qx − kx + w − 1]` (q unscaled in the relative terms),
//! soft-maxed over the keys, then the weights sum the values.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::banded_mlp::transposed;
use super::product::{matmul_into, Threads};
use super::window_attention::exp_normalize;

/// Attention with decomposed relative positions over the `h × w` token grid of each image.
#[derive(Debug)]
pub(crate) struct RelPosAttention {
    heads: usize,
    head_dim: usize,
    grid: (usize, usize),
    scale: f32,
    /// `head_dim × (2h − 1)`: SAM's `rel_pos_h` transposed, one column per vertical offset.
    rel_h_t: Vec<f32>,
    /// `head_dim × (2w − 1)`: `rel_pos_w` transposed, one column per horizontal offset.
    rel_w_t: Vec<f32>,
}

impl RelPosAttention {
    /// `rel_h` and `rel_w` are SAM's `rel_pos_h` and `rel_pos_w` for this grid, row-major.
    pub(crate) fn new(
        heads: usize,
        head_dim: usize,
        grid: (usize, usize),
        rel_h: Vec<f32>,
        rel_w: Vec<f32>,
    ) -> candle_core::Result<Self> {
        let (h, w) = grid;
        let rows = |n: usize| n.checked_mul(2).and_then(|r| r.checked_sub(1));
        let want = |n: usize| rows(n).and_then(|r| r.checked_mul(head_dim));
        if heads == 0 || head_dim == 0 || h == 0 || w == 0 {
            candle_core::bail!("relative-position attention needs heads, a head width and a grid");
        }
        if want(h) != Some(rel_h.len()) || want(w) != Some(rel_w.len()) {
            candle_core::bail!(
                "relative positions of {} and {} values do not fit a {h} × {w} grid of {head_dim}-wide heads",
                rel_h.len(),
                rel_w.len()
            );
        }
        Ok(Self {
            heads,
            head_dim,
            grid,
            scale: 1.0 / (head_dim as f32).sqrt(),
            rel_h_t: transposed(&rel_h, 2 * h - 1, head_dim),
            rel_w_t: transposed(&rel_w, 2 * w - 1, head_dim),
        })
    }

    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// One head's keys for one image, transposed (`head_dim × h·w`), so that the scores are
    /// one product with unit strides.
    fn keys_t(&self, qkv: &[f32], head: usize) -> Vec<f32> {
        let (c, hd) = (self.width(), self.head_dim);
        let tokens = qkv.len() / (3 * c);
        let mut out = vec![0f32; hd * tokens];
        for (t, row) in qkv.chunks_exact(3 * c).enumerate() {
            let k = &row[c + head * hd..c + (head + 1) * hd];
            for (d, &v) in k.iter().enumerate() {
                out[d * tokens + t] = v;
            }
        }
        out
    }

    /// The attention of image row `qy`'s queries for one head: `w × head_dim` values.
    fn row(
        &self,
        qkv: &[f32],
        keys_t: &[f32],
        head: usize,
        qy: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let (h, w) = self.grid;
        let (c, hd) = (self.width(), self.head_dim);
        let tokens = h * w;
        let queries = &qkv[qy * w * 3 * c + head * hd..];
        let mut scores = vec![0f32; w * tokens];
        matmul_into(
            Threads::One,
            (w, tokens, hd),
            &mut scores,
            tokens,
            queries,
            3 * c,
            keys_t,
            tokens,
        )?;
        // Each query against every vertical and every horizontal offset, as two products.
        let (offsets_h, offsets_w) = (2 * h - 1, 2 * w - 1);
        let mut by_h = vec![0f32; w * offsets_h];
        let mut by_w = vec![0f32; w * offsets_w];
        matmul_into(
            Threads::One,
            (w, offsets_h, hd),
            &mut by_h,
            offsets_h,
            queries,
            3 * c,
            &self.rel_h_t,
            offsets_h,
        )?;
        matmul_into(
            Threads::One,
            (w, offsets_w, hd),
            &mut by_w,
            offsets_w,
            queries,
            3 * c,
            &self.rel_w_t,
            offsets_w,
        )?;
        self.positions_and_softmax(qy, &by_h, &by_w, &mut scores);
        // The weighted sum of the values (rows 3·c apart, starting at this head's).
        let mut out = vec![0f32; w * hd];
        let values = &qkv[2 * c + head * hd..];
        matmul_into(
            Threads::One,
            (w, hd, tokens),
            &mut out,
            hd,
            &scores,
            tokens,
            values,
            3 * c,
        )?;
        Ok(out)
    }

    /// Scales each query's scores, adds its relative-position terms (`by_h`, `by_w`: the
    /// query against every offset) and soft-maxes them, in place.
    fn positions_and_softmax(&self, qy: usize, by_h: &[f32], by_w: &[f32], scores: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::elementwise::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { self.positions_and_softmax_avx2(qy, by_h, by_w, scores) };
            return;
        }
        self.positions_and_softmax_generic(qy, by_h, by_w, scores)
    }

    /// [`Self::positions_and_softmax`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn positions_and_softmax_avx2(
        &self,
        qy: usize,
        by_h: &[f32],
        by_w: &[f32],
        scores: &mut [f32],
    ) {
        self.positions_and_softmax_generic(qy, by_h, by_w, scores)
    }

    #[inline(always)]
    fn positions_and_softmax_generic(
        &self,
        qy: usize,
        by_h: &[f32],
        by_w: &[f32],
        scores: &mut [f32],
    ) {
        let (h, w) = self.grid;
        let (offsets_h, offsets_w) = (2 * h - 1, 2 * w - 1);
        let mut rel_x = vec![0f32; w];
        for (qx, s) in scores.chunks_exact_mut(h * w).enumerate() {
            let row_h = &by_h[qx * offsets_h..(qx + 1) * offsets_h];
            let row_w = &by_w[qx * offsets_w..(qx + 1) * offsets_w];
            // Key column kx is offset qx − kx + w − 1.
            for (kx, v) in rel_x.iter_mut().enumerate() {
                *v = row_w[qx + w - 1 - kx];
            }
            for (ky, s_row) in s.chunks_exact_mut(w).enumerate() {
                let ry = row_h[qy + h - 1 - ky];
                for (v, &rx) in s_row.iter_mut().zip(&rel_x) {
                    *v = v.mul_add(self.scale, ry + rx);
                }
            }
            softmax(s);
        }
    }
}

/// Lanes of the max and sum reductions (independent accumulators, so that they vectorise).
const LANES: usize = 8;

/// `s` soft-maxed in place.
#[inline(always)]
fn softmax(s: &mut [f32]) {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = s.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in maxes.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&maxes)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    exp_normalize(s, max);
}

impl CustomOp1 for RelPosAttention {
    fn name(&self) -> &'static str {
        "rel-pos-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data =
            super::elementwise::contiguous_f32(storage, layout, "relative-position attention")?;
        let (b, l, width) = layout.shape().dims3()?;
        let (h, w) = self.grid;
        let c = self.width();
        if l != h * w || width != 3 * c {
            candle_core::bail!(
                "qkv is {:?}; relative-position attention over a {h} × {w} grid needs (b, {}, {})",
                layout.shape().dims(),
                h * w,
                3 * c
            );
        }
        let image = |i: usize| &data[i * l * width..(i + 1) * l * width];
        let keys: Vec<Vec<f32>> = (0..b * self.heads)
            .into_par_iter()
            .map(|task| self.keys_t(image(task / self.heads), task % self.heads))
            .collect();
        let rows: Vec<Vec<f32>> = (0..b * self.heads * h)
            .into_par_iter()
            .map(|task| {
                let (image_head, qy) = (task / h, task % h);
                let (i, head) = (image_head / self.heads, image_head % self.heads);
                self.row(image(i), &keys[image_head], head, qy)
            })
            .collect::<candle_core::Result<_>>()?;
        let hd = self.head_dim;
        let mut out = vec![0f32; b * l * c];
        for (task, values) in rows.iter().enumerate() {
            let (image_head, qy) = (task / h, task % h);
            let (i, head) = (image_head / self.heads, image_head % self.heads);
            for (qx, src) in values.chunks_exact(hd).enumerate() {
                let at = (i * l + qy * w + qx) * c + head * hd;
                out[at..at + hd].copy_from_slice(src);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, l, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp, Tensor};

    /// candle's arithmetic, op by op, as `segment_anything::image_encoder::Attention` runs it
    /// after its qkv projection (without the `Add3` shortcut: the broadcast sum it replaces).
    fn candle_attention(
        qkv: &Tensor,
        heads: usize,
        (h, w): (usize, usize),
        rel_h: &Tensor,
        rel_w: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, l, width) = qkv.dims3()?;
        let c = width / 3;
        let hd = c / heads;
        let qkv = qkv
            .reshape((b, l, 3, heads, hd))?
            .permute((2, 0, 3, 1, 4))?
            .reshape((3, b * heads, l, hd))?;
        let (q, k, v) = (qkv.i(0)?, qkv.i(1)?, qkv.i(2)?);
        let scale = 1.0 / (hd as f64).sqrt();
        let attn = (&q * scale)?.matmul(&k.t()?)?;
        // get_rel_pos: R[qi][ki] = rel[qi - ki + n - 1].
        let gather = |rel: &Tensor, n: usize| -> candle_core::Result<Tensor> {
            let idx: Vec<u32> = (0..n)
                .flat_map(|qi| (0..n).map(move |ki| (qi + n - 1 - ki) as u32))
                .collect();
            let idx = Tensor::from_vec(idx, n * n, &Device::Cpu)?;
            rel.index_select(&idx, 0)?.reshape((n, n, hd))
        };
        let r_h = gather(rel_h, h)?;
        let r_w = gather(rel_w, w)?;
        let r_q = q.reshape((b * heads, h, w, hd))?;
        let rel_hh = r_q.matmul(&r_h.broadcast_left(b * heads)?.t()?.contiguous()?)?;
        let rel_ww = r_q
            .transpose(1, 2)?
            .contiguous()?
            .matmul(&r_w.broadcast_left(b * heads)?.t()?.contiguous()?)?
            .transpose(1, 2)?
            .contiguous()?;
        let attn = (attn.reshape((b * heads, h, w, h, w))?
            + rel_hh.unsqueeze(4)?.broadcast_add(&rel_ww.unsqueeze(3)?)?)?
        .reshape((b * heads, l, l))?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?.matmul(&v)?;
        attn.reshape((b, heads, h, w, hd))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((b, l, c))
    }

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_candles_attention_on_rectangular_grids_and_batches() -> candle_core::Result<()> {
        for (b, heads, hd, (h, w)) in [(1, 2, 8, (5, 7)), (3, 3, 16, (4, 4)), (2, 1, 64, (9, 6))] {
            let c = heads * hd;
            let qkv = random(b * h * w * 3 * c, 1);
            let rel_h = random((2 * h - 1) * hd, 2);
            let rel_w = random((2 * w - 1) * hd, 3);
            let op = RelPosAttention::new(heads, hd, (h, w), rel_h.clone(), rel_w.clone())?;
            let qkv = Tensor::from_vec(qkv, (b, h * w, 3 * c), &Device::Cpu)?;
            let ours = qkv.apply_op1_no_bwd(&op)?.flatten_all()?.to_vec1::<f32>()?;
            let rel_h = Tensor::from_vec(rel_h, (2 * h - 1, hd), &Device::Cpu)?;
            let rel_w = Tensor::from_vec(rel_w, (2 * w - 1, hd), &Device::Cpu)?;
            let want = candle_attention(&qkv, heads, (h, w), &rel_h, &rel_w)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            assert_eq!(ours.len(), want.len());
            let worst = ours
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-5,
                "b {b}, {heads} heads of {hd}, {h} × {w}: off by {worst}"
            );
        }
        Ok(())
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert!(RelPosAttention::new(2, 8, (3, 3), vec![0.0; 5 * 8], vec![0.0; 4 * 8]).is_err());
        assert!(RelPosAttention::new(0, 8, (3, 3), vec![], vec![]).is_err());
        let op =
            RelPosAttention::new(2, 8, (3, 3), vec![0.0; 5 * 8], vec![0.0; 5 * 8]).expect("fits");
        let qkv = Tensor::zeros((1, 8, 48), candle_core::DType::F32, &Device::Cpu).expect("zeros");
        assert!(qkv.apply_op1_no_bwd(&op).is_err());
    }
}
