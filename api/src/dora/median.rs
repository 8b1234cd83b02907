//! The interpolated median, selected in the process from a window's values.
//!
//! `percentile_cont(0.5)` sorts every value of the window (n log n comparisons in
//! PostgreSQL's tuplesort: about 100 ms for the 650k lead times of a 90-day window on
//! the 10M-event benchmark, more than the scan that reads them). The scan collects the
//! same values instead, and selecting the two middle ones here is linear. The result is
//! `percentile_cont`'s to the bit: the same interpolation between the same two values.
//!
//! A group with more than [`IN_PROCESS_MAX`] values is not sent; its median comes from
//! `percentile_cont` instead, which sorts within `work_mem` and spills past it, so the
//! memory this process needs for one group stays bounded whatever the history.

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::{Decode, Postgres, Type};

/// The most values one group sends for its median: 8 MB once decoded.
pub const IN_PROCESS_MAX: i64 = 1_000_000;

/// A group's values as the scan sends them: `string_agg(float8send(v), '')`, each value's
/// 8 bytes (big-endian IEEE 754, exactly as stored) one after the other in a `bytea`.
///
/// Not `array_agg`: PostgreSQL builds the array after the scan, copies it, and sends it
/// through `float8send` element by element with a length before each. On the 10M
/// benchmark's 90-day window (432k lead times, one connection) the deploy aggregate
/// took 92 ms with `array_agg` and 79 ms this way, against 46 ms counting alone.
#[derive(Debug)]
pub struct Values(pub Vec<f64>);

impl Type<Postgres> for Values {
    fn type_info() -> PgTypeInfo {
        <Vec<u8> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<u8> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Values {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        packed(&<Vec<u8> as Decode<Postgres>>::decode(value)?).map(Values)
    }
}

/// The values of `float8send`s laid end to end.
fn packed(bytes: &[u8]) -> Result<Vec<f64>, BoxDynError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(format!(
            "{} bytes are not a whole number of float8 values",
            bytes.len()
        )
        .into());
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|v| f64::from_be_bytes(v.try_into().expect("8 bytes")))
        .collect())
}

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
    fn packed_values_are_read_as_float8send_writes_them() {
        let sent: Vec<u8> = [1.5f64, -2.25, f64::MAX]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(packed(&sent).unwrap(), [1.5, -2.25, f64::MAX]);
        assert!(packed(&[]).unwrap().is_empty());
        assert!(packed(&sent[..sent.len() - 1]).is_err());
        assert!(packed(&sent[..3]).is_err());
    }

    /// A `float8[]` (the values' old form) is refused at decoding, not misread as bytes.
    #[test]
    fn only_a_bytea_is_read_as_packed_values() {
        let bytea = <Vec<u8> as Type<Postgres>>::type_info();
        let floats = <Vec<f64> as Type<Postgres>>::type_info();
        assert!(<Values as Type<Postgres>>::compatible(&bytea));
        assert!(!<Values as Type<Postgres>>::compatible(&floats));
    }

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
