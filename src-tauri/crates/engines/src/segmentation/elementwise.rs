//! The encoder's per-channel bias and GELU, applied in place to a tensor the encoder has just
//! produced, in one parallel, vectorised pass. candle adds a bias as a new tensor and runs its
//! GELU one element at a time through libm's `tanhf` on one thread: together about a quarter
//! of MobileSAM's encoder time in a profile (docs/benchmarks.md). The GELU is candle's
//! (the tanh form), with tanh from the rational approximation ONNX Runtime's MLAS and Eigen
//! use (error below 1e-6).

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

/// Elements per parallel task on channels-last data (whole rows are kept together).
const TASK_ELEMENTS: usize = 1 << 15;

/// Where an element's channel is found.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Channels {
    /// `(…, c, plane)`: each channel is a run of `plane` elements.
    First { plane: usize },
    /// `(…, c)`: each element's channel is its last index.
    Last,
}

/// Adds `bias` (one value per channel, if any), then applies GELU if `gelu`.
pub(crate) struct BiasGelu<'a> {
    pub(crate) bias: Option<&'a [f32]>,
    pub(crate) channels: Channels,
    pub(crate) gelu: bool,
}

impl BiasGelu<'_> {
    /// Applies it to `t`, which must own its storage (a tensor just computed, not a view
    /// shared with another).
    pub(crate) fn apply(&self, t: &Tensor) -> candle_core::Result<()> {
        if self.bias.is_some() || self.gelu {
            t.inplace_op1(self)?;
        }
        Ok(())
    }
}

impl InplaceOp1 for BiasGelu<'_> {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("bias and GELU run on f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("bias and GELU need a contiguous tensor");
        };
        let data = &mut data[start..end];
        let gelu = self.gelu;
        match (self.channels, self.bias) {
            (Channels::First { plane }, bias) => {
                if plane == 0 {
                    return Ok(());
                }
                let channels = bias.map_or(1, <[f32]>::len);
                if data.len() % (plane * channels) != 0 {
                    candle_core::bail!(
                        "{} elements are not whole planes of {plane} × {channels} channels",
                        data.len()
                    );
                }
                data.par_chunks_mut(plane).enumerate().for_each(|(i, run)| {
                    let b = bias.map_or(0.0, |b| b[i % channels]);
                    bias_gelu_run(run, b, gelu);
                });
            }
            (Channels::Last, Some(bias)) => {
                let c = bias.len();
                if c == 0 || data.len() % c != 0 {
                    candle_core::bail!("{} elements are not whole rows of {c}", data.len());
                }
                let rows = (TASK_ELEMENTS / c).max(1);
                data.par_chunks_mut(rows * c).for_each(|chunk| {
                    for row in chunk.chunks_exact_mut(c) {
                        bias_gelu_row(row, bias, gelu);
                    }
                });
            }
            (Channels::Last, None) => {
                data.par_chunks_mut(TASK_ELEMENTS)
                    .for_each(|run| bias_gelu_run(run, 0.0, gelu));
            }
        }
        Ok(())
    }
}

/// A residual connection added in place: `dst += bias + src` (the bias channels last, if
/// any), then GELU if `gelu`, in one parallel pass (candle's `+` writes a new tensor, and the
/// bias and GELU around it were passes of their own).
pub(crate) struct AddInPlace<'a> {
    pub(crate) bias: Option<&'a [f32]>,
    pub(crate) gelu: bool,
}

impl AddInPlace<'_> {
    /// Adds `src` into `dst`, which must own its storage (a tensor just computed); both have
    /// one shape.
    pub(crate) fn apply(&self, dst: &Tensor, src: &Tensor) -> candle_core::Result<()> {
        if dst.dims() != src.dims() {
            candle_core::bail!("cannot add {:?} into {:?}", src.dims(), dst.dims());
        }
        dst.inplace_op2(&src.contiguous()?, self)
    }
}

impl InplaceOp2 for AddInPlace<'_> {
    fn name(&self) -> &'static str {
        "add-in-place"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_layout: &Layout,
        src: &CpuStorage,
        src_layout: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(dst), CpuStorage::F32(src)) = (dst, src) else {
            candle_core::bail!("the in-place add runs on f32 only");
        };
        let (Some((d0, d1)), Some((s0, s1))) = (
            dst_layout.contiguous_offsets(),
            src_layout.contiguous_offsets(),
        ) else {
            candle_core::bail!("the in-place add needs contiguous tensors");
        };
        let (dst, src) = (&mut dst[d0..d1], &src[s0..s1]);
        if dst.len() != src.len() {
            candle_core::bail!("cannot add {} values into {}", src.len(), dst.len());
        }
        let gelu = self.gelu;
        match self.bias {
            None => dst
                .par_chunks_mut(TASK_ELEMENTS)
                .zip(src.par_chunks(TASK_ELEMENTS))
                .for_each(|(d, s)| add_run(d, s, gelu)),
            Some(bias) => {
                let c = bias.len();
                if c == 0 || dst.len() % c != 0 {
                    candle_core::bail!("{} elements are not whole rows of {c}", dst.len());
                }
                let task = (TASK_ELEMENTS / c).max(1) * c;
                dst.par_chunks_mut(task)
                    .zip(src.par_chunks(task))
                    .for_each(|(d, s)| {
                        for (d, s) in d.chunks_exact_mut(c).zip(s.chunks_exact(c)) {
                            bias_residual_row(d, bias, s, gelu);
                        }
                    });
            }
        }
        Ok(())
    }
}

#[inline(always)]
fn add_generic(dst: &mut [f32], src: &[f32], with_gelu: bool) {
    if with_gelu {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = gelu(*d + s);
        }
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

pub(crate) fn add_run(dst: &mut [f32], src: &[f32], gelu: bool) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { avx2::add(dst, src, gelu) };
        return;
    }
    add_generic(dst, src, gelu)
}

/// tanh by a 13/6 rational function on [-9, 9] (MLAS's `MlasTanhKernel`, Eigen's
/// `generic_fast_tanh_float`); only arithmetic, so loops over it vectorise.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as published
fn tanh(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let mut p = x2 * -2.76076847742355e-16 + 2.00018790482477e-13;
    p = x2 * p + -8.60467152213735e-11;
    p = x2 * p + 5.12229709037114e-08;
    p = x2 * p + 1.48572235717979e-05;
    p = x2 * p + 6.37261928875436e-04;
    p = x2 * p + 4.89352455891786e-03;
    p *= x;
    let mut q = x2 * 1.19825839466702e-06 + 1.18534705686654e-04;
    q = x2 * q + 2.26843463243900e-03;
    q = x2 * q + 4.89352518554385e-03;
    p / q
}

/// candle's GELU: 0.5 x (1 + tanh(√(2/π) x (1 + 0.044715 x²))).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_TWO_OVER_PI * x * (1.0 + 0.044_715 * x * x)))
}

#[inline(always)]
pub(crate) fn run_generic(run: &mut [f32], bias: f32, with_gelu: bool) {
    if with_gelu {
        for x in run {
            *x = gelu(*x + bias);
        }
    } else {
        for x in run {
            *x += bias;
        }
    }
}

#[inline(always)]
fn row_generic(row: &mut [f32], bias: &[f32], with_gelu: bool) {
    if with_gelu {
        for (x, b) in row.iter_mut().zip(bias) {
            *x = gelu(*x + b);
        }
    } else {
        for (x, b) in row.iter_mut().zip(bias) {
            *x += b;
        }
    }
}

/// The same loops compiled for AVX2 (8 lanes), chosen at run time.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn run(run: &mut [f32], bias: f32, gelu: bool) {
        super::run_generic(run, bias, gelu)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn row(row: &mut [f32], bias: &[f32], gelu: bool) {
        super::row_generic(row, bias, gelu)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn add(dst: &mut [f32], src: &[f32], gelu: bool) {
        super::add_generic(dst, src, gelu)
    }
}

/// The values of a contiguous f32 tensor handed to one of the encoder's custom ops (`op` names
/// it in the error otherwise).
pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} runs on f32 only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} needs a contiguous input");
    };
    Ok(&data[start..end])
}

/// Whether the AVX2 + FMA builds of the loops can run here (x86-64 only; elsewhere the
/// generic loops are compiled for the target's own vectors, NEON on Apple silicon).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

pub(crate) fn bias_gelu_run(run: &mut [f32], bias: f32, gelu: bool) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { avx2::run(run, bias, gelu) };
        return;
    }
    run_generic(run, bias, gelu)
}

/// One channels-last row: `row += bias + residual`, then GELU if `gelu`.
pub(crate) fn bias_residual_row(row: &mut [f32], bias: &[f32], residual: &[f32], gelu: bool) {
    bias_gelu_row(row, bias, false);
    add_run(row, residual, gelu);
}

pub(crate) fn bias_gelu_row(row: &mut [f32], bias: &[f32], gelu: bool) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { avx2::row(row, bias, gelu) };
        return;
    }
    row_generic(row, bias, gelu)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::Device;

    /// The largest absolute difference between two tensors of one shape.
    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .expect("sub")
            .abs()
            .expect("abs")
            .flatten_all()
            .expect("flat")
            .max(0)
            .expect("max")
            .to_scalar::<f32>()
            .expect("scalar")
    }

    #[test]
    fn adds_in_place_with_and_without_gelu() {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (3, 70_001), &dev).expect("a");
        let b = Tensor::randn(0f32, 1.0, (3, 70_001), &dev).expect("b");
        for gelu in [false, true] {
            let expected = (&a + &b).expect("add");
            let expected = if gelu {
                expected.gelu().expect("gelu")
            } else {
                expected
            };
            let dst = a.copy().expect("copy");
            AddInPlace { bias: None, gelu }
                .apply(&dst, &b)
                .expect("in place");
            assert!(max_diff(&dst, &expected) < 1e-5, "gelu {gelu}");
        }
        // A transposed source is read in its logical order.
        let square = Tensor::randn(0f32, 1.0, (64, 64), &dev).expect("square");
        let dst = square.copy().expect("copy");
        let t = square.t().expect("t");
        AddInPlace {
            bias: None,
            gelu: false,
        }
        .apply(&dst, &t)
        .expect("transposed");
        assert!(max_diff(&dst, &(&square + &t).expect("add")) < 1e-6);
        let wrong = Tensor::zeros((3, 5), candle_core::DType::F32, &dev).expect("wrong");
        let plain = AddInPlace {
            bias: None,
            gelu: false,
        };
        assert!(plain.apply(&dst, &wrong).is_err());
        // A bias per channel (channels last), with and without GELU after the sum.
        let bias: Vec<f32> = (0..64).map(|i| i as f32 / 32.0 - 1.0).collect();
        let b_t = Tensor::new(bias.as_slice(), &dev).expect("bias");
        for gelu in [false, true] {
            let expected = (square.broadcast_add(&b_t).expect("bias") + &t).expect("add");
            let expected = if gelu {
                expected.gelu().expect("gelu")
            } else {
                expected
            };
            let dst = square.copy().expect("copy");
            AddInPlace {
                bias: Some(&bias),
                gelu,
            }
            .apply(&dst, &t)
            .expect("with bias");
            assert!(max_diff(&dst, &expected) < 1e-5, "bias, gelu {gelu}");
        }
        let short = AddInPlace {
            bias: Some(&bias[..60]),
            gelu: false,
        };
        assert!(
            short.apply(&square.copy().expect("copy"), &t).is_err(),
            "60 biases, rows of 64"
        );
    }

    #[test]
    fn gelu_matches_candles_everywhere_it_matters() {
        let xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 / 1000.0).collect();
        let t = Tensor::new(xs.as_slice(), &Device::Cpu).expect("t");
        let reference = t.gelu().expect("candle");
        let ours = t.copy().expect("copy");
        BiasGelu {
            bias: None,
            channels: Channels::Last,
            gelu: true,
        }
        .apply(&ours)
        .expect("ours");
        assert!(
            max_diff(&ours, &reference) < 2e-6,
            "{}",
            max_diff(&ours, &reference)
        );
        assert_eq!(gelu(0.0), 0.0);
    }

    #[test]
    fn bias_is_added_per_channel_in_either_layout() {
        let dev = Device::Cpu;
        let bias = [0.5f32, -1.0, 2.0];
        let b = Tensor::new(&bias, &dev).expect("bias");
        // Channels first: (2, 3, 5).
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5), &dev).expect("x");
        let reference = x
            .broadcast_add(&b.reshape((1, 3, 1)).expect("r"))
            .expect("add")
            .gelu()
            .expect("gelu");
        let ours = x.copy().expect("copy");
        BiasGelu {
            bias: Some(&bias),
            channels: Channels::First { plane: 5 },
            gelu: true,
        }
        .apply(&ours)
        .expect("ours");
        assert!(max_diff(&ours, &reference) < 1e-5);
        // Channels last: (4, 7, 3), bias only.
        let x = Tensor::randn(0f32, 1.0, (4, 7, 3), &dev).expect("x");
        let reference = x.broadcast_add(&b).expect("add");
        let ours = x.copy().expect("copy");
        BiasGelu {
            bias: Some(&bias),
            channels: Channels::Last,
            gelu: false,
        }
        .apply(&ours)
        .expect("ours");
        assert!(max_diff(&ours, &reference) < 1e-6);
        // A size that is not whole rows is refused.
        let odd = Tensor::zeros(7, candle_core::DType::F32, &dev).expect("odd");
        assert!(BiasGelu {
            bias: Some(&bias),
            channels: Channels::Last,
            gelu: false,
        }
        .apply(&odd)
        .is_err());
    }
}
