//! TinyViT's MBConv block (1 × 1 expansion, 3 × 3 depthwise, 1 × 1 projection, residual) in
//! bands of rows. Run layer by layer at MobileSAM's first stage (64 → 256 → 64 channels over
//! 256 × 256), the block writes two 64 MiB tensors — the expansion and the depthwise output
//! — each a fresh mapping whose pages fault in, then reads them back from memory. Here the
//! expansion and depthwise of sixteen rows at a time (plus a row of halo on each side) go
//! into two buffers of a few megabytes that every band reuses, and the projection writes
//! straight into the output rows, with the bias, the residual and the GELU in one pass over
//! them. The arithmetic is the same as the layer-by-layer block's (a test compares them).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::depthwise::{DepthwiseConv2d, RowSpan};
use super::product::{matmul_into, Threads};

/// Output rows per band: the expansion of a band and its halo stays within a few megabytes.
const BAND_ROWS: usize = 16;

/// One MBConv block's weights, batch norms folded in.
#[derive(Debug)]
pub(crate) struct BandedMbConv<'a> {
    /// `(hidden, channels)` row-major, and its bias; GELU follows.
    pub(crate) expand: (&'a [f32], &'a [f32]),
    /// The depthwise convolution over `hidden` channels, its GELU fused in.
    pub(crate) depthwise: &'a DepthwiseConv2d,
    /// `(channels, hidden)` row-major, and its bias; the residual and GELU follow.
    pub(crate) project: (&'a [f32], &'a [f32]),
}

impl BandedMbConv<'_> {
    /// One image: `src` and `dst` are `channels × h × w`.
    fn image(&self, src: &[f32], dst: &mut [f32], h: usize, w: usize) -> candle_core::Result<()> {
        let (expand, expand_bias) = self.expand;
        let (project, project_bias) = self.project;
        let hidden = expand_bias.len();
        let channels = project_bias.len();
        let plane = h * w;
        let mut expanded = vec![0f32; hidden * (BAND_ROWS + 2) * w];
        let mut filtered = vec![0f32; hidden * BAND_ROWS * w];
        for y0 in (0..h).step_by(BAND_ROWS) {
            let y1 = (y0 + BAND_ROWS).min(h);
            // The expansion of the band's rows and one row either side (inside the image).
            let (top, bottom) = (y0.saturating_sub(1), (y1 + 1).min(h));
            let in_len = (bottom - top) * w;
            let expanded = &mut expanded[..hidden * in_len];
            matmul_into(
                Threads::All,
                (hidden, in_len, channels),
                expanded,
                in_len,
                expand,
                channels,
                &src[top * w..],
                plane,
            )?;
            expanded
                .par_chunks_exact_mut(in_len)
                .zip(expand_bias)
                .for_each(|(row, &b)| super::elementwise::bias_gelu_run(row, b, true));
            // The depthwise convolution (and its GELU) of the band's own rows.
            let out_len = (y1 - y0) * w;
            let filtered = &mut filtered[..hidden * out_len];
            let span = RowSpan {
                out_first: y0,
                src_first: top,
                h,
            };
            filtered
                .par_chunks_exact_mut(out_len)
                .zip(expanded.par_chunks_exact(in_len))
                .enumerate()
                .for_each(|(channel, (dst, src))| self.depthwise.rows(channel, src, span, w, dst));
            // The projection into the output rows, then bias + residual + GELU there.
            matmul_into(
                Threads::All,
                (channels, out_len, hidden),
                &mut dst[y0 * w..],
                plane,
                project,
                hidden,
                filtered,
                out_len,
            )?;
            dst.par_chunks_exact_mut(plane)
                .zip(src.par_chunks_exact(plane))
                .zip(project_bias)
                .for_each(|((out, input), &b)| {
                    let out = &mut out[y0 * w..y1 * w];
                    super::elementwise::bias_gelu_run(out, b, false);
                    super::elementwise::add_run(out, &input[y0 * w..y1 * w], true);
                });
        }
        Ok(())
    }
}

impl CustomOp1 for BandedMbConv<'_> {
    fn name(&self) -> &'static str {
        "mbconv-banded"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = super::elementwise::contiguous_f32(storage, layout, "the MBConv block")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        let (expand, expand_bias) = self.expand;
        let (project, project_bias) = self.project;
        let hidden = expand_bias.len();
        if c != project_bias.len()
            || expand.len() != hidden * c
            || project.len() != c * hidden
            || self.depthwise.channels() != hidden
            || self.depthwise.geometry() != (3, 1, 1)
        {
            candle_core::bail!(
                "an MBConv block over {c} channels needs ({hidden}, {c}) and ({c}, {hidden}) projections and a 3 × 3 depthwise filter of stride 1"
            );
        }
        let image = c * h * w;
        let mut out = vec![0f32; b * image];
        if image > 0 {
            for (src, dst) in src.chunks_exact(image).zip(out.chunks_exact_mut(image)) {
                self.image(src, dst, h, w)?;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn random(len: usize) -> Vec<f32> {
        Tensor::randn(0f32, 0.3, len, &Device::Cpu)
            .and_then(|t| t.to_vec1::<f32>())
            .expect("random values")
    }

    /// The block layer by layer with candle's products and our per-layer kernels, against the
    /// banded one: heights above, below and not a multiple of the band, two images.
    #[test]
    fn matches_the_block_computed_layer_by_layer() {
        let dev = Device::Cpu;
        for (b, c, hidden, h, w) in [(1, 8, 32, 37, 11), (2, 4, 16, 5, 9), (1, 6, 24, 32, 3)] {
            let (w1, b1, w3, b3) = (
                random(hidden * c),
                random(hidden),
                random(c * hidden),
                random(c),
            );
            let dw_weight = Tensor::randn(0f32, 0.3, (hidden, 1, 3, 3), &dev).expect("w");
            let dw_bias = Tensor::randn(0f32, 0.3, hidden, &dev).expect("b");
            let depthwise = DepthwiseConv2d::new(&dw_weight, &dw_bias, 1, 1)
                .expect("depthwise")
                .then_gelu();
            let x = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).expect("x");

            let layer = |x: &Tensor| -> candle_core::Result<Tensor> {
                let w1 = Tensor::from_slice(&w1, (hidden, c), &dev)?;
                let b1 = Tensor::from_slice(&b1, (1, hidden, 1, 1), &dev)?;
                let w3 = Tensor::from_slice(&w3, (c, hidden), &dev)?;
                let b3 = Tensor::from_slice(&b3, (1, c, 1, 1), &dev)?;
                let expanded = w1
                    .broadcast_matmul(&x.reshape((b, c, h * w))?)?
                    .reshape((b, hidden, h, w))?
                    .broadcast_add(&b1)?
                    .gelu()?;
                let filtered = expanded.apply_op1_no_bwd(&depthwise)?;
                let projected = w3
                    .broadcast_matmul(&filtered.reshape((b, hidden, h * w))?)?
                    .reshape((b, c, h, w))?
                    .broadcast_add(&b3)?;
                (projected + x)?.gelu()
            };
            let expected = layer(&x).expect("layer by layer");
            let banded = BandedMbConv {
                expand: (&w1, &b1),
                depthwise: &depthwise,
                project: (&w3, &b3),
            };
            let ours = x.apply_op1_no_bwd(&banded).expect("banded");
            let diff = crate::segmentation::elementwise::tests::max_diff(&ours, &expected);
            assert!(
                diff < 1e-4,
                "max difference {diff} at {b} {c} {hidden} {h} {w}"
            );
        }
    }

    #[test]
    fn refuses_weights_of_another_shape() {
        let dev = Device::Cpu;
        let depthwise = DepthwiseConv2d::new(
            &Tensor::zeros((8, 1, 3, 3), candle_core::DType::F32, &dev).expect("w"),
            &Tensor::zeros(8, candle_core::DType::F32, &dev).expect("b"),
            1,
            1,
        )
        .expect("depthwise");
        let (w1, b1, w3, b3) = (
            vec![0.0; 8 * 4],
            vec![0.0; 8],
            vec![0.0; 4 * 8],
            vec![0.0; 4],
        );
        let banded = BandedMbConv {
            expand: (&w1, &b1),
            depthwise: &depthwise,
            project: (&w3, &b3),
        };
        let x = Tensor::zeros((1, 5, 6, 6), candle_core::DType::F32, &dev).expect("x");
        assert!(
            x.apply_op1_no_bwd(&banded).is_err(),
            "five channels, weights for four"
        );
    }
}
