//! Matrix products written into buffers the caller owns, through candle's GEMM (the `gemm`
//! crate), with every bound checked before the unsafe call: the encoder's banded kernels
//! multiply slices of reused buffers, which candle's tensor product cannot do without a new
//! tensor per call.

/// Which threads one product may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    /// rayon's whole pool (one large product at a time).
    All,
    /// The calling thread only (products that are already one of many parallel tasks).
    One,
}

/// `dst (m × n, row stride dst_rs) = lhs (m × k, row stride lhs_rs) · rhs (k × n, row stride
/// rhs_rs)`, every matrix row-major, through candle's GEMM.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_into(
    threads: Threads,
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
    rhs_rs: usize,
) -> candle_core::Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    // The last element each matrix is read or written at must lie inside its slice.
    let span = |rows: usize, stride: usize, cols: usize| {
        rows.checked_sub(1)
            .and_then(|r| r.checked_mul(stride))
            .and_then(|at| at.checked_add(cols))
    };
    let fits = |needed: Option<usize>, len: usize| needed.is_some_and(|n| n <= len);
    if k == 0
        || !fits(span(m, dst_rs, n), dst.len())
        || !fits(span(m, lhs_rs, k), lhs.len())
        || !fits(span(k, rhs_rs, n), rhs.len())
        || n > dst_rs
        || k > lhs_rs
        || n > rhs_rs
    {
        candle_core::bail!("a {m} × {k} · {k} × {n} product does not fit its buffers");
    }
    let as_isize = |v: usize| isize::try_from(v).map_err(|_| candle_core::Error::msg("stride"));
    let parallelism = match (threads, rayon::current_num_threads()) {
        (Threads::All, n) if n > 1 => gemm::Parallelism::Rayon(n),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the checks above keep every element gemm reads or writes inside `dst`, `lhs`
    // and `rhs` (rows of the given strides, unit column stride, rows no longer than their
    // stride); `dst` is borrowed mutably, so nothing else reads or writes it meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            as_isize(dst_rs)?,
            false,
            lhs.as_ptr(),
            1,
            as_isize(lhs_rs)?,
            rhs.as_ptr(),
            1,
            as_isize(rhs_rs)?,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplies_strided_rows_and_refuses_what_does_not_fit() {
        // (2 × 3) · (3 × 2), the lhs rows 4 apart, the destination rows 3 apart.
        let lhs = [1.0, 2.0, 3.0, -1.0, 4.0, 5.0, 6.0, -1.0];
        let rhs = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        for threads in [Threads::All, Threads::One] {
            let mut dst = [9.0f32; 6];
            matmul_into(threads, (2, 2, 3), &mut dst, 3, &lhs, 4, &rhs, 2).expect("fits");
            assert_eq!(dst, [4.0, 5.0, 9.0, 10.0, 11.0, 9.0]);
        }
        let mut dst = vec![0f32; 4];
        assert!(matmul_into(
            Threads::One,
            (2, 2, 2),
            &mut dst,
            2,
            &[0.0; 3],
            2,
            &[0.0; 4],
            2
        )
        .is_err());
        assert!(matmul_into(
            Threads::One,
            (2, 3, 2),
            &mut dst,
            2,
            &[0.0; 4],
            2,
            &[0.0; 6],
            3
        )
        .is_err());
    }
}
