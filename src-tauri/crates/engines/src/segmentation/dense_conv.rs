//! Dense convolutions (every input channel into every output channel) as matrix products:
//! `weight (out × in·k·k) · columns (in·k·k × pixels)`. The columns are laid out tap by tap
//! (row `(ic, ky, kx)` holds that tap's input value for every output pixel), so the product
//! is already the channels-first output. candle 0.11's `conv2d` builds the columns pixel by
//! pixel and multiplies the other way round, which leaves the result channels-last and costs
//! a strided copy of the whole output. The columns are built for a band of output rows at a
//! time, into one buffer of 4 MiB that every band reuses (the whole column matrix of
//! TinyViT's second patch-embedding convolution is 72 MiB), and the band's product is
//! written into its rows of the output planes, its bias and GELU applied there.

use candle_core::{CpuStorage, CustomOp1, IndexOp, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::product::{matmul_into, Threads};

/// Column-matrix elements per band (4 MiB). On the 2-core CI machine (2026-12-07) the patch
/// embedding took 95 ms with whole column matrices, 57–62 ms with bands of 2 or 4 MiB, and
/// more with 1 or 8 MiB (smaller products or columns out of cache).
const BAND_FLOATS: usize = 1 << 20;

/// A dense `k × k` convolution: its weight and geometry.
#[derive(Debug)]
pub(crate) struct DenseConv2d {
    /// `(out, in · k · k)` row-major.
    weight: Vec<f32>,
    out: usize,
    in_: usize,
    k: usize,
    stride: usize,
    padding: usize,
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
            weight: weight.flatten_all()?.to_vec1::<f32>()?,
            out,
            in_,
            k,
            stride,
            padding,
        })
    }

    fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.padding).saturating_sub(self.k) / self.stride + 1
    }

    /// `(b, in, h, w)` to `(b, out, oh, ow)`, with `bias` (one per output channel) added and
    /// GELU applied if asked.
    pub(crate) fn forward(&self, xs: &Tensor, bias: Option<&[f32]>, gelu: bool) -> Result<Tensor> {
        xs.contiguous()?.apply_op1_no_bwd(&WithBias {
            conv: self,
            bias,
            gelu,
        })
    }

    /// Rows `oy0..oy0 + rows` of tap `tap`'s column row into `dst` (`rows × ow`), zero where
    /// the tap falls in the padding.
    fn fill_tap(
        &self,
        image: &[f32],
        (h, w): (usize, usize),
        tap: usize,
        oy0: usize,
        dst: &mut [f32],
    ) {
        let Self {
            k, stride, padding, ..
        } = *self;
        let ow = self.out_side(w);
        let (channel, ky, kx) = (tap / (k * k), (tap / k) % k, tap % k);
        let plane = &image[channel * h * w..][..h * w];
        // Output columns whose input column ox·s + kx − p lies inside the row.
        let first = padding.saturating_sub(kx).div_ceil(stride).min(ow);
        let last = (w + padding)
            .saturating_sub(kx)
            .div_ceil(stride)
            .clamp(first, ow);
        for (r, dst) in dst.chunks_exact_mut(ow).enumerate() {
            let oy = oy0 + r;
            let Some(iy) = (oy * stride + ky).checked_sub(padding).filter(|&y| y < h) else {
                dst.fill(0.0);
                continue;
            };
            let src_row = &plane[iy * w..(iy + 1) * w];
            dst[..first].fill(0.0);
            dst[last..].fill(0.0);
            for (ox, d) in dst.iter_mut().enumerate().take(last).skip(first) {
                *d = src_row[ox * stride + kx - padding];
            }
        }
    }
}

/// A [`DenseConv2d`] with the bias and GELU that follow it.
struct WithBias<'a> {
    conv: &'a DenseConv2d,
    bias: Option<&'a [f32]>,
    gelu: bool,
}

impl CustomOp1 for WithBias<'_> {
    fn name(&self) -> &'static str {
        "dense-convolution-banded"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = super::elementwise::contiguous_f32(storage, layout, "the convolution")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        let conv = self.conv;
        let (k, out) = (conv.k, conv.out);
        if c != conv.in_ || self.bias.is_some_and(|bias| bias.len() != out) {
            candle_core::bail!(
                "a convolution of {} into {out} channels cannot take {c} channels",
                conv.in_
            );
        }
        if h + 2 * conv.padding < k || w + 2 * conv.padding < k {
            candle_core::bail!("a {h} × {w} plane is smaller than the {k} × {k} filter");
        }
        let (oh, ow) = (conv.out_side(h), conv.out_side(w));
        let taps = c * k * k;
        let plane = oh * ow;
        let band_rows = (BAND_FLOATS / (taps * ow).max(1)).clamp(1, oh.max(1));
        let mut columns = vec![0f32; taps * band_rows * ow];
        let mut result = vec![0f32; b * out * plane];
        if plane == 0 {
            return Ok((CpuStorage::F32(result), Shape::from((b, out, oh, ow))));
        }
        for (image, dst) in src
            .chunks_exact(c * h * w)
            .zip(result.chunks_exact_mut(out * plane))
        {
            for y0 in (0..oh).step_by(band_rows) {
                let y1 = (y0 + band_rows).min(oh);
                let n = (y1 - y0) * ow;
                let columns = &mut columns[..taps * n];
                columns
                    .par_chunks_exact_mut(n)
                    .enumerate()
                    .for_each(|(tap, row)| conv.fill_tap(image, (h, w), tap, y0, row));
                matmul_into(
                    Threads::All,
                    (out, n, taps),
                    &mut dst[y0 * ow..],
                    plane,
                    &conv.weight,
                    taps,
                    columns,
                    n,
                )?;
                if self.bias.is_some() || self.gelu {
                    dst.par_chunks_exact_mut(plane)
                        .enumerate()
                        .for_each(|(channel, p)| {
                            let bias = self.bias.map_or(0.0, |bias| bias[channel]);
                            super::elementwise::bias_gelu_run(
                                &mut p[y0 * ow..y1 * ow],
                                bias,
                                self.gelu,
                            );
                        });
                }
            }
        }
        Ok((CpuStorage::F32(result), Shape::from((b, out, oh, ow))))
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

    /// Against candle's `conv2d` (with its bias, and GELU after it) on odd sides, strides 1 and
    /// 2, padding 0 and 1, one band and several, two images.
    #[test]
    fn matches_candles_convolution() {
        let dev = Device::Cpu;
        for (c, out, h, w, k, stride, padding) in [
            (3, 8, 17, 13, 3, 2, 1),
            (4, 6, 9, 10, 3, 1, 1),
            (2, 5, 7, 7, 3, 2, 0),
            (5, 4, 6, 9, 1, 1, 0),
            (1, 3, 3, 3, 3, 1, 1),
            // Ten output rows per band: four bands, the last partial.
            (32, 4, 37, 45, 3, 1, 1),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).expect("x");
            let weight = Tensor::randn(0f32, 1.0, (out, c, k, k), &dev).expect("w");
            let cfg = Conv2dConfig {
                padding,
                stride,
                ..Default::default()
            };
            let bias = Tensor::randn(0f32, 1.0, out, &dev).expect("bias");
            let reference = candle_nn::Conv2d::new(weight.clone(), Some(bias.clone()), cfg)
                .forward(&x)
                .expect("candle");
            let bias = bias.to_vec1::<f32>().expect("bias values");
            let conv = DenseConv2d::new(&weight, stride, padding).expect("conv");
            for gelu in [false, true] {
                let expected = if gelu {
                    reference.gelu().expect("gelu")
                } else {
                    reference.clone()
                };
                let ours = conv.forward(&x, Some(&bias), gelu).expect("ours");
                assert_eq!(ours.dims(), expected.dims());
                let diff = crate::segmentation::elementwise::tests::max_diff(&ours, &expected);
                assert!(
                    diff < 1e-4,
                    "max difference {diff} at {c}→{out} {h}×{w} k{k} s{stride} p{padding}"
                );
            }
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
            conv.forward(&x, None, false).is_err(),
            "smaller than the filter"
        );
        let x = Tensor::zeros((1, 3, 4, 4), candle_core::DType::F32, &dev).expect("x");
        assert!(
            conv.forward(&x, None, false).is_err(),
            "three channels, not two"
        );
    }
}
