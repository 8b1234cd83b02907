//! The interpolated median, selected in the process from a window's values.
//!
//! `percentile_cont(0.5)` sorts every value of the window (n log n comparisons in
//! PostgreSQL's tuplesort: about 100 ms for the 650k lead times of a 90-day window on
//! the 10M-event benchmark, more than the scan that reads them). `array_agg` collects
//! the same values in the scan at almost no cost, and selecting the two middle ones
//! here is linear. The result is `percentile_cont`'s to the bit: the same interpolation
//! between the same two values.
//!
//! A group with more than [`IN_PROCESS_MAX`] values is not sent; its median comes from
//! `percentile_cont` instead, which sorts within `work_mem` and spills past it, so the
//! memory this process needs for one group stays bounded whatever the history.

/// The most values one group sends for its median: 8 MB once decoded.
pub const IN_PROCESS_MAX: i64 = 1_000_000;

/// `percentile_cont(0.5)` of `values` (reordered in place); `None` when empty.
///
/// PostgreSQL takes the values at rows `floor` and `ceil` of `0.5 * (n - 1)` of the
/// sorted set and returns `lo + (hi - lo) * fraction` (`float8_lerp`): for an even count
/// that is not always `(lo + hi) / 2` to the last bit, so the same formula is used.
pub fn interpolated(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let row = 0.5 * (n - 1) as f64;
    let first = row.floor() as usize;
    let (_, lo, above) = values.select_nth_unstable_by(first, f64::total_cmp);
    let lo = *lo;
    if n % 2 == 1 {
        return Some(lo);
    }
    // The next row's value is the smallest of the ones placed above `first`.
    let hi = above.iter().copied().min_by(f64::total_cmp)?;
    Some(lo + (hi - lo) * (row - first as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_counts_take_the_middle_value_and_even_counts_interpolate() {
        assert_eq!(interpolated(&mut []), None);
        assert_eq!(interpolated(&mut [4.0]), Some(4.0));
        assert_eq!(interpolated(&mut [9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(interpolated(&mut [9.0, 1.0, 5.0, 2.0]), Some(3.5));
        assert_eq!(interpolated(&mut [3.0, 3.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(interpolated(&mut [-2.0, 10.0]), Some(4.0));
    }

    #[test]
    fn the_order_given_does_not_matter() {
        let sorted: Vec<f64> = (0..1001).map(|i| f64::from(i) * 0.37).collect();
        let mut reversed: Vec<f64> = sorted.iter().rev().copied().collect();
        assert_eq!(interpolated(&mut reversed), Some(500.0 * 0.37));
        let mut even: Vec<f64> = sorted[..1000].iter().rev().copied().collect();
        let (lo, hi) = (499.0 * 0.37, 500.0 * 0.37);
        assert_eq!(interpolated(&mut even), Some(lo + (hi - lo) * 0.5));
    }
}
