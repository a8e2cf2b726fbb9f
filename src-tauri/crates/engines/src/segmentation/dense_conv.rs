//! Dense convolutions (every input channel into every output channel) as one matrix product:
//! `weight (out × in·k·k) · columns (in·k·k × pixels)`. The columns are laid out tap by tap
//! (row `(ic, ky, kx)` holds that tap's input value for every output pixel), so the product
//! is already the channels-first output. candle 0.11's `conv2d` builds the columns pixel by
//! pixel and multiplies the other way round, which leaves the result channels-last and costs
//! a strided copy of the whole output; on TinyViT's patch embedding (3 → 32 channels at
//! 512 × 512, then 32 → 64 at 256 × 256) that copy and the small-K product were most of the
//! stage's time.

use candle_core::{CpuStorage, CustomOp1, IndexOp, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The tap-major column matrix of a `k × k` convolution: `(b, c · k · k, oh · ow)`.
#[derive(Debug, Clone, Copy)]
struct Columns {
    k: usize,
    stride: usize,
    padding: usize,
}

impl Columns {
    fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.padding).saturating_sub(self.k) / self.stride + 1
    }
}

impl CustomOp1 for Columns {
    fn name(&self) -> &'static str {
        "im2col-tap-major"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = super::elementwise::contiguous_f32(storage, layout, "the convolution")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        let Self { k, stride, padding } = *self;
        if h + 2 * padding < k || w + 2 * padding < k {
            candle_core::bail!("a {h} × {w} plane is smaller than the {k} × {k} filter");
        }
        let (oh, ow) = (self.out_side(h), self.out_side(w));
        let rows = c * k * k;
        let mut out = vec![0f32; b * rows * oh * ow];
        out.par_chunks_exact_mut(oh * ow)
            .enumerate()
            .for_each(|(row, dst)| {
                let (image, tap) = (row / rows, row % rows);
                let (channel, ky, kx) = (tap / (k * k), (tap / k) % k, tap % k);
                let plane = &src[(image * c + channel) * h * w..][..h * w];
                // Output columns whose input column ox·s + kx − p lies inside the row.
                let first = padding.saturating_sub(kx).div_ceil(stride);
                let last = (w + padding).saturating_sub(kx).div_ceil(stride).min(ow);
                for (oy, dst) in dst.chunks_exact_mut(ow).enumerate() {
                    let Some(iy) = (oy * stride + ky).checked_sub(padding).filter(|&y| y < h)
                    else {
                        continue;
                    };
                    let src_row = &plane[iy * w..(iy + 1) * w];
                    for (ox, d) in dst.iter_mut().enumerate().take(last).skip(first) {
                        *d = src_row[ox * stride + kx - padding];
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, rows, oh * ow))))
    }
}

/// A dense `k × k` convolution with its bias, computed as [`Columns`] and one product.
#[derive(Debug)]
pub(crate) struct DenseConv2d {
    /// `(out, in · k · k)`.
    weight: Tensor,
    columns: Columns,
}

impl DenseConv2d {
    /// `weight` is `(out, in, k, k)`.
    pub(crate) fn new(weight: &Tensor, stride: usize, padding: usize) -> Result<Self> {
        let (out, in_, k, k2) = weight.dims4()?;
        if k != k2 || stride == 0 || padding >= k {
            candle_core::bail!(
                "a dense convolution needs a square filter, stride ≥ 1 and padding < k; got {:?}, stride {stride}, padding {padding}",
                weight.dims()
            );
        }
        Ok(Self {
            weight: weight.reshape((out, in_ * k * k))?,
            columns: Columns { k, stride, padding },
        })
    }

    /// `(b, in, h, w)` to `(b, out, oh, ow)`, without the bias (the caller adds it in place).
    pub(crate) fn forward_without_bias(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = xs.dims4()?;
        let (oh, ow) = (self.columns.out_side(h), self.columns.out_side(w));
        let columns = xs.contiguous()?.apply_op1_no_bwd(&self.columns)?;
        let out = self.weight.dim(0)?;
        product_per_image(&self.weight, &columns)?.reshape((b, out, oh, ow))
    }
}

/// `weight (out × k)` times each image's `k × p` matrix of `planes (b, k, p)`: `(b, out, p)`.
pub(crate) fn product_per_image(weight: &Tensor, planes: &Tensor) -> Result<Tensor> {
    let b = planes.dim(0)?;
    if b == 1 {
        return weight.matmul(&planes.i(0)?)?.unsqueeze(0);
    }
    let ys = (0..b)
        .map(|i| weight.matmul(&planes.i(i)?))
        .collect::<Result<Vec<_>>>()?;
    Tensor::stack(&ys, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};
    use candle_nn::Conv2dConfig;

    /// Against candle's `conv2d` on odd sides, strides 1 and 2, padding 0 and 1, two images.
    #[test]
    fn matches_candles_convolution() {
        let dev = Device::Cpu;
        for (c, out, h, w, k, stride, padding) in [
            (3, 8, 17, 13, 3, 2, 1),
            (4, 6, 9, 10, 3, 1, 1),
            (2, 5, 7, 7, 3, 2, 0),
            (5, 4, 6, 9, 1, 1, 0),
            (1, 3, 3, 3, 3, 1, 1),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).expect("x");
            let weight = Tensor::randn(0f32, 1.0, (out, c, k, k), &dev).expect("w");
            let cfg = Conv2dConfig {
                padding,
                stride,
                ..Default::default()
            };
            let reference = candle_nn::Conv2d::new(weight.clone(), None, cfg)
                .forward(&x)
                .expect("candle");
            let ours = DenseConv2d::new(&weight, stride, padding)
                .and_then(|conv| conv.forward_without_bias(&x))
                .expect("ours");
            assert_eq!(ours.dims(), reference.dims());
            let diff = crate::segmentation::elementwise::tests::max_diff(&ours, &reference);
            assert!(
                diff < 1e-4,
                "max difference {diff} at {c}→{out} {h}×{w} k{k} s{stride} p{padding}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((2, 2, 3, 2), candle_core::DType::F32, &dev).expect("w");
        assert!(DenseConv2d::new(&w, 1, 1).is_err(), "not square");
        let w = Tensor::zeros((2, 2, 3, 3), candle_core::DType::F32, &dev).expect("w");
        assert!(DenseConv2d::new(&w, 0, 1).is_err(), "stride 0");
        let conv = DenseConv2d::new(&w, 1, 0).expect("conv");
        let x = Tensor::zeros((1, 2, 2, 2), candle_core::DType::F32, &dev).expect("x");
        assert!(
            conv.forward_without_bias(&x).is_err(),
            "smaller than the filter"
        );
    }
}
