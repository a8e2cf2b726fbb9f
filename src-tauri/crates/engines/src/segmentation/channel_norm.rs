//! The encoder neck's layer norm over channels (`LayerNorm2d`), on channels-first `(b, c, h, w)`
//! data, in two parallel passes. candle-transformers' `LayerNorm2d` builds it from seven
//! tensor operations (two of them means over the channel axis, which candle reduces element by
//! element through strided indexing), each a new tensor; here the statistics come from one
//! pass over blocks of pixels and the normalised output from one pass over the planes. The
//! arithmetic is the same: the mean, then the mean square of the difference, then
//! `(x − mean) / √(var + ε) · weight + bias`.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// Pixels whose statistics one task computes (a few kilobytes per channel row).
const PIXEL_BLOCK: usize = 512;

/// Layer norm over the channel axis of channels-first images.
#[derive(Debug)]
pub(crate) struct ChannelNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl ChannelNorm {
    /// `weight` and `bias` of `channels` values from `vb`, as `LayerNorm2d` reads them.
    pub(crate) fn new(channels: usize, eps: f32, vb: VarBuilder) -> candle_core::Result<Self> {
        Self::from_tensors(
            &vb.get(channels, "weight")?,
            &vb.get(channels, "bias")?,
            eps,
        )
    }

    /// The norm with `weight` and `bias`, one value per channel each.
    pub(crate) fn from_tensors(
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
    ) -> candle_core::Result<Self> {
        let (weight, bias) = (weight.to_vec1::<f32>()?, bias.to_vec1::<f32>()?);
        if weight.len() != bias.len() {
            candle_core::bail!(
                "{} weights and {} biases for one norm",
                weight.len(),
                bias.len()
            );
        }
        Ok(Self { weight, bias, eps })
    }
}

impl Module for ChannelNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.contiguous()?.apply_op1_no_bwd(self)
    }
}

impl ChannelNorm {
    /// A block of pixels' mean and `1 / √(var + ε)`; `row(channel)` is the block's values in
    /// that channel.
    fn statistics<'a>(
        &self,
        row: impl Fn(usize) -> &'a [f32],
        channels: usize,
        mean: &mut [f32],
        inv_std: &mut [f32],
    ) {
        for channel in 0..channels {
            for (m, x) in mean.iter_mut().zip(row(channel)) {
                *m += x;
            }
        }
        let n = channels as f32;
        for m in mean.iter_mut() {
            *m /= n;
        }
        for channel in 0..channels {
            for ((v, x), m) in inv_std.iter_mut().zip(row(channel)).zip(&*mean) {
                let d = x - m;
                *v += d * d;
            }
        }
        for v in inv_std.iter_mut() {
            *v = 1.0 / (*v / n + self.eps).sqrt();
        }
    }
}

impl CustomOp1 for ChannelNorm {
    fn name(&self) -> &'static str {
        "channel-layer-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = super::elementwise::contiguous_f32(storage, layout, "the channel layer norm")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != self.weight.len() || c == 0 {
            candle_core::bail!("input has {c} channels, the norm {}", self.weight.len());
        }
        let plane = h * w;
        // Per pixel: the mean, then 1 / √(var + ε).
        let mut mean = vec![0f32; b * plane];
        let mut inv_std = vec![0f32; b * plane];
        if plane > 0 {
            let images = mean
                .par_chunks_mut(plane)
                .zip(inv_std.par_chunks_mut(plane));
            images.enumerate().for_each(|(image, (mean, inv_std))| {
                let image_src = &src[image * c * plane..(image + 1) * c * plane];
                let blocks = mean
                    .par_chunks_mut(PIXEL_BLOCK)
                    .zip(inv_std.par_chunks_mut(PIXEL_BLOCK));
                blocks.enumerate().for_each(|(block, (mean, inv_std))| {
                    let (pixel, len) = (block * PIXEL_BLOCK, mean.len());
                    let row = |channel: usize| &image_src[channel * plane + pixel..][..len];
                    self.statistics(row, c, mean, inv_std);
                });
            });
        }
        let mut out = vec![0f32; b * c * plane];
        if plane > 0 {
            out.par_chunks_exact_mut(plane)
                .enumerate()
                .for_each(|(index, dst)| {
                    let (image, channel) = (index / c, index % c);
                    let x = &src[index * plane..(index + 1) * plane];
                    let mean = &mean[image * plane..(image + 1) * plane];
                    let inv_std = &inv_std[image * plane..(image + 1) * plane];
                    let (g, beta) = (self.weight[channel], self.bias[channel]);
                    for (((d, x), m), s) in dst.iter_mut().zip(x).zip(mean).zip(inv_std) {
                        *d = (x - m) * s * g + beta;
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use candle_transformers::models::segment_anything::LayerNorm2d;

    /// Against candle-transformers' `LayerNorm2d` on the same weights, for planes smaller
    /// than, equal to and not a multiple of the pixel block, and two images.
    #[test]
    fn matches_candles_layer_norm_2d() {
        let dev = Device::Cpu;
        for (b, c, h, w) in [
            (1, 8, 3, 5),
            (2, 16, 32, 16),
            (2, 5, 23, 29),
            (1, 256, 8, 8),
        ] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
            let reference = LayerNorm2d::new(c, 1e-6, vb.clone()).expect("reference");
            for var in varmap.all_vars() {
                let values = Tensor::randn(0f32, 1.0, var.shape(), &dev).expect("random");
                var.set(&values).expect("set");
            }
            let ours = ChannelNorm::new(c, 1e-6, vb).expect("ours");
            let x =
                (Tensor::randn(0f32, 3.0, (b, c, h, w), &dev).expect("x") + 1.5).expect("offset");
            let expected = reference.forward(&x).expect("candle");
            let got = ours.forward(&x).expect("ours");
            let diff = crate::segmentation::elementwise::tests::max_diff(&got, &expected);
            assert!(diff < 1e-4, "max difference {diff} at {b} {c} {h} {w}");
        }
    }
}
