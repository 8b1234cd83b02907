//! A small reproducible random source: the history must be the same for the same seed
//! on every machine and every version, which a general-purpose crate does not promise.

/// SplitMix64: one 64-bit state, good statistical quality for simulation. Not for
/// anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from `seed`; different `stream`s of one seed are independent.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        // Mix once so that neighbouring seeds do not start with related values.
        rng.next_u64();
        rng
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // The top 53 bits fill an f64's mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[low, high)`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// A standard normal sample (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln(0) would be -inf.
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal around `median` with spread `sigma`: durations such as lead and
    /// restore times are skewed, a few take much longer than the rest.
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// A Poisson count with mean `lambda` (Knuth's method; the means here are small).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        let limit = (-lambda).exp();
        let mut count = 0;
        let mut product = self.unit();
        while product > limit && count < 1000 {
            count += 1;
            product *= self.unit();
        }
        count
    }

    /// A 40-hex-digit git sha.
    pub fn sha(&mut self) -> String {
        format!(
            "{:016x}{:016x}{:08x}",
            self.next_u64(),
            self.next_u64(),
            self.next_u64() >> 32
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 1);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 1);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 2);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn samples_have_the_asked_for_centre() {
        let mut r = Rng::new(1, 0);
        let n = 20_000;
        let mean = (0..n).map(|_| f64::from(r.poisson(3.0))).sum::<f64>() / f64::from(n);
        assert!((mean - 3.0).abs() < 0.1, "poisson mean {mean}");
        let mut samples: Vec<f64> = (0..n).map(|_| r.log_normal(10.0, 0.8)).collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        assert!((median - 10.0).abs() < 0.5, "log-normal median {median}");
        let sha = r.sha();
        assert_eq!(sha.len(), 40);
        assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
