//! whisper.cpp's large matrix products on the `gemm` crate's packed kernels, installed into
//! Dormouse's patched ggml (`cmake/whisper_patch.cmake`, change 5).
//!
//! ggml's llamafile kernels tile registers without packing the operands for the caches and
//! reach ~47 GFLOP/s a core on the development machine's AVX-512; the `gemm` crate (candle's
//! GEMM, built with its AVX-512 kernels) reaches ~155 on the encoder's shapes. ggml calls
//! [`packed_mul_mat`] from each thread of a product with at least 32 columns (the encoder's;
//! the decoder's few tokens stay with ggml); thread `ith` of `nth` computes its band of the
//! rows, converting that band of f16 weights to f32 first, so threads never wait on each other.
//! The products are computed in f32 (ggml rounds the columns to f16 for f16 weights).

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::sync::Once;

use half::f16;
use half::slice::HalfFloatSliceExt;

/// The hook's signature (`dormouse_mul_mat_fn` in the patch): `dst (cols × rows, row stride
/// dst_row_bytes) = src1 (cols × depth) · src0ᵀ (src0: rows × depth)`, every row contiguous.
type MulMatFn = unsafe extern "C" fn(
    ith: c_int,
    nth: c_int,
    rows: i64,
    cols: i64,
    depth: i64,
    src0_is_f16: c_int,
    src0: *const c_void,
    src0_row_bytes: usize,
    src1: *const f32,
    src1_row_bytes: usize,
    dst: *mut f32,
    dst_row_bytes: usize,
);

extern "C" {
    /// Defined by the patch in ggml-cpu.c; `None` gives the products back to ggml.
    fn dormouse_ggml_set_mul_mat(mul_mat: Option<MulMatFn>);
}

/// Whether this build hands whisper.cpp's large products to the packed kernels: on x86-64,
/// where they were measured faster (docs/benchmarks.md); elsewhere ggml keeps its own (NEON,
/// Accelerate).
pub(crate) const USED: bool = cfg!(target_arch = "x86_64");

static INSTALL: Once = Once::new();

/// Installs the packed products before the first model is loaded (so before any graph is
/// computed), where [`USED`].
pub(crate) fn install() {
    INSTALL.call_once(|| {
        if USED {
            set(true);
        }
    });
}

/// Hands whisper.cpp's large products to the packed kernels (`true`) or back to ggml's own.
/// Only between transcriptions: ggml reads the hook in each of a product's threads, so
/// changing it while a model transcribes could split one product between both paths.
pub(crate) fn set(packed: bool) {
    let hook: Option<MulMatFn> = if packed { Some(packed_mul_mat) } else { None };
    // SAFETY: the patch's setter stores the pointer; `packed_mul_mat` has its signature.
    unsafe { dormouse_ggml_set_mul_mat(hook) }
}

thread_local! {
    /// A band of f16 weights converted to f32, reused by the thread's next product.
    static BAND_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The product's shape in elements, validated; `None` for what the patch never sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    rows: usize,
    cols: usize,
    depth: usize,
    src0_stride: usize,
    src1_stride: usize,
    dst_stride: usize,
}

impl Shape {
    #[allow(clippy::too_many_arguments)]
    fn new(
        rows: i64,
        cols: i64,
        depth: i64,
        src0_elem: usize,
        src0_row_bytes: usize,
        src1_row_bytes: usize,
        dst_row_bytes: usize,
    ) -> Option<Self> {
        let elems = |bytes: usize, size: usize| bytes.is_multiple_of(size).then_some(bytes / size);
        let shape = Self {
            rows: usize::try_from(rows).ok()?,
            cols: usize::try_from(cols).ok()?,
            depth: usize::try_from(depth).ok()?,
            src0_stride: elems(src0_row_bytes, src0_elem)?,
            src1_stride: elems(src1_row_bytes, size_of::<f32>())?,
            dst_stride: elems(dst_row_bytes, size_of::<f32>())?,
        };
        // Rows no longer than their stride, and strides gemm can take as isize.
        let fits = shape.depth <= shape.src0_stride
            && shape.depth <= shape.src1_stride
            && shape.rows <= shape.dst_stride
            && isize::try_from(
                shape
                    .src0_stride
                    .max(shape.src1_stride)
                    .max(shape.dst_stride),
            )
            .is_ok()
            && shape.rows.checked_mul(shape.depth).is_some();
        fits.then_some(shape)
    }

    /// Thread `ith` of `nth`'s band of rows.
    fn band(&self, ith: usize, nth: usize) -> std::ops::Range<usize> {
        let at = |i: usize| {
            // rows × i / nth without overflow: rows and nth are far below 2^64 / 2^32.
            (self.rows as u128 * i as u128 / nth.max(1) as u128) as usize
        };
        at(ith)..at((ith + 1).min(nth))
    }
}

/// The hook ggml calls (see the module's comment). Aborts on a shape the patch's own checks
/// rule out, rather than leave the product unwritten: every thread must compute its band.
///
/// # Safety
/// ggml's contract: `src0` holds `rows` rows of `depth` f16 (`src0_is_f16`) or f32 values,
/// `src0_row_bytes` apart; `src1` holds `cols` rows of `depth` f32 values `src1_row_bytes`
/// apart; `dst` holds `cols` rows of `rows` f32 values `dst_row_bytes` apart, written only by
/// this call's threads, each in its own band of columns.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn packed_mul_mat(
    ith: c_int,
    nth: c_int,
    rows: i64,
    cols: i64,
    depth: i64,
    src0_is_f16: c_int,
    src0: *const c_void,
    src0_row_bytes: usize,
    src1: *const f32,
    src1_row_bytes: usize,
    dst: *mut f32,
    dst_row_bytes: usize,
) {
    let is_f16 = src0_is_f16 != 0;
    let elem = if is_f16 {
        size_of::<f16>()
    } else {
        size_of::<f32>()
    };
    let shape = Shape::new(
        rows,
        cols,
        depth,
        elem,
        src0_row_bytes,
        src1_row_bytes,
        dst_row_bytes,
    );
    let (Some(shape), Ok(ith), Ok(nth)) = (shape, usize::try_from(ith), usize::try_from(nth))
    else {
        tracing::error!(
            rows,
            cols,
            depth,
            "ggml sent a product the packed kernels cannot take"
        );
        std::process::abort();
    };
    let band = shape.band(ith, nth);
    if band.is_empty() || shape.cols == 0 || shape.depth == 0 {
        return;
    }
    // SAFETY: the caller's contract; the band lies inside the product's rows.
    unsafe {
        if is_f16 {
            let first = src0
                .cast::<u8>()
                .add(band.start * src0_row_bytes)
                .cast::<f16>();
            BAND_F32.with_borrow_mut(|converted| {
                converted.clear();
                converted.resize(band.len() * shape.depth, 0.0);
                for (r, out) in converted.chunks_exact_mut(shape.depth).enumerate() {
                    let row =
                        std::slice::from_raw_parts(first.add(r * shape.src0_stride), shape.depth);
                    row.convert_to_f32_slice(out);
                }
                product(
                    &shape,
                    band.clone(),
                    converted.as_ptr(),
                    shape.depth,
                    src1,
                    dst,
                );
            });
        } else {
            let first = src0.cast::<f32>().add(band.start * shape.src0_stride);
            product(&shape, band, first, shape.src0_stride, src1, dst);
        }
    }
}

/// `dst[c][band] = src1[c] · band_rows[j]` for every column `c`: one single-threaded packed
/// GEMM (gemm's m = the columns, n = the band's rows, k = the depth).
///
/// # Safety
/// `band_rows` holds the band's rows of `depth` f32 values `band_stride` apart; `src1` and
/// `dst` as [`packed_mul_mat`]'s.
unsafe fn product(
    shape: &Shape,
    band: std::ops::Range<usize>,
    band_rows: *const f32,
    band_stride: usize,
    src1: *const f32,
    dst: *mut f32,
) {
    // Strides fit isize (Shape::new), and band_stride is depth or src0's stride.
    let s = |v: usize| v as isize;
    // SAFETY: see the function's contract; gemm reads the band as rhs (k × n, element (k, j)
    // at j·band_stride + k) and writes dst's columns band.start.. of each row.
    unsafe {
        gemm::gemm(
            shape.cols,
            band.len(),
            shape.depth,
            dst.add(band.start),
            1,
            s(shape.dst_stride),
            false,
            src1,
            1,
            s(shape.src1_stride),
            band_rows,
            s(band_stride),
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's layout: `dst[c][r] = Σ_k src1[c][k] · src0[r][k]`, in f64.
    fn reference(
        src0: &[f32],
        src1: &[f32],
        rows: usize,
        cols: usize,
        depth: usize,
        s0: usize,
        s1: usize,
    ) -> Vec<f64> {
        let mut out = vec![0.0; cols * rows];
        for c in 0..cols {
            for r in 0..rows {
                out[c * rows + r] = (0..depth)
                    .map(|k| f64::from(src1[c * s1 + k]) * f64::from(src0[r * s0 + k]))
                    .sum();
            }
        }
        out
    }

    /// Runs the hook as ggml would: every thread of `nth` on the same product.
    #[allow(clippy::too_many_arguments)]
    fn run_threads(
        nth: usize,
        src0: &[u8],
        is_f16: bool,
        rows: usize,
        cols: usize,
        depth: usize,
        s0_bytes: usize,
        src1: &[f32],
        s1: usize,
        dst: &mut [f32],
        ds: usize,
    ) {
        let dst_addr = dst.as_mut_ptr() as usize;
        std::thread::scope(|scope| {
            for ith in 0..nth {
                scope.spawn(move || unsafe {
                    packed_mul_mat(
                        ith as c_int,
                        nth as c_int,
                        rows as i64,
                        cols as i64,
                        depth as i64,
                        c_int::from(is_f16),
                        src0.as_ptr().cast(),
                        s0_bytes,
                        src1.as_ptr(),
                        s1 * 4,
                        dst_addr as *mut f32,
                        ds * 4,
                    );
                });
            }
        });
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn f32_and_f16_weights_with_strided_rows_match_the_reference_on_any_thread_count() {
        // Odd sizes, rows padded past the depth, and a destination wider than the product.
        let (rows, cols, depth) = (37, 45, 70);
        let (s0, s1, ds) = (75, 72, rows + 3);
        let src0 = values(rows * s0, 1);
        let src1 = values(cols * s1, 2);
        let src0_f16: Vec<f16> = src0.iter().map(|&v| f16::from_f32(v)).collect();
        let src0_rounded: Vec<f32> = src0_f16.iter().map(|v| v.to_f32()).collect();
        for nth in [1, 2, 3, 8, 64] {
            for is_f16 in [false, true] {
                let mut dst = vec![f32::NAN; cols * ds];
                let (bytes, weights): (&[u8], &[f32]) = if is_f16 {
                    (bytemuck_f16(&src0_f16), &src0_rounded)
                } else {
                    (bytemuck_f32(&src0), &src0)
                };
                let elem = if is_f16 { 2 } else { 4 };
                run_threads(
                    nth,
                    bytes,
                    is_f16,
                    rows,
                    cols,
                    depth,
                    s0 * elem,
                    &src1,
                    s1,
                    &mut dst,
                    ds,
                );
                let want = reference(weights, &src1, rows, cols, depth, s0, s1);
                for c in 0..cols {
                    for r in 0..rows {
                        let got = f64::from(dst[c * ds + r]);
                        assert!(
                            (got - want[c * rows + r]).abs() < 1e-4,
                            "nth {nth}, f16 {is_f16}: dst[{c}][{r}] = {got}, want {}",
                            want[c * rows + r]
                        );
                    }
                    // The destination's padding is never written.
                    assert!(dst[c * ds + rows..(c + 1) * ds].iter().all(|v| v.is_nan()));
                }
            }
        }
    }

    #[test]
    fn shapes_the_patch_never_sends_are_refused() {
        // Row bytes that are not whole elements, rows longer than their stride, negative sizes.
        assert!(Shape::new(4, 4, 4, 2, 9, 16, 16).is_none());
        assert!(Shape::new(4, 4, 8, 4, 16, 32, 16).is_none());
        assert!(Shape::new(4, 4, 4, 4, 16, 16, 12).is_none());
        assert!(Shape::new(-1, 4, 4, 4, 16, 16, 16).is_none());
        assert!(Shape::new(4, 4, 4, 4, 16, 16, 16).is_some());
        // Bands cover the rows exactly, in order, whatever the thread count.
        let shape = Shape::new(1500, 32, 64, 4, 256, 256, 6000).expect("a valid shape");
        for nth in [1, 2, 7, 16, 3000] {
            let bands: Vec<_> = (0..nth).map(|i| shape.band(i, nth)).collect();
            assert_eq!(bands[0].start, 0);
            assert_eq!(bands[nth - 1].end, 1500);
            assert!(bands.windows(2).all(|w| w[0].end == w[1].start));
        }
    }

    fn bytemuck_f32(v: &[f32]) -> &[u8] {
        unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len() * 4) }
    }

    fn bytemuck_f16(v: &[f16]) -> &[u8] {
        unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len() * 2) }
    }
}
