//! Summaries of samples: median, quartiles and range of per-round figures, and latency
//! percentiles of one run. Pure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The spread of a set of samples (one per round, or one per event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// 25th percentile.
    pub p25: f64,
    /// 75th percentile.
    pub p75: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// The summary of `samples`; `None` when there are none (NaNs are ignored).
    pub(crate) fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        Some(Summary {
            n,
            median: percentile(&sorted, 50.0),
            min: sorted[0],
            max: sorted[n - 1],
            p25: percentile(&sorted, 25.0),
            p75: percentile(&sorted, 75.0),
            mean: sorted.iter().sum::<f64>() / n as f64,
        })
    }
}

/// The `q`-th percentile (0–100) of sorted samples, interpolating linearly between the two
/// nearest ranks. `sorted` must be sorted ascending and not empty.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.len() == 1 {
        return sorted[0];
    }
    let rank = (q.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let weight = rank - low as f64;
    sorted[low] + (sorted[high] - sorted[low]) * weight
}

/// Percentiles of the request latencies of one run, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Latencies {
    /// Requests measured.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Fastest.
    pub min_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latencies {
    /// The percentiles of `samples`; `None` when there are none.
    pub(crate) fn of(samples: &[Duration]) -> Option<Latencies> {
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        if us.is_empty() {
            return None;
        }
        us.sort_by(f64::total_cmp);
        Some(Latencies {
            count: us.len(),
            p50_us: percentile(&us, 50.0),
            p90_us: percentile(&us, 90.0),
            p99_us: percentile(&us, 99.0),
            p999_us: percentile(&us, 99.9),
            min_us: us[0],
            max_us: us[us.len() - 1],
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
        })
    }
}

/// `a / b` when both are finite and `b` is not zero.
pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    let r = a / b;
    (a.is_finite() && b.is_finite() && b != 0.0 && r.is_finite()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_counts() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 3.0, 1.0, 5.0));
        assert_eq!((s.p25, s.p75), (2.0, 4.0));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.mean, 2.5);
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn latency_percentiles_interpolate() {
        let samples: Vec<Duration> = (1..=101).map(Duration::from_micros).collect();
        let l = Latencies::of(&samples).unwrap();
        assert_eq!(l.count, 101);
        assert!((l.p50_us - 51.0).abs() < 1e-9);
        assert!((l.p99_us - 100.0).abs() < 1e-9);
        assert!((l.max_us - 101.0).abs() < 1e-9);
    }

    #[test]
    fn ratio_rejects_division_by_zero() {
        assert_eq!(ratio(1.0, 2.0), Some(0.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }
}
