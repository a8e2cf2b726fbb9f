//! A TinyViT block's MLP with its residual (`x + fc2(GELU(fc1(LayerNorm(x))))`) in bands of
//! token rows. Layer by layer, MobileSAM's second stage writes a 16384 × 512 hidden tensor
//! (32 MiB) after `fc1`, reads and writes it again for the bias and GELU, and reads it once
//! more for `fc2`, each step a new tensor; here each band of rows is normalised, expanded,
//! activated, projected and added to its input inside a few hundred kilobytes that stay in
//! cache, the bands spread over the threads, each band's products on its own thread. The
//! arithmetic is the layer-by-layer MLP's (a test compares them).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::product::{matmul_into, Threads};

/// Token rows per band: a band's hidden rows (`128 × 4c` floats, 640 KiB at MobileSAM's
/// widest stage) stay in L2 (64 and 256 rows measured within 5 % of it).
const BAND_ROWS: usize = 128;

/// One MLP's weights, each product's right-hand side transposed to `(in, out)` row-major.
#[derive(Debug)]
pub(crate) struct BandedMlp {
    norm_weight: Vec<f32>,
    norm_bias: Vec<f32>,
    eps: f32,
    /// `(c, hidden)`, and `hidden` biases; GELU follows.
    fc1: (Vec<f32>, Vec<f32>),
    /// `(hidden, c)`, and `c` biases; the residual follows.
    fc2: (Vec<f32>, Vec<f32>),
}

/// `(out, in)` row-major, as a linear layer stores it, to `(in, out)` row-major (any
/// row-major matrix of `out` rows of `inp` values to its transpose).
pub(crate) fn transposed(weight: &[f32], out: usize, inp: usize) -> Vec<f32> {
    let mut t = vec![0f32; weight.len()];
    for (o, row) in weight.chunks_exact(inp).enumerate().take(out) {
        for (i, &w) in row.iter().enumerate() {
            t[i * out + o] = w;
        }
    }
    t
}

impl BandedMlp {
    /// From a layer norm's weight and bias (`c` each) and two linear layers as stored:
    /// `fc1` `(hidden, c)` with `hidden` biases, `fc2` `(c, hidden)` with `c` biases.
    pub(crate) fn new(
        (norm_weight, norm_bias, eps): (Vec<f32>, Vec<f32>, f32),
        (fc1, fc1_bias): (Vec<f32>, Vec<f32>),
        (fc2, fc2_bias): (Vec<f32>, Vec<f32>),
    ) -> candle_core::Result<Self> {
        let (c, hidden) = (norm_weight.len(), fc1_bias.len());
        if c == 0
            || hidden == 0
            || norm_bias.len() != c
            || fc2_bias.len() != c
            || fc1.len() != hidden * c
            || fc2.len() != c * hidden
        {
            candle_core::bail!(
                "an MLP over {c} channels needs ({hidden}, {c}) and ({c}, {hidden}) weights, {} and {} given, and {} norm biases",
                fc1.len(),
                fc2.len(),
                norm_bias.len()
            );
        }
        Ok(Self {
            norm_weight,
            norm_bias,
            eps,
            fc1: (transposed(&fc1, hidden, c), fc1_bias),
            fc2: (transposed(&fc2, c, hidden), fc2_bias),
        })
    }

    /// One band: `src` and `dst` are `rows × c`; `normed` and `hidden` are the band's buffers.
    fn band(
        &self,
        src: &[f32],
        dst: &mut [f32],
        normed: &mut [f32],
        hidden: &mut [f32],
    ) -> candle_core::Result<()> {
        let c = self.norm_weight.len();
        let h = self.fc1.1.len();
        let rows = src.len() / c;
        let normed = &mut normed[..rows * c];
        let hidden = &mut hidden[..rows * h];
        for (x, n) in src.chunks_exact(c).zip(normed.chunks_exact_mut(c)) {
            layer_norm_row(x, n, &self.norm_weight, &self.norm_bias, self.eps);
        }
        matmul_into(
            Threads::One,
            (rows, h, c),
            hidden,
            h,
            normed,
            c,
            &self.fc1.0,
            h,
        )?;
        for row in hidden.chunks_exact_mut(h) {
            super::elementwise::bias_gelu_row(row, &self.fc1.1, true);
        }
        matmul_into(
            Threads::One,
            (rows, c, h),
            dst,
            c,
            hidden,
            h,
            &self.fc2.0,
            c,
        )?;
        for (out, x) in dst.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
            super::elementwise::bias_residual_row(out, &self.fc2.1, x, false);
        }
        Ok(())
    }
}

/// candle's layer norm of one row: the mean, then the mean square of the difference, then
/// `(x − mean) / √(var + ε) · weight + bias`.
fn layer_norm_row(x: &[f32], out: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if super::elementwise::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { avx2::layer_norm_row(x, out, weight, bias, eps) };
        return;
    }
    layer_norm_row_generic(x, out, weight, bias, eps)
}

#[inline(always)]
fn layer_norm_row_generic(x: &[f32], out: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    let inv_std = 1.0 / (var + eps).sqrt();
    for (((o, v), w), b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
        *o = (v - mean) * inv_std * w + b;
    }
}

/// `Σ f(x)` in eight independent lanes (one chain of additions would not vectorise).
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The row loop compiled for AVX2 (8 lanes), chosen at run time.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn layer_norm_row(
        x: &[f32],
        out: &mut [f32],
        weight: &[f32],
        bias: &[f32],
        eps: f32,
    ) {
        super::layer_norm_row_generic(x, out, weight, bias, eps)
    }
}

impl CustomOp1 for BandedMlp {
    fn name(&self) -> &'static str {
        "mlp-banded"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = super::elementwise::contiguous_f32(storage, layout, "the MLP")?;
        let dims = layout.shape().dims();
        let c = self.norm_weight.len();
        if dims.last() != Some(&c) {
            candle_core::bail!("an MLP over {c} channels cannot take {dims:?}");
        }
        let h = self.fc1.1.len();
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(BAND_ROWS * c)
            .zip(src.par_chunks(BAND_ROWS * c))
            .try_for_each_init(
                || (vec![0f32; BAND_ROWS * c], vec![0f32; BAND_ROWS * h]),
                |(normed, hidden), (dst, src)| self.band(src, dst, normed, hidden),
            )?;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn random(shape: &[usize]) -> Tensor {
        Tensor::randn(0f32, 0.5, shape, &Device::Cpu).expect("random")
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().and_then(|t| t.to_vec1()).expect("values")
    }

    /// Against candle's layer norm, linear layers, GELU and addition, for row counts below,
    /// at and not a multiple of the band, and two images.
    #[test]
    fn matches_the_mlp_computed_layer_by_layer() {
        for (lead, c, hidden) in [
            (vec![1, 37], 16, 64),
            (vec![2, 64], 8, 32),
            (vec![1, 200], 24, 96),
        ] {
            let (nw, nb) = ((random(&[c]) + 1.0).expect("w"), random(&[c]));
            let (w1, b1) = (random(&[hidden, c]), random(&[hidden]));
            let (w2, b2) = (random(&[c, hidden]), random(&[c]));
            let mut shape = lead.clone();
            shape.push(c);
            let x = (random(&shape) * 2.0).and_then(|x| x + 0.3).expect("x");

            let norm = candle_nn::LayerNorm::new(nw.clone(), nb.clone(), 1e-5);
            let fc1 = candle_nn::Linear::new(w1.clone(), Some(b1.clone()));
            let fc2 = candle_nn::Linear::new(w2.clone(), Some(b2.clone()));
            let expected = x
                .apply(&norm)
                .and_then(|y| y.apply(&fc1))
                .and_then(|y| y.gelu())
                .and_then(|y| y.apply(&fc2))
                .and_then(|y| y + &x)
                .expect("layer by layer");

            let mlp = BandedMlp::new(
                (values(&nw), values(&nb), 1e-5),
                (values(&w1), values(&b1)),
                (values(&w2), values(&b2)),
            )
            .expect("mlp");
            let got = x.apply_op1_no_bwd(&mlp).expect("banded");
            let diff = crate::segmentation::elementwise::tests::max_diff(&got, &expected);
            assert!(
                diff < 1e-4,
                "max difference {diff} at {lead:?} {c} {hidden}"
            );
        }
    }

    #[test]
    fn refuses_weights_of_another_shape() {
        let mlp = BandedMlp::new(
            (vec![1.0; 4], vec![0.0; 4], 1e-5),
            (vec![0.0; 16], vec![0.0; 4]),
            (vec![0.0; 16], vec![0.0; 4]),
        )
        .expect("4 channels");
        let x = random(&[1, 3, 5]);
        assert!(
            x.apply_op1_no_bwd(&mlp).is_err(),
            "five channels, weights for four"
        );
        assert!(BandedMlp::new(
            (vec![1.0; 4], vec![0.0; 4], 1e-5),
            (vec![0.0; 15], vec![0.0; 4]),
            (vec![0.0; 16], vec![0.0; 4]),
        )
        .is_err());
    }
}
