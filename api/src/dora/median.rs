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

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Postgres, Type};

/// The most values one group sends for its median: 8 MB once decoded.
pub const IN_PROCESS_MAX: i64 = 1_000_000;

/// A `float8[]` read straight from PostgreSQL's binary array format. sqlx's `Vec<f64>`
/// decodes element by element through its generic value machinery, which was most of
/// this process's time on a 90-day window (about 15 ms for 430k values); this reads
/// the 12-byte elements in one loop.
#[derive(Debug)]
pub struct Values(pub Vec<f64>);

impl Type<Postgres> for Values {
    fn type_info() -> PgTypeInfo {
        <Vec<f64> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<f64> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Values {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.format() == PgValueFormat::Text {
            return Ok(Values(<Vec<f64> as Decode<Postgres>>::decode(value)?));
        }
        binary_array(value.as_bytes()?).map(Values)
    }
}

/// `array_send`'s layout: dimensions, a has-nulls flag and the element type, then the
/// length and lower bound of each dimension, then each element as its length and
/// bytes (8, big-endian, for `float8`).
fn binary_array(bytes: &[u8]) -> Result<Vec<f64>, BoxDynError> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or("a float8[] cut short")
    };
    match word(0)? {
        0 => return Ok(Vec::new()),
        1 => {}
        dims => return Err(format!("a float8[] of {dims} dimensions").into()),
    }
    let len = usize::try_from(word(12)?)?;
    let elements = &bytes[20.min(bytes.len())..];
    if elements.len() != len * 12 {
        return Err(format!("a float8[] of {len} values in {} bytes", elements.len()).into());
    }
    elements
        .chunks_exact(12)
        .map(|e| match e.split_at(4) {
            ([0, 0, 0, 8], v) => Ok(f64::from_be_bytes(v.try_into().expect("8 bytes"))),
            _ => Err("a NULL or non-float8 element in a float8[]".into()),
        })
        .collect()
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

    fn sent(values: &[Option<f64>]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [1, 0, 701, values.len() as i32, 1] {
            b.extend(i32::to_be_bytes(w));
        }
        for v in values {
            match v {
                Some(v) => {
                    b.extend(8i32.to_be_bytes());
                    b.extend(v.to_be_bytes());
                }
                None => b.extend((-1i32).to_be_bytes()),
            }
        }
        b
    }

    #[test]
    fn binary_arrays_are_read_as_postgres_sends_them() {
        assert_eq!(
            binary_array(&sent(&[Some(1.5), Some(-2.25)])).unwrap(),
            [1.5, -2.25]
        );
        let empty = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 189];
        assert!(binary_array(&empty).unwrap().is_empty());
        assert!(binary_array(&sent(&[Some(1.0), None])).is_err());
        let whole = sent(&[Some(1.0), Some(2.0)]);
        assert!(binary_array(&whole[..whole.len() - 1]).is_err());
        assert!(binary_array(&whole[..10]).is_err());
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
