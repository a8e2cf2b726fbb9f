//! The mask decoder's multi-head attention core at inference, computed straight from
//! token-major queries, keys and values. The decoder's attentions pair a handful of prompt
//! tokens with the 4096 image tokens (one way or the other), 16 values per head: candle's
//! path copies each of q, k and v into per-head order, multiplies matrices seven wide (where
//! its GEMM kernel mostly pads), runs the softmax as its own pass and copies the result back
//! to token order. Here each (query, head) pair's scores, softmax and weighted sum of values
//! are one task over the tokens as the projections wrote them. The arithmetic is
//! attention's definition: `softmax(q · kᵀ / √d) · v` per head.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `softmax(q · kᵀ / √d) · v` over `heads` heads of `q` `(b, queries, c)`, `k` and `v`
/// `(b, keys, c)`; returns `(b, queries, c)`, each token's heads side by side.
pub(crate) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    q.contiguous()?.apply_op3_no_bwd(
        &k.contiguous()?,
        &v.contiguous()?,
        &TokenAttention { heads },
    )
}

struct TokenAttention {
    heads: usize,
}

impl CustomOp3 for TokenAttention {
    fn name(&self) -> &'static str {
        "token-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q_data = super::elementwise::contiguous_f32(q, q_layout, "attention")?;
        let k_data = super::elementwise::contiguous_f32(k, k_layout, "attention")?;
        let v_data = super::elementwise::contiguous_f32(v, v_layout, "attention")?;
        let (b, queries, c) = q_layout.shape().dims3()?;
        let (kb, keys, kc) = k_layout.shape().dims3()?;
        let heads = self.heads;
        if (kb, kc) != (b, c) || v_layout.shape().dims() != k_layout.shape().dims() {
            candle_core::bail!(
                "attention of {:?} queries over {:?} keys and {:?} values",
                q_layout.shape().dims(),
                k_layout.shape().dims(),
                v_layout.shape().dims()
            );
        }
        if heads == 0 || c % heads != 0 || keys == 0 {
            candle_core::bail!("{c} channels are not {heads} heads over {keys} keys");
        }
        let d = c / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; b * queries * c];
        if d > 0 {
            out.par_chunks_exact_mut(d).enumerate().for_each_init(
                || vec![0f32; keys],
                |scores, (index, out)| {
                    // `index` runs over (image, query, head).
                    let (token, head) = (index / heads, index % heads);
                    let image = token / queries;
                    let query = &q_data[index * d..][..d];
                    let image_keys = &k_data[image * keys * c..][..keys * c];
                    let image_values = &v_data[image * keys * c..][..keys * c];
                    attend_one(
                        query,
                        image_keys,
                        image_values,
                        (head * d, c),
                        scale,
                        scores,
                        out,
                    );
                },
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((b, queries, c))))
    }
}

/// One query's head: `keys` and `values` hold one row of `stride` per key, the head's `d`
/// values from `offset`.
fn attend_one(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    (offset, stride): (usize, usize),
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if super::elementwise::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { avx2::attend_one(query, keys, values, (offset, stride), scale, scores, out) };
        return;
    }
    attend_one_generic(query, keys, values, (offset, stride), scale, scores, out)
}

#[inline(always)]
fn attend_one_generic(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    (offset, stride): (usize, usize),
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = query.len();
    let mut max = f32::NEG_INFINITY;
    for (score, key) in scores.iter_mut().zip(keys.chunks_exact(stride)) {
        let key = &key[offset..offset + d];
        *score = dot(query, key) * scale;
        max = max.max(*score);
    }
    let mut sum = 0f32;
    for score in scores.iter_mut() {
        *score = (*score - max).exp();
        sum += *score;
    }
    out.fill(0.0);
    for (p, value) in scores.iter().zip(values.chunks_exact(stride)) {
        let value = &value[offset..offset + d];
        for (o, x) in out.iter_mut().zip(value) {
            *o += p * x;
        }
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// `a · b` in eight independent lanes (a plain sum is one chain of dependent additions,
/// which the compiler must keep in order).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn attend_one(
        query: &[f32],
        keys: &[f32],
        values: &[f32],
        at: (usize, usize),
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        super::attend_one_generic(query, keys, values, at, scale, scores, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// Attention as candle computes it: heads apart, products, softmax, heads together.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Tensor {
        let split = |x: &Tensor| {
            let (b, n, c) = x.dims3().expect("dims");
            x.reshape((b, n, heads, c / heads))
                .and_then(|x| x.transpose(1, 2))
                .and_then(|x| x.contiguous())
                .expect("heads")
        };
        let (q, k, v) = (split(q), split(k), split(v));
        let d = q.dim(D::Minus1).expect("d");
        let scores = (q.matmul(&k.t().expect("t")).expect("qk") / (d as f64).sqrt()).expect("s");
        let p = candle_nn::ops::softmax(&scores, D::Minus1).expect("softmax");
        let out = p.matmul(&v).expect("pv");
        let (b, h, n, d) = out.dims4().expect("dims");
        out.transpose(1, 2)
            .and_then(|o| o.reshape((b, n, h * d)))
            .expect("merge")
    }

    /// Few queries over many keys, many over few, and two images.
    #[test]
    fn matches_attention_computed_head_by_head() {
        let dev = Device::Cpu;
        for (b, queries, keys, c, heads) in
            [(1, 7, 300, 128, 8), (1, 300, 7, 128, 8), (2, 5, 9, 24, 3)]
        {
            let q = (Tensor::randn(0f32, 1.0, (b, queries, c), &dev).expect("q") * 3.0).expect("q");
            let k = Tensor::randn(0f32, 1.0, (b, keys, c), &dev).expect("k");
            let v = Tensor::randn(0f32, 1.0, (b, keys, c), &dev).expect("v");
            let got = attend(&q, &k, &v, heads).expect("ours");
            let expected = reference(&q, &k, &v, heads);
            assert_eq!(got.dims(), expected.dims());
            let diff = crate::segmentation::elementwise::tests::max_diff(&got, &expected);
            assert!(
                diff < 1e-5,
                "max difference {diff} at {b} {queries} {keys} {c} {heads}"
            );
        }
    }

    #[test]
    fn refuses_mismatched_shapes() {
        let dev = Device::Cpu;
        let z = |shape: (usize, usize, usize)| {
            Tensor::zeros(shape, candle_core::DType::F32, &dev).expect("zeros")
        };
        assert!(attend(&z((1, 2, 8)), &z((1, 3, 8)), &z((1, 3, 8)), 2).is_ok());
        assert!(attend(&z((1, 2, 8)), &z((1, 3, 6)), &z((1, 3, 6)), 2).is_err());
        assert!(attend(&z((1, 2, 8)), &z((1, 3, 8)), &z((1, 4, 8)), 2).is_err());
        assert!(attend(&z((1, 2, 8)), &z((1, 3, 8)), &z((1, 3, 8)), 3).is_err());
        assert!(attend(&z((1, 2, 8)), &z((1, 0, 8)), &z((1, 0, 8)), 2).is_err());
    }
}
