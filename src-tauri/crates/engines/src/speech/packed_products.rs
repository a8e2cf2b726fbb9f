//! whisper.cpp's large matrix products on the `gemm` crate's packed kernels, installed into
//! Dormouse's patched ggml (`cmake/whisper_patch.cmake`, change 5).
//!
//! ggml's llamafile kernels tile registers without packing the operands for the caches and
//! reach ~47 GFLOP/s a core on the development machine's AVX-512; the `gemm` crate (candle's
//! GEMM, built with its AVX-512 kernels) reaches ~155 on the encoder's shapes. ggml calls
//! [`packed_mul_mat`] from each thread of a product with at least 32 columns (the encoder's;
//! the decoder's few tokens stay with ggml); thread `ith` of `nth` computes its band of the
//! rows, converting that band of f16 or q8_0 weights to f32 first, so threads never wait on
//! each other. The products are computed in f32 (ggml rounds the columns to the weights'
//! type for its own kernels).

use std::ffi::{c_int, c_void};
use std::ops::Range;
use std::sync::Once;

use half::f16;
use half::slice::HalfFloatSliceExt;
use parking_lot::Mutex;

/// The hook's signature (`dormouse_mul_mat_fn` in the patch): `dst (cols × rows, row stride
/// dst_row_bytes) = src1 (cols × depth) · src0ᵀ (src0: rows × depth of type `src0_type`,
/// ggml's numbering)`, every row contiguous.
type MulMatFn = unsafe extern "C" fn(
    ith: c_int,
    nth: c_int,
    rows: i64,
    cols: i64,
    depth: i64,
    src0_type: c_int,
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

/// Buffers for bands of f16 or q8_0 weights converted to f32 (up to 2 MiB each for Whisper
/// base), reused by later products and freed by [`release_buffers`] when a model unloads.
static BANDS: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// Frees the converted-weights buffers (a Whisper model unloaded). A product running
/// meanwhile keeps its buffer and gives it back when done.
pub(crate) fn release_buffers() {
    drop(std::mem::take(&mut *BANDS.lock()));
}

/// The weights' element type, by ggml's numbering (`enum ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weights {
    F32,
    F16,
    /// Blocks of 32 values: an f16 scale, then 32 signed bytes (`block_q8_0`).
    Q8_0,
}

const Q8_0_BLOCK: usize = 32;
const Q8_0_BLOCK_BYTES: usize = 2 + Q8_0_BLOCK;

impl Weights {
    fn from_ggml(ty: c_int) -> Option<Self> {
        match ty {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            8 => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// The bytes a row of `depth` values takes; `None` where `depth` does not fit the type.
    fn row_bytes(self, depth: usize) -> Option<usize> {
        match self {
            Self::F32 => depth.checked_mul(size_of::<f32>()),
            Self::F16 => depth.checked_mul(size_of::<f16>()),
            Self::Q8_0 => depth
                .is_multiple_of(Q8_0_BLOCK)
                .then(|| (depth / Q8_0_BLOCK).checked_mul(Q8_0_BLOCK_BYTES))?,
        }
    }

    /// Writes one row's values, read from `row` (exactly [`Self::row_bytes`] long), into `out`.
    fn to_f32(self, row: &[u8], out: &mut [f32]) {
        match self {
            Self::F32 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                    *o = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Self::F16 if row.as_ptr().align_offset(align_of::<f16>()) == 0 => {
                // SAFETY: aligned, `row.len() / 2` values inside `row`; every bit pattern is
                // an f16.
                let halves = unsafe {
                    std::slice::from_raw_parts(row.as_ptr().cast::<f16>(), row.len() / 2)
                };
                halves.convert_to_f32_slice(out);
            }
            Self::F16 => {
                // Unaligned: read as bytes, converted in chunks through the stack.
                let mut halves = [f16::ZERO; 64];
                for (o, b) in out.chunks_mut(64).zip(row.chunks(128)) {
                    let n = o.len();
                    for (h, p) in halves[..n].iter_mut().zip(b.chunks_exact(2)) {
                        *h = f16::from_bits(u16::from_ne_bytes([p[0], p[1]]));
                    }
                    halves[..n].convert_to_f32_slice(o);
                }
            }
            Self::Q8_0 => {
                for (o, block) in out
                    .chunks_exact_mut(Q8_0_BLOCK)
                    .zip(row.chunks_exact(Q8_0_BLOCK_BYTES))
                {
                    let scale = f16::from_bits(u16::from_ne_bytes([block[0], block[1]])).to_f32();
                    for (v, &q) in o.iter_mut().zip(&block[2..]) {
                        *v = scale * f32::from(q as i8);
                    }
                }
            }
        }
    }
}

/// The product's shape, validated; `None` for what the patch never sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    weights: Weights,
    rows: usize,
    cols: usize,
    depth: usize,
    src0_row_bytes: usize,
    src1_stride: usize,
    dst_stride: usize,
}

impl Shape {
    #[allow(clippy::too_many_arguments)]
    fn new(
        weights: Weights,
        rows: i64,
        cols: i64,
        depth: i64,
        src0_row_bytes: usize,
        src1_row_bytes: usize,
        dst_row_bytes: usize,
    ) -> Option<Self> {
        let elems = |bytes: usize| {
            bytes
                .is_multiple_of(size_of::<f32>())
                .then_some(bytes / size_of::<f32>())
        };
        let shape = Self {
            weights,
            rows: usize::try_from(rows).ok()?,
            cols: usize::try_from(cols).ok()?,
            depth: usize::try_from(depth).ok()?,
            src0_row_bytes,
            src1_stride: elems(src1_row_bytes)?,
            dst_stride: elems(dst_row_bytes)?,
        };
        // Rows no longer than their stride, f32 rows whole elements apart, and strides gemm
        // can take as isize.
        let fits = weights
            .row_bytes(shape.depth)
            .is_some_and(|bytes| bytes <= src0_row_bytes)
            && (weights != Weights::F32 || src0_row_bytes.is_multiple_of(size_of::<f32>()))
            && shape.depth <= shape.src1_stride
            && shape.rows <= shape.dst_stride
            && isize::try_from(src0_row_bytes.max(shape.src1_stride).max(shape.dst_stride)).is_ok()
            && shape.rows.checked_mul(shape.depth).is_some();
        fits.then_some(shape)
    }

    /// Thread `ith` of `nth`'s band of rows.
    fn band(&self, ith: usize, nth: usize) -> Range<usize> {
        let nth = nth.max(1);
        // rows × i / nth in u128: no overflow for any usize.
        let at = |i: usize| (self.rows as u128 * i.min(nth) as u128 / nth as u128) as usize;
        at(ith)..at(ith + 1)
    }
}

/// The hook ggml calls (see the module's comment). Aborts on a shape the patch's own checks
/// rule out, rather than leave the product unwritten: every thread must compute its band.
///
/// # Safety
/// ggml's contract: `src0` holds `rows` rows of `depth` values of `src0_type`,
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
    src0_type: c_int,
    src0: *const c_void,
    src0_row_bytes: usize,
    src1: *const f32,
    src1_row_bytes: usize,
    dst: *mut f32,
    dst_row_bytes: usize,
) {
    let shape = Weights::from_ggml(src0_type).and_then(|weights| {
        Shape::new(
            weights,
            rows,
            cols,
            depth,
            src0_row_bytes,
            src1_row_bytes,
            dst_row_bytes,
        )
    });
    let (Some(shape), Ok(ith), Ok(nth)) = (shape, usize::try_from(ith), usize::try_from(nth))
    else {
        tracing::error!(
            rows,
            cols,
            depth,
            src0_type,
            "ggml sent a product the packed kernels cannot take"
        );
        std::process::abort();
    };
    let band = shape.band(ith, nth);
    if band.is_empty() || shape.cols == 0 || shape.depth == 0 {
        return;
    }
    let first = src0.cast::<u8>();
    if shape.weights == Weights::F32 {
        let stride = shape.src0_row_bytes / size_of::<f32>();
        // SAFETY: the caller's contract; the band's rows lie inside src0.
        unsafe {
            let rows = first.add(band.start * shape.src0_row_bytes).cast::<f32>();
            product(&shape, band, rows, stride, src1, dst);
        }
        return;
    }
    let Some(row_bytes) = shape.weights.row_bytes(shape.depth) else {
        return; // Shape::new checked it
    };
    let mut converted = BANDS.lock().pop().unwrap_or_default();
    converted.clear();
    converted.resize(band.len() * shape.depth, 0.0);
    for (r, out) in band.clone().zip(converted.chunks_exact_mut(shape.depth)) {
        // SAFETY: the caller's contract: row r holds row_bytes (≤ src0_row_bytes) bytes.
        let row =
            unsafe { std::slice::from_raw_parts(first.add(r * shape.src0_row_bytes), row_bytes) };
        shape.weights.to_f32(row, out);
    }
    // SAFETY: `converted` holds the band's rows, `depth` apart; src1 and dst as above.
    unsafe { product(&shape, band, converted.as_ptr(), shape.depth, src1, dst) };
    BANDS.lock().push(converted);
}

/// `dst[c][band] = src1[c] · band_rows[j]` for every column `c`: one single-threaded packed
/// GEMM (gemm's m = the columns, n = the band's rows, k = the depth).
///
/// # Safety
/// `band_rows` holds the band's rows of `depth` f32 values `band_stride` apart; `src1` and
/// `dst` as [`packed_mul_mat`]'s.
unsafe fn product(
    shape: &Shape,
    band: Range<usize>,
    band_rows: *const f32,
    band_stride: usize,
    src1: *const f32,
    dst: *mut f32,
) {
    // Every stride fits isize (Shape::new checked src0's in bytes, so in elements too).
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
        (rows, cols, depth): (usize, usize, usize),
        s1: usize,
    ) -> Vec<f64> {
        let mut out = vec![0.0; cols * rows];
        for c in 0..cols {
            for r in 0..rows {
                out[c * rows + r] = (0..depth)
                    .map(|k| f64::from(src1[c * s1 + k]) * f64::from(src0[r * depth + k]))
                    .sum();
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// `weights` (rows × depth) in `ty`'s bytes, each row padded to `row_bytes`, and the
    /// values those bytes hold.
    fn encode(ty: Weights, weights: &[f32], depth: usize, row_bytes: usize) -> (Vec<u8>, Vec<f32>) {
        let mut bytes = Vec::new();
        let mut held = Vec::new();
        for row in weights.chunks_exact(depth) {
            let start = bytes.len();
            match ty {
                Weights::F32 => {
                    for v in row {
                        bytes.extend_from_slice(&v.to_ne_bytes());
                        held.push(*v);
                    }
                }
                Weights::F16 => {
                    for v in row {
                        let h = f16::from_f32(*v);
                        bytes.extend_from_slice(&h.to_bits().to_ne_bytes());
                        held.push(h.to_f32());
                    }
                }
                Weights::Q8_0 => {
                    for block in row.chunks_exact(Q8_0_BLOCK) {
                        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let scale = f16::from_f32(max / 127.0);
                        bytes.extend_from_slice(&scale.to_bits().to_ne_bytes());
                        for v in block {
                            let q = (v / scale.to_f32()).round().clamp(-127.0, 127.0) as i8;
                            bytes.push(q as u8);
                            held.push(scale.to_f32() * f32::from(q));
                        }
                    }
                }
            }
            bytes.resize(start + row_bytes, 0xAB);
        }
        (bytes, held)
    }

    #[test]
    fn every_weight_type_with_strided_rows_matches_the_reference_on_any_thread_count() {
        // Odd sizes, rows padded past their length, and a destination wider than the product.
        let (rows, cols, depth) = (37, 45, 96);
        let (s1, ds) = (100, rows + 3);
        let weights = values(rows * depth, 1);
        let src1 = values(cols * s1, 2);
        for (ty, code) in [(Weights::F32, 0), (Weights::F16, 1), (Weights::Q8_0, 8)] {
            let row_bytes = ty.row_bytes(depth).expect("whole blocks") + 8;
            // The f16 bytes start one byte in, so that the unaligned conversion runs too.
            for offset in [0, usize::from(ty == Weights::F16)] {
                let (bytes, held) = encode(ty, &weights, depth, row_bytes);
                let mut shifted = vec![0u8; offset];
                shifted.extend_from_slice(&bytes);
                let mut aligned = vec![0f32; shifted.len().div_ceil(4)];
                // SAFETY (test): copies the bytes into f32-aligned storage.
                let base = unsafe {
                    let dst = aligned.as_mut_ptr().cast::<u8>();
                    std::ptr::copy_nonoverlapping(shifted.as_ptr(), dst, shifted.len());
                    dst.add(offset) as usize
                };
                let want = reference(&held, &src1, (rows, cols, depth), s1);
                for nth in [1, 2, 3, 8, 64] {
                    let mut dst = vec![f32::NAN; cols * ds];
                    let dst_at = dst.as_mut_ptr() as usize;
                    let src1 = &src1;
                    std::thread::scope(|scope| {
                        for ith in 0..nth {
                            scope.spawn(move || unsafe {
                                packed_mul_mat(
                                    ith as c_int,
                                    nth as c_int,
                                    rows as i64,
                                    cols as i64,
                                    depth as i64,
                                    code,
                                    base as *const c_void,
                                    row_bytes,
                                    src1.as_ptr(),
                                    s1 * 4,
                                    dst_at as *mut f32,
                                    ds * 4,
                                );
                            });
                        }
                    });
                    for c in 0..cols {
                        for r in 0..rows {
                            let got = f64::from(dst[c * ds + r]);
                            assert!(
                                (got - want[c * rows + r]).abs() < 1e-4,
                                "{ty:?} +{offset}, nth {nth}: dst[{c}][{r}] = {got}, want {}",
                                want[c * rows + r]
                            );
                        }
                        // The destination's padding is never written.
                        assert!(dst[c * ds + rows..(c + 1) * ds].iter().all(|v| v.is_nan()));
                    }
                }
            }
        }
    }

    #[test]
    fn shapes_the_patch_never_sends_are_refused() {
        let f32s = Weights::F32;
        // f32 rows not whole elements apart, rows longer than their stride (weights, columns,
        // destination), negative sizes, q8_0 rows that are not whole blocks, unknown types.
        assert!(Shape::new(f32s, 4, 4, 4, 18, 16, 16).is_none());
        assert!(Shape::new(f32s, 4, 4, 8, 16, 32, 16).is_none());
        assert!(Shape::new(f32s, 4, 4, 4, 16, 12, 16).is_none());
        assert!(Shape::new(f32s, 4, 4, 4, 16, 16, 12).is_none());
        assert!(Shape::new(f32s, -1, 4, 4, 16, 16, 16).is_none());
        assert!(Shape::new(Weights::Q8_0, 4, 4, 48, 34 * 2, 192, 16).is_none());
        assert!(Shape::new(Weights::Q8_0, 4, 4, 64, 34 * 2, 256, 16).is_some());
        assert!(Shape::new(Weights::F16, 4, 4, 4, 9, 16, 16).is_some());
        assert!(Shape::new(f32s, 4, 4, 4, 16, 16, 16).is_some());
        assert_eq!(Weights::from_ggml(2), None);
        // Bands cover the rows exactly, in order, whatever the thread count.
        let shape = Shape::new(f32s, 1500, 32, 64, 256, 256, 6000).expect("a valid shape");
        for nth in [1, 2, 7, 16, 3000] {
            let bands: Vec<_> = (0..nth).map(|i| shape.band(i, nth)).collect();
            assert_eq!(bands[0].start, 0);
            assert_eq!(bands[nth - 1].end, 1500);
            assert!(bands.windows(2).all(|w| w[0].end == w[1].start));
        }
    }
}
