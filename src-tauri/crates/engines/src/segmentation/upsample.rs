//! The mask decoder's 2 × 2, stride-2 transposed convolution at inference. Its kernel tiles
//! the output without overlap, so each output pixel is one input pixel times one tap of the
//! weight: one matrix product `(o · 2 · 2, in) · (in, pixels)` per image, then one parallel
//! pass that puts every product row where its tap lands in the output plane, with the bias
//! and (if asked) the GELU after it. candle's general transposed convolution took about
//! 75 ms of a 180 ms decode on the 2-core CI machine (2026-12-07); this is one product and
//! one pass.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Upsamples `x`, `(b, in, pixels)` holding `(h, w)` images channels first (any strides
/// candle's product takes: a transposed token matrix works), by `weight` `(in, o · 2 · 2)`
/// as stored, then adds `bias` (`o` values) and applies GELU if `gelu`. Returns
/// `(b, o, 2h, 2w)`.
pub(crate) fn upsample(
    x: &Tensor,
    (h, w): (usize, usize),
    weight: &Tensor,
    bias: &[f32],
    gelu: bool,
) -> Result<Tensor> {
    let (b, inp, pixels) = x.dims3()?;
    let (w_in, taps) = weight.dims2()?;
    if w_in != inp || taps != bias.len() * 4 || pixels != h * w {
        candle_core::bail!(
            "a 2 × 2 upsampling of {inp} channels × {pixels} pixels ({h} × {w}) cannot take a ({w_in}, {taps}) weight and {} biases",
            bias.len()
        );
    }
    let product = weight.t()?.broadcast_left(b)?.matmul(x)?; // (b, o·4, pixels)
    product.apply_op1_no_bwd(&PlaceTaps {
        grid: (h, w),
        bias,
        gelu,
    })
}

/// `(b, o · 2 · 2, h · w)` products to `(b, o, 2h, 2w)`: row `o · 4 + dy · 2 + dx` of an image
/// lands at `(2y + dy, 2x + dx)` of plane `o`.
struct PlaceTaps<'a> {
    grid: (usize, usize),
    bias: &'a [f32],
    gelu: bool,
}

impl CustomOp1 for PlaceTaps<'_> {
    fn name(&self) -> &'static str {
        "place-upsampling-taps"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = super::elementwise::contiguous_f32(storage, layout, "the upsampling")?;
        let (b, rows, pixels) = layout.shape().dims3()?;
        let (h, w) = self.grid;
        let o = self.bias.len();
        if rows != o * 4 || pixels != h * w {
            candle_core::bail!("{rows} rows of {pixels} are not 4 × {o} taps over {h} × {w}");
        }
        let (out_h, out_w) = (2 * h, 2 * w);
        let plane = out_h * out_w;
        let mut out = vec![0f32; b * o * plane];
        if plane > 0 {
            out.par_chunks_exact_mut(plane)
                .enumerate()
                .for_each(|(index, dst)| {
                    let (image, channel) = (index / o, index % o);
                    let taps = &src[(image * rows + channel * 4) * pixels..][..4 * pixels];
                    for (y, pair) in dst.chunks_exact_mut(2 * out_w).enumerate() {
                        let (upper, lower) = pair.split_at_mut(out_w);
                        for (dy, out_row) in [upper, lower].into_iter().enumerate() {
                            let left = &taps[(dy * 2) * pixels + y * w..][..w];
                            let right = &taps[(dy * 2 + 1) * pixels + y * w..][..w];
                            for ((d, l), r) in out_row.chunks_exact_mut(2).zip(left).zip(right) {
                                d[0] = *l;
                                d[1] = *r;
                            }
                        }
                    }
                    super::elementwise::bias_gelu_run(dst, self.bias[channel], self.gelu);
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, o, out_h, out_w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against candle's transposed convolution (kernel 2, stride 2) with the bias and GELU
    /// after it, from a channels-first input and from a transposed token matrix.
    #[test]
    fn matches_candles_transposed_convolution() {
        let dev = Device::Cpu;
        for (b, inp, o, h, w) in [(1, 8, 3, 5, 7), (2, 16, 4, 6, 6), (1, 32, 8, 1, 9)] {
            let weight = Tensor::randn(0f32, 0.5, (inp, o, 2, 2), &dev).expect("weight");
            let bias = Tensor::randn(0f32, 0.5, o, &dev).expect("bias");
            let x = Tensor::randn(0f32, 1.0, (b, inp, h, w), &dev).expect("x");
            let cfg = candle_nn::ConvTranspose2dConfig {
                stride: 2,
                ..Default::default()
            };
            let reference =
                candle_nn::ConvTranspose2d::new(weight.clone(), Some(bias.clone()), cfg);
            let expected = candle_core::Module::forward(&reference, &x).expect("candle");
            let bias = bias.to_vec1::<f32>().expect("bias values");
            let flat = weight.reshape((inp, o * 4)).expect("flat");
            for gelu in [false, true] {
                let expected = if gelu {
                    expected.gelu().expect("gelu")
                } else {
                    expected.clone()
                };
                let channels_first = x.reshape((b, inp, h * w)).expect("cf");
                let tokens = channels_first
                    .transpose(1, 2)
                    .and_then(|t| t.contiguous())
                    .and_then(|t| t.transpose(1, 2))
                    .expect("tokens");
                for input in [&channels_first, &tokens] {
                    let got = upsample(input, (h, w), &flat, &bias, gelu).expect("ours");
                    assert_eq!(got.dims(), expected.dims());
                    let diff = crate::segmentation::elementwise::tests::max_diff(&got, &expected);
                    assert!(
                        diff < 1e-4,
                        "max difference {diff} at {b} {inp} {o} {h} {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_mismatched_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 4, 6), candle_core::DType::F32, &dev).expect("x");
        let weight = Tensor::zeros((4, 8), candle_core::DType::F32, &dev).expect("w");
        assert!(upsample(&x, (2, 3), &weight, &[0.0; 2], false).is_ok());
        assert!(upsample(&x, (3, 3), &weight, &[0.0; 2], false).is_err());
        assert!(upsample(&x, (2, 3), &weight, &[0.0; 3], false).is_err());
        let wrong_in = Tensor::zeros((5, 8), candle_core::DType::F32, &dev).expect("w");
        assert!(upsample(&x, (2, 3), &wrong_in, &[0.0; 2], false).is_err());
    }
}
