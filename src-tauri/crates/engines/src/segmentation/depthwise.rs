//! The depthwise convolution kernel of MobileSAM's encoder: one `k × k` filter per channel,
//! f32, NCHW, on the CPU. candle 0.11 runs a grouped convolution as one convolution per group
//! (`Tensor::chunk` then `conv2d` on each), so TinyViT's depthwise layers (up to 256 groups of
//! one channel over a 256 × 256 plane) cost thousands of tiny im2col + GEMM calls; this kernel
//! does the same arithmetic in one pass, a plane per task.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// A depthwise convolution with its bias (batch norm folded in by the caller).
#[derive(Debug)]
pub(crate) struct DepthwiseConv2d {
    /// `channels × k × k`.
    weight: Vec<f32>,
    /// The same weights tap-major, `k × k × channels`, for channels-last input.
    taps: Vec<f32>,
    /// `channels`.
    bias: Vec<f32>,
    channels: usize,
    k: usize,
    stride: usize,
    padding: usize,
    /// Apply GELU to the result (fused: the plane is still in cache).
    gelu: bool,
}

impl DepthwiseConv2d {
    /// `weight` is `(channels, 1, k, k)`, `bias` is `(channels,)`.
    pub(crate) fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        padding: usize,
    ) -> candle_core::Result<Self> {
        let (channels, one, k, k2) = weight.dims4()?;
        if one != 1 || k != k2 || stride == 0 || padding >= k {
            candle_core::bail!(
                "depthwise convolution needs a (c, 1, k, k) weight, stride ≥ 1 and padding < k; got {:?}, stride {stride}, padding {padding}",
                weight.dims()
            );
        }
        let weight = weight.flatten_all()?.to_vec1::<f32>()?;
        let taps = (0..k * k)
            .flat_map(|tap| (0..channels).map(move |c| (tap, c)))
            .map(|(tap, c)| weight[c * k * k + tap])
            .collect();
        Ok(Self {
            weight,
            taps,
            bias: bias.to_vec1::<f32>()?,
            channels,
            k,
            stride,
            padding,
            gelu: false,
        })
    }

    /// The same convolution followed by GELU.
    pub(crate) fn then_gelu(mut self) -> Self {
        self.gelu = true;
        self
    }

    fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.padding).saturating_sub(self.k) / self.stride + 1
    }

    /// One channel's output rows: `dst` holds `dst.len() / ow` rows from `span.out_first`, of an
    /// image `span.h` rows high; `src` holds the input rows from `span.src_first`, every row
    /// those outputs read.
    pub(crate) fn rows(
        &self,
        channel: usize,
        src: &[f32],
        span: RowSpan,
        w: usize,
        dst: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if super::elementwise::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { self.rows_avx2(channel, src, span, w, dst) };
            return;
        }
        self.rows_generic(channel, src, span, w, dst)
    }

    /// [`Self::rows`] compiled for AVX2 (8 lanes).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn rows_avx2(&self, channel: usize, src: &[f32], span: RowSpan, w: usize, dst: &mut [f32]) {
        self.rows_generic(channel, src, span, w, dst)
    }

    #[inline(always)]
    fn rows_generic(&self, channel: usize, src: &[f32], span: RowSpan, w: usize, dst: &mut [f32]) {
        let (k, s, p) = (self.k, self.stride, self.padding);
        let h = span.h;
        let ow = self.out_side(w);
        let filter = &self.weight[channel * k * k..(channel + 1) * k * k];
        dst.fill(self.bias[channel]);
        for (local, row) in dst.chunks_exact_mut(ow).enumerate() {
            let oy = span.out_first + local;
            for ky in 0..k {
                // Input row oy·s + ky − p, skipped where it falls in the padding.
                let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < h) else {
                    continue;
                };
                let at = (iy - span.src_first) * w;
                let src_row = &src[at..at + w];
                for kx in 0..k {
                    let wv = filter[ky * k + kx];
                    // Output columns whose input column ox·s + kx − p lies inside the row.
                    let first = p.saturating_sub(kx).div_ceil(s);
                    let last = (w + p).saturating_sub(kx).div_ceil(s).min(ow); // exclusive
                    if first >= last {
                        continue;
                    }
                    if s == 1 {
                        let start = first + kx - p;
                        let src_part = &src_row[start..start + (last - first)];
                        for (d, x) in row[first..last].iter_mut().zip(src_part) {
                            *d += wv * x;
                        }
                    } else {
                        for (ox, d) in row.iter_mut().enumerate().take(last).skip(first) {
                            *d += wv * src_row[ox * s + kx - p];
                        }
                    }
                }
            }
        }
        if self.gelu {
            super::elementwise::run_generic(dst, 0.0, true);
        }
    }

    /// The filter's side, its padding and its stride.
    pub(crate) fn geometry(&self) -> (usize, usize, usize) {
        (self.k, self.padding, self.stride)
    }

    pub(crate) fn channels(&self) -> usize {
        self.channels
    }
}

/// Which output rows [`DepthwiseConv2d::rows`] computes and which input rows it is given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowSpan {
    /// The first output row computed.
    pub(crate) out_first: usize,
    /// The image row that `src` starts with.
    pub(crate) src_first: usize,
    /// The image's height.
    pub(crate) h: usize,
}

/// The same convolution on channels-last tokens, `(b, h · w, c)` in and out, for a stride of
/// 1 and "same" padding: TinyViT's local convolution, which then needs no transpose on either
/// side. A task per output row; each tap is a vectorised pass over the channels.
#[derive(Debug)]
pub(crate) struct ChannelsLast<'a> {
    pub(crate) conv: &'a DepthwiseConv2d,
    /// Rows and columns of the token grid.
    pub(crate) grid: (usize, usize),
}

impl ChannelsLast<'_> {
    fn row(&self, src: &[f32], y: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::elementwise::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { self.row_avx2(src, y, dst) };
            return;
        }
        self.row_generic(src, y, dst)
    }

    /// [`Self::row`] compiled for AVX2 (8 lanes).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2(&self, src: &[f32], y: usize, dst: &mut [f32]) {
        self.row_generic(src, y, dst)
    }

    /// Output row `y` of one image: `src` is the image's `h × w × c` tokens, `dst` `w × c`.
    #[inline(always)]
    fn row_generic(&self, src: &[f32], y: usize, dst: &mut [f32]) {
        let conv = self.conv;
        let (h, w) = self.grid;
        let (c, k, p) = (conv.channels, conv.k, conv.padding);
        for pixel in dst.chunks_exact_mut(c) {
            pixel.copy_from_slice(&conv.bias);
        }
        for ky in 0..k {
            let Some(iy) = (y + ky).checked_sub(p).filter(|&iy| iy < h) else {
                continue;
            };
            let src_row = &src[iy * w * c..(iy + 1) * w * c];
            for kx in 0..k {
                let taps = &conv.taps[(ky * k + kx) * c..][..c];
                // Output columns whose input column x + kx − p lies inside the row.
                let first = p.saturating_sub(kx);
                let last = (w + p).saturating_sub(kx).min(w); // exclusive
                for x in first..last {
                    let from = (x + kx - p) * c;
                    let input = &src_row[from..from + c];
                    for ((d, t), v) in dst[x * c..(x + 1) * c].iter_mut().zip(taps).zip(input) {
                        *d = t.mul_add(*v, *d);
                    }
                }
            }
        }
        if conv.gelu {
            super::elementwise::run_generic(dst, 0.0, true);
        }
    }
}

impl CustomOp1 for ChannelsLast<'_> {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-channels-last"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = super::elementwise::contiguous_f32(storage, layout, "depthwise convolution")?;
        let conv = self.conv;
        if conv.stride != 1 || 2 * conv.padding + 1 != conv.k {
            candle_core::bail!(
                "channels-last depthwise convolution needs stride 1 and same padding (k {}, stride {}, padding {})",
                conv.k,
                conv.stride,
                conv.padding
            );
        }
        let (b, l, c) = layout.shape().dims3()?;
        let (h, w) = self.grid;
        if l != h * w || c != conv.channels {
            candle_core::bail!(
                "input is {:?}; a {h} × {w} grid of {} channels needs (b, {}, {})",
                layout.shape().dims(),
                conv.channels,
                h * w,
                conv.channels
            );
        }
        let mut out = vec![0f32; b * l * c];
        if w > 0 && c > 0 {
            out.par_chunks_exact_mut(w * c)
                .enumerate()
                .for_each(|(row, dst)| {
                    let (image, y) = (row / h, row % h);
                    self.row(&src[image * l * c..(image + 1) * l * c], y, dst);
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, l, c))))
    }
}

impl CustomOp1 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = super::elementwise::contiguous_f32(storage, layout, "depthwise convolution")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != self.channels {
            candle_core::bail!("input has {c} channels, the filter {}", self.channels);
        }
        if h + 2 * self.padding < self.k || w + 2 * self.padding < self.k {
            candle_core::bail!(
                "a {h} × {w} plane is smaller than the {0} × {0} filter",
                self.k
            );
        }
        let (oh, ow) = (self.out_side(h), self.out_side(w));
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_exact_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, dst)| {
                let src = &src[plane * h * w..(plane + 1) * h * w];
                let whole = RowSpan {
                    out_first: 0,
                    src_first: 0,
                    h,
                };
                self.rows(plane % c, src, whole, w, dst);
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};
    use candle_nn::Conv2dConfig;

    /// The kernel against candle's own grouped convolution, on shapes with odd sides,
    /// both strides and padding 0 and 1.
    #[test]
    fn matches_candles_grouped_convolution() {
        let dev = Device::Cpu;
        for (c, h, w, k, stride, padding) in [
            (4, 9, 7, 3, 1, 1),
            (3, 10, 13, 3, 2, 1),
            (2, 5, 5, 3, 1, 0),
            (5, 8, 6, 3, 2, 0),
            (2, 3, 4, 3, 1, 1),
            (2, 1, 1, 5, 1, 2),
            (1, 1, 1, 1, 1, 0),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).expect("x");
            let weight = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).expect("w");
            let bias = Tensor::randn(0f32, 1.0, c, &dev).expect("b");
            let cfg = Conv2dConfig {
                padding,
                stride,
                groups: c,
                ..Default::default()
            };
            let reference = candle_nn::Conv2d::new(weight.clone(), Some(bias.clone()), cfg)
                .forward(&x)
                .expect("candle");
            let op = DepthwiseConv2d::new(&weight, &bias, stride, padding).expect("op");
            let ours = x.apply_op1_no_bwd(&op).expect("ours");
            assert_eq!(
                ours.dims(),
                reference.dims(),
                "{c} {h} {w} s{stride} p{padding}"
            );
            let diff = crate::segmentation::elementwise::tests::max_diff(&ours, &reference);
            assert!(
                diff < 1e-4,
                "max difference {diff} at {c} {h} {w} s{stride} p{padding}"
            );
        }
    }

    /// The channels-last path against the planar one on the same tokens (odd sides, two
    /// images, 3 × 3 and 5 × 5 filters, with and without GELU).
    #[test]
    fn channels_last_matches_the_planar_kernel() {
        let dev = Device::Cpu;
        for (c, h, w, k, gelu) in [
            (8, 9, 7, 3, false),
            (12, 5, 11, 3, true),
            (3, 6, 6, 5, false),
            (16, 1, 1, 3, false),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, h * w, c), &dev).expect("x");
            let weight = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).expect("w");
            let bias = Tensor::randn(0f32, 1.0, c, &dev).expect("b");
            let op = DepthwiseConv2d::new(&weight, &bias, 1, k / 2).expect("op");
            let op = if gelu { op.then_gelu() } else { op };
            let planar = x
                .transpose(1, 2)
                .and_then(|t| t.reshape((2, c, h, w)))
                .and_then(|t| t.apply_op1_no_bwd(&op))
                .and_then(|t| t.reshape((2, c, h * w))?.transpose(1, 2))
                .expect("planar");
            let ours = x
                .apply_op1_no_bwd(&ChannelsLast {
                    conv: &op,
                    grid: (h, w),
                })
                .expect("channels last");
            assert_eq!(ours.dims(), planar.dims());
            let diff = crate::segmentation::elementwise::tests::max_diff(&ours, &planar);
            assert!(diff < 1e-5, "max difference {diff} at {c} {h} {w} k{k}");
        }
        let op = DepthwiseConv2d::new(
            &Tensor::zeros((4, 1, 3, 3), candle_core::DType::F32, &dev).expect("w"),
            &Tensor::zeros(4, candle_core::DType::F32, &dev).expect("b"),
            2,
            1,
        )
        .expect("op");
        let x = Tensor::zeros((1, 16, 4), candle_core::DType::F32, &dev).expect("x");
        let strided = ChannelsLast {
            conv: &op,
            grid: (4, 4),
        };
        assert!(x.apply_op1_no_bwd(&strided).is_err(), "stride 2");
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((2, 2, 3, 3), candle_core::DType::F32, &dev).expect("w");
        let b = Tensor::zeros(2, candle_core::DType::F32, &dev).expect("b");
        assert!(
            DepthwiseConv2d::new(&w, &b, 1, 1).is_err(),
            "two inputs per group"
        );
        let w = Tensor::zeros((2, 1, 3, 3), candle_core::DType::F32, &dev).expect("w");
        let op = DepthwiseConv2d::new(&w, &b, 1, 1).expect("op");
        let x = Tensor::zeros((1, 3, 4, 4), candle_core::DType::F32, &dev).expect("x");
        assert!(x.apply_op1_no_bwd(&op).is_err(), "channel count");
        let x = Tensor::zeros((1, 2, 4, 4), candle_core::DType::F64, &dev).expect("x");
        assert!(x.apply_op1_no_bwd(&op).is_err(), "f64");
    }
}
