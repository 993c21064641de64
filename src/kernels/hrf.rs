//! Haemodynamic response models and event regressors on the scan clock, computed the way
//! nilearn's `compute_regressor` computes them (nilearn 0.14,
//! `glm/first_level/hemodynamic_models.py`):
//!
//! 1. events become a boxcar on a fine grid of `n_hr` points from `t₀ + min_onset` to
//!    `t_max·(1 + 1/(n−1))` (n frames, oversampling `o`): +amplitude at the first fine
//!    sample ≥ onset, −amplitude at the first ≥ onset + duration (at least one sample
//!    later), cumulative sum;
//! 2. convolution with the HRF sampled every dt = TR/o over 32 s (truncated to `n_hr`);
//!    for the FIR basis, with one box kernel per delay d (zeros for d·o samples, then o
//!    samples of 1/o), the result shifted back by o − 1 samples;
//! 3. linear interpolation at the frame times.
//!
//! Every step is linear in the amplitudes, so the regressor of any amplitude vector `a`
//! is `W·a` with one design column per event; [`EventDesign`] builds W once per run and
//! the responses of many artificial neurons are a single matrix product.

use ndarray::{Array2, ArrayView2};
use statrs::function::gamma::ln_gamma;

/// A haemodynamic response model: one kernel (canonical shapes) or one per delay (FIR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HrfModel {
    /// SPM canonical: peak delay 6 s, undershoot 16 s, dispersions 1, ratio 0.167.
    Spm,
    /// Glover (1999): delay 6 s, undershoot 12 s, dispersions 0.9, ratio 0.48.
    Glover,
    /// Finite impulse response: one regressor per delay, in scans.
    Fir { delays: Vec<usize> },
}

/// A kernel on the fine grid and the shift (in fine samples) applied after convolution.
struct Kernel {
    h: Vec<f64>,
    shift: usize,
}

impl HrfModel {
    /// (delay, undershoot, dispersion, undershoot dispersion, ratio) of the canonical shapes.
    fn params(&self) -> (f64, f64, f64, f64, f64) {
        match self {
            HrfModel::Spm => (6.0, 16.0, 1.0, 1.0, 0.167),
            _ => (6.0, 12.0, 0.9, 0.9, 0.48),
        }
    }

    /// Number of regressors per event type (1, or the number of FIR delays).
    pub fn n_basis(&self) -> usize {
        match self {
            HrfModel::Fir { delays } => delays.len(),
            _ => 1,
        }
    }

    fn kernels(&self, tr: f64, oversampling: usize) -> Vec<Kernel> {
        match self {
            HrfModel::Fir { delays } => delays
                .iter()
                .map(|&d| {
                    let mut h = vec![0.0; (d + 1) * oversampling];
                    h[d * oversampling..]
                        .iter_mut()
                        .for_each(|v| *v = 1.0 / oversampling as f64);
                    Kernel {
                        h,
                        shift: oversampling - 1,
                    }
                })
                .collect(),
            _ => vec![Kernel {
                h: self.kernel(tr, oversampling),
                shift: 0,
            }],
        }
    }

    /// The kernel on the fine grid: h(t) = Γpdf(t; delay/d, loc = dt, scale = d)
    /// − ratio·Γpdf(t; undershoot/u, loc = dt, scale = u), t = linspace(0, 32, round(32/dt)),
    /// normalised to unit sum (nilearn `_gamma_difference_hrf`).
    /// (FIR: the first delay's box, see `kernels`.)
    pub fn kernel(&self, tr: f64, oversampling: usize) -> Vec<f64> {
        let (delay, undershoot, disp, u_disp, ratio) = self.params();
        let time_length = 32.0;
        let dt = tr / oversampling as f64;
        let n = (time_length / dt).round() as usize;
        let mut h: Vec<f64> = linspace(0.0, time_length, n)
            .map(|t| {
                gamma_pdf(t, delay / disp, dt, disp)
                    - ratio * gamma_pdf(t, undershoot / u_disp, dt, u_disp)
            })
            .collect();
        let sum: f64 = h.iter().sum();
        h.iter_mut().for_each(|v| *v /= sum);
        h
    }
}

/// scipy's `gamma.pdf(x, a, loc, scale)`: the Gamma(a, scale) density at x − loc.
fn gamma_pdf(x: f64, a: f64, loc: f64, scale: f64) -> f64 {
    let z = (x - loc) / scale;
    if z <= 0.0 {
        return 0.0;
    }
    ((a - 1.0) * z.ln() - z - ln_gamma(a)).exp() / scale
}

/// numpy's `linspace(a, b, n)` (endpoint included).
fn linspace(a: f64, b: f64, n: usize) -> impl Iterator<Item = f64> {
    let step = if n > 1 { (b - a) / (n - 1) as f64 } else { 0.0 };
    (0..n).map(move |i| {
        if i + 1 == n && n > 1 {
            b
        } else {
            a + step * i as f64
        }
    })
}

/// Frame times k·TR + offset, k = 0..n (offset = slice-time reference × TR).
pub fn frame_times(n_scans: usize, tr: f64, offset: f64) -> Vec<f64> {
    (0..n_scans).map(|k| k as f64 * tr + offset).collect()
}

/// The linear map from event amplitudes to a regressor: `design` is T × n_events.
#[derive(Debug, Clone)]
pub struct EventDesign {
    pub design: Array2<f64>,
}

/// Settings of [`EventDesign::new`] (nilearn's defaults).
#[derive(Debug, Clone)]
pub struct RegressorOptions {
    pub model: HrfModel,
    pub oversampling: usize,
    /// Events earlier than frame_times[0] + min_onset are dropped (nilearn: −24 s).
    pub min_onset: f64,
}

impl Default for RegressorOptions {
    fn default() -> Self {
        RegressorOptions {
            model: HrfModel::Spm,
            oversampling: 50,
            min_onset: -24.0,
        }
    }
}

impl EventDesign {
    /// Builds W for events (onsets, durations) sampled at `frame_times` (at least two,
    /// increasing): one design per basis function of the model (one for SPM and Glover,
    /// one per delay for FIR). TR is the smallest frame spacing, as nilearn takes it.
    /// Rejects, with the reason in words: onsets and durations of different lengths, a NaN
    /// or infinite onset or duration, fewer than two frame times, frame times that are not
    /// finite or not strictly increasing, an oversampling of 0, a non-finite `min_onset`,
    /// and a fine grid too short for the model (n_hr below 2 points after the FIR shift, or
    /// a TR so coarse that the 32 s kernel has no finite sample).
    pub fn new(
        onsets: &[f64],
        durations: &[f64],
        frame_times: &[f64],
        opt: &RegressorOptions,
    ) -> crate::Result<Vec<Self>> {
        check_events(onsets, durations, frame_times, opt)?;
        use crate::Error::Invalid;
        let n = frame_times.len();
        let tr = frame_times
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f64::INFINITY, f64::min);
        let (t0, t1) = (frame_times[0], frame_times[n - 1]);
        // nilearn _compute_n_frames_high_res
        let n_hr_f = (n as f64 - 1.0) / (t1 - t0)
            * ((t1 * (1.0 + 1.0 / (n as f64 - 1.0)) - t0 - opt.min_onset)
                * opt.oversampling as f64)
            + 1.0;
        let kernels = opt.model.kernels(tr, opt.oversampling);
        let shift = kernels.iter().map(|k| k.shift).max().unwrap_or(0);
        if n_hr_f.is_nan() || n_hr_f.round() < (2 + shift) as f64 {
            return Err(Invalid(format!(
                "the fine time grid from {} s to {} s has {n_hr_f:.0} points, fewer than the {} \
                 the model needs (is min_onset = {} s after the last scan?)",
                t0 + opt.min_onset,
                t1 * (1.0 + 1.0 / (n as f64 - 1.0)),
                2 + shift,
                opt.min_onset
            )));
        }
        if kernels
            .iter()
            .any(|k| k.h.is_empty() || k.h.iter().any(|v| !v.is_finite()))
        {
            return Err(Invalid(format!(
                "a TR of {tr} s with oversampling {} is too coarse to sample the 32 s \
                 haemodynamic response",
                opt.oversampling
            )));
        }
        let n_hr = n_hr_f.round() as usize;
        let hr: Vec<f64> = linspace(
            t0 + opt.min_onset,
            t1 * (1.0 + 1.0 / (n as f64 - 1.0)),
            n_hr,
        )
        .collect();
        // Each event's boxcar [start, stop) on the fine grid (nilearn _sample_condition).
        let first_valid = t0 + opt.min_onset;
        let boxes: Vec<Option<(usize, usize)>> = onsets
            .iter()
            .zip(durations)
            .map(|(&on, &dur)| {
                if on < first_valid {
                    return None; // nilearn warns and ignores such events
                }
                let start = hr.partition_point(|&t| t < on).min(n_hr - 1);
                let mut stop = hr.partition_point(|&t| t < on + dur).min(n_hr - 1);
                if stop < n_hr - 1 && stop == start {
                    stop += 1;
                }
                Some((start, stop))
            })
            .collect();
        Ok(kernels
            .into_iter()
            .map(|k| Self::for_kernel(&k, &hr, &boxes, frame_times))
            .collect())
    }

    fn for_kernel(
        kernel: &Kernel,
        hr: &[f64],
        boxes: &[Option<(usize, usize)>],
        frame_times: &[f64],
    ) -> Self {
        // After the shift the regressor lives on hr[0 .. n_hr − shift].
        let grid = &hr[..hr.len() - kernel.shift];
        let interp: Vec<(usize, f64)> = frame_times
            .iter()
            .map(|&ft| {
                let j = grid
                    .partition_point(|&t| t <= ft)
                    .saturating_sub(1)
                    .min(grid.len().saturating_sub(2));
                (j, (ft - grid[j]) / (grid[j + 1] - grid[j]))
            })
            .collect();
        let cum = prefix_sums(&kernel.h);
        let mut design = Array2::zeros((frame_times.len(), boxes.len()));
        for (e, b) in boxes.iter().enumerate() {
            let Some((start, stop)) = *b else { continue };
            // The boxcar convolved with h, shifted: c[m] = Σ_{s=start}^{stop−1} h[m + shift − s].
            let conv = |m: usize| -> f64 {
                let m = m + kernel.shift;
                if m < start || stop <= start {
                    return 0.0;
                }
                let hi = (m - start).min(kernel.h.len() - 1); // largest kernel index used
                let lo = (m + 1).saturating_sub(stop); // smallest
                if lo > hi {
                    0.0
                } else {
                    cum[hi + 1] - cum[lo]
                }
            };
            for (row, &(j, w)) in interp.iter().enumerate() {
                design[[row, e]] = (1.0 - w) * conv(j) + w * conv(j + 1);
            }
        }
        EventDesign { design }
    }

    /// Regressors for several amplitude vectors: `amplitudes` is n_events × N, result T × N.
    pub fn apply(&self, amplitudes: ArrayView2<'_, f64>) -> Array2<f64> {
        self.design.dot(&amplitudes)
    }
}

/// s[i] = Σ_{k<i} x[k].
fn prefix_sums(x: &[f64]) -> Vec<f64> {
    let mut s = Vec::with_capacity(x.len() + 1);
    s.push(0.0);
    for v in x {
        s.push(s.last().copied().unwrap_or(0.0) + v);
    }
    s
}

/// The events and the scan clock that [`EventDesign::new`] can sample: one finite duration
/// per finite onset, two or more strictly increasing finite frame times, oversampling ≥ 1
/// and a finite `min_onset`.
fn check_events(
    onsets: &[f64],
    durations: &[f64],
    frame_times: &[f64],
    opt: &RegressorOptions,
) -> crate::Result<()> {
    use crate::Error::Invalid;
    if onsets.len() != durations.len() {
        return Err(Invalid(format!(
            "every event needs one onset and one duration: {} onsets, {} durations",
            onsets.len(),
            durations.len()
        )));
    }
    if let Some(i) = onsets
        .iter()
        .zip(durations)
        .position(|(o, d)| !(o.is_finite() && d.is_finite()))
    {
        return Err(Invalid(format!(
            "event {} has onset {} s and duration {} s; both must be finite",
            i + 1,
            onsets[i],
            durations[i]
        )));
    }
    if frame_times.len() < 2 {
        return Err(Invalid(format!(
            "regressors are sampled at two or more frame times (scans), got {}",
            frame_times.len()
        )));
    }
    if let Some(i) = frame_times.iter().position(|t| !t.is_finite()) {
        return Err(Invalid(format!(
            "frame time {} is {}; frame times must be finite",
            i + 1,
            frame_times[i]
        )));
    }
    if let Some(i) = frame_times.windows(2).position(|w| w[1] <= w[0]) {
        return Err(Invalid(format!(
            "frame times must increase strictly: frame {} at {} s is not after frame {} at {} s",
            i + 2,
            frame_times[i + 1],
            i + 1,
            frame_times[i]
        )));
    }
    if opt.oversampling == 0 {
        return Err(Invalid(
            "the oversampling of the scan clock must be at least 1".into(),
        ));
    }
    if !opt.min_onset.is_finite() {
        return Err(Invalid(format!(
            "the earliest event time relative to the first scan (min_onset) must be finite, got {}",
            opt.min_onset
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nilearn's doctest: spm_hrf(t_r=2, oversampling=1, time_length=20) rounded to 3 decimals.
    #[test]
    fn spm_kernel_matches_nilearn_doctest_shape() {
        let h = HrfModel::Spm.kernel(2.0, 50);
        assert_eq!(h.len(), 800);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let peak = h
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        // The SPM HRF peaks near 5 s after onset (mode of Γ(6,1) shifted by dt).
        assert!(
            (peak as f64 * 0.04 - 5.0).abs() < 0.1,
            "peak at {} s",
            peak as f64 * 0.04
        );
    }

    /// Inputs nilearn cannot sample are errors in words (they used to be panicking
    /// assertions, or index panics deeper in): one duration per onset, at least two finite,
    /// strictly increasing frame times, oversampling ≥ 1, finite onsets, durations and
    /// min_onset, and a fine grid long enough for the model.
    #[test]
    fn unusable_events_and_frame_times_are_errors() {
        let opt = RegressorOptions::default();
        let frames = frame_times(20, 2.0, 0.0);
        let ok = EventDesign::new(&[4.0, 10.0], &[0.0, 1.0], &frames, &opt).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].design.dim(), (20, 2));
        let fir = RegressorOptions {
            model: HrfModel::Fir {
                delays: vec![0, 1, 2],
            },
            ..Default::default()
        };
        assert_eq!(
            EventDesign::new(&[4.0], &[0.0], &frames, &fir)
                .unwrap()
                .len(),
            3
        );
        let invalid =
            |onsets: &[f64], durations: &[f64], frames: &[f64], opt: &RegressorOptions| {
                match EventDesign::new(onsets, durations, frames, opt) {
                    Err(crate::Error::Invalid(msg)) => msg,
                    other => panic!("accepted: {other:?}"),
                }
            };
        let msg = invalid(&[4.0, 10.0], &[0.0], &frames, &opt);
        assert!(msg.contains("2 onsets, 1 durations"), "{msg}");
        let msg = invalid(&[4.0], &[0.0], &[0.0], &opt);
        assert!(msg.contains("two or more frame times"), "{msg}");
        invalid(&[4.0], &[0.0], &[], &opt);
        let msg = invalid(&[4.0], &[0.0], &[0.0, 2.0, 2.0, 4.0], &opt);
        assert!(msg.contains("increase strictly"), "{msg}");
        invalid(&[4.0], &[0.0], &[0.0, 2.0, 1.0, 4.0], &opt);
        invalid(&[4.0], &[0.0], &[0.0, f64::NAN, 4.0], &opt);
        invalid(&[4.0], &[0.0], &[0.0, 2.0, f64::INFINITY], &opt);
        invalid(&[f64::NAN], &[0.0], &frames, &opt);
        invalid(&[4.0], &[f64::INFINITY], &frames, &opt);
        for bad in [
            RegressorOptions {
                oversampling: 0,
                ..Default::default()
            },
            RegressorOptions {
                min_onset: f64::NAN,
                ..Default::default()
            },
            // The fine grid would start after the last scan.
            RegressorOptions {
                min_onset: 1000.0,
                ..Default::default()
            },
        ] {
            invalid(&[4.0], &[0.0], &frames, &bad);
        }
        // A 100 s TR at oversampling 1 samples the 32 s kernel at no point.
        let msg = invalid(
            &[4.0],
            &[0.0],
            &frame_times(20, 100.0, 0.0),
            &RegressorOptions {
                oversampling: 1,
                ..Default::default()
            },
        );
        assert!(msg.contains("too coarse"), "{msg}");
    }
}
