//! Spatial smoothing of a volume with a Gaussian of a given FWHM in mm, as nilearn's
//! `smooth_img` does it (`nilearn.image.image._smooth_array`):
//!
//! - the width per voxel axis follows the affine: vox_a = ‖A[:, a]‖ (the column norm of its
//!   3×3 part), σ_a = FWHM / (√(8 ln 2) · vox_a), so anisotropic and oblique voxels get
//!   the same width in mm along every axis;
//! - each axis in turn (x, y, z) is filtered in place by scipy's `gaussian_filter1d`:
//!   weights exp(−x²/2σ²) over x = −r..r, r = ⌊4σ + ½⌋, normalised to sum 1, the line
//!   extended by half-sample reflection (`mode="reflect"`: d c b a | a b c d | d c b a);
//! - non-finite values are set to 0 first (`ensure_finite=True`).
//!
//! The volume is in NIfTI order (x fastest), in f32 as nilearn holds int16 BOLD. The caller
//! owns the scratch (one volume), so smoothing every volume of a run allocates once.

/// √(8 ln 2): the FWHM of a Gaussian in units of its σ.
pub const FWHM_OVER_SIGMA: f64 = 2.354_820_045_030_949_3;

/// scipy's default `truncate`: the kernel reaches 4 σ.
const TRUNCATE: f64 = 4.0;

/// A separable Gaussian for one grid: one normalised kernel per axis (none where σ = 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian3d {
    kernels: [Vec<f32>; 3],
}

/// Half-sample symmetric reflection of index `i` into 0..n (scipy's "reflect").
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period);
    if m < n as isize {
        m as usize
    } else {
        (period - 1 - m) as usize
    }
}

/// The kernel radius (voxels) scipy uses for `sigma`: ⌊4σ + ½⌋ (as f64: a forged affine
/// can make it huge, and the caller checks it before anything is allocated).
pub fn radius(sigma: f64) -> f64 {
    (TRUNCATE * sigma + 0.5).floor()
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)`.
/// Computed in f64 and rounded to f32 once.
fn kernel(sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        return Vec::new();
    }
    let radius = radius(sigma) as isize;
    let w: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|v| (v / sum) as f32).collect()
}

impl Gaussian3d {
    /// σ (voxels) along each axis for `fwhm_mm` on a grid whose affine's 3×3 part is
    /// `linear` (rows): FWHM / (√(8 ln 2) · ‖column a‖).
    pub fn sigmas(fwhm_mm: f64, linear: [[f64; 3]; 3]) -> [f64; 3] {
        std::array::from_fn(|a| {
            let vox = (0..3).map(|r| linear[r][a] * linear[r][a]).sum::<f64>().sqrt();
            fwhm_mm / (FWHM_OVER_SIGMA * vox)
        })
    }

    /// The Gaussian of `fwhm_mm` on a grid whose affine's 3×3 part is `linear` (rows).
    /// Check [`radius`] of [`sigmas`](Self::sigmas) first: the kernels are allocated.
    pub fn new(fwhm_mm: f64, linear: [[f64; 3]; 3]) -> Gaussian3d {
        let kernels = Self::sigmas(fwhm_mm, linear).map(kernel);
        Gaussian3d { kernels }
    }

    /// The kernel radius (voxels) along each axis.
    pub fn radii(&self) -> [usize; 3] {
        std::array::from_fn(|a| self.kernels[a].len() / 2)
    }

    /// Smooths `volume` (shape `[nx, ny, nz]`, x fastest) in place; `scratch` (grown to
    /// one volume and a line) is the caller's.
    ///
    /// Each axis is a correlation out[k] = Σ_t w[t]·in[reflect(k + t − r)], summed over t
    /// in order. The volume is held in f32 between axes as scipy does for nilearn's float32
    /// (int16 BOLD is cast to it); scipy sums each line in f64, here in f32, a difference of
    /// a few 1e-7 relative (tests/it/smooth.rs bounds it). Every pass is the same loop: for each tap, one multiply-add over a
    /// contiguous run (an x-line copied once with its reflected ends; whole x-rows along y;
    /// whole xy-planes along z), so it reads memory in order and vectorises. The passes
    /// alternate between `volume` and the scratch, so nothing is copied between them.
    pub fn apply(&self, volume: &mut [f32], shape: [usize; 3], scratch: &mut Vec<f32>) {
        debug_assert_eq!(volume.len(), shape.iter().product::<usize>());
        zero_non_finite(volume);
        let size = volume.len();
        let scratch = grown(scratch, size + shape[0] + 2 * self.radii()[0]);
        let (other, line) = scratch.split_at_mut(size);
        self.passes(volume, shape, other, line);
    }

    /// As [`apply`](Self::apply), but exact only at the voxels `region` was made for (their
    /// values equal `apply`'s bit for bit; the rest of the grid is left as it was or holds
    /// partial sums): only the region, a few radii around those voxels, is filtered, and
    /// in it only what those voxels read (see [`region`](Self::region)).
    pub fn apply_within(&self, volume: &mut [f32], shape: [usize; 3], region: &Region, scratch: &mut Vec<f32>) {
        debug_assert_eq!(volume.len(), shape.iter().product::<usize>());
        let size = region.len();
        let boxed_len = if region.shape == shape { 0 } else { size };
        let scratch = grown(scratch, boxed_len + size + region.shape[0] + 2 * self.radii()[0]);
        let (boxed, rest) = scratch.split_at_mut(boxed_len);
        let (other, line) = rest.split_at_mut(size);
        if boxed_len == 0 {
            return self.filter_region(volume, region, other, line);
        }
        region.copy_rows(shape, |dst, src| boxed[dst].copy_from_slice(&volume[src]));
        self.filter_region(boxed, region, other, line);
        region.copy_rows(shape, |dst, src| volume[src].copy_from_slice(&boxed[dst]));
    }

    /// [`apply_within`](Self::apply_within) on `data` holding only the region's box (x
    /// fastest, `region.shape`), as cut from the grid.
    pub fn apply_boxed(&self, data: &mut [f32], region: &Region, scratch: &mut Vec<f32>) {
        let size = region.len();
        debug_assert_eq!(data.len(), size);
        let scratch = grown(scratch, size + region.shape[0] + 2 * self.radii()[0]);
        let (other, line) = scratch.split_at_mut(size);
        self.filter_region(data, region, other, line);
    }

    /// Filters `data`, the region's box, exact at the region's voxels.
    fn filter_region(&self, data: &mut [f32], region: &Region, other: &mut [f32], line: &mut [f32]) {
        zero_non_finite(data);
        match &region.targets {
            Some(t) => self.passes_at(data, region.shape, t, other, line),
            None => self.passes(data, region.shape, other, line),
        }
    }

    /// The region of a grid of `shape` that [`apply_within`](Self::apply_within) filters to
    /// give exact values at the voxels of linear indices `voxels` (x fastest).
    ///
    /// Why it is exact: with the passes x, y, z, a voxel's value reads the y-pass within r_z
    /// along z, which reads the x-pass within r_y along y, which reads the input within r_x
    /// along x. So the voxels' bounding box grown by the radius on each side holds every value
    /// they read, and no tap of theirs ever reflects at a side that was cut. Where the grown box
    /// reaches the grid's side it is clipped there, and the reflection is the grid's own.
    /// Inside the box, the z pass is computed at the voxels only, the y pass on the x-rows
    /// those read, the x pass on the x-rows the y pass reads. Every value the voxels need is
    /// summed over the same values in the same order as in [`apply`](Self::apply), so they are
    /// equal bit for bit.
    pub fn region(&self, shape: [usize; 3], voxels: impl IntoIterator<Item = usize>) -> Region {
        let voxels: Vec<usize> = voxels.into_iter().collect();
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for &l in &voxels {
            let ijk = [l % shape[0], l / shape[0] % shape[1], l / (shape[0] * shape[1])];
            for a in 0..3 {
                lo[a] = lo[a].min(ijk[a]);
                hi[a] = hi[a].max(ijk[a] + 1);
            }
        }
        if lo[0] == usize::MAX {
            return Region { lo: [0; 3], shape, targets: None };
        }
        let r = self.radii();
        let lo: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(r[a]));
        let region_shape = std::array::from_fn(|a| (hi[a] + r[a]).min(shape[a]) - lo[a]);
        let mut region = Region { lo, shape: region_shape, targets: None };
        if self.kernels.iter().all(|k| !k.is_empty()) {
            let local: Vec<usize> = voxels.iter().map(|&l| region.local(shape, l)).collect();
            region.targets = Some(self.targets(region_shape, local));
        }
        region
    }

    /// [`region`](Self::region) for input that is zero outside `voxels` (a map on a mask, as
    /// the surrogates smooth it): rows that read only zeros are filled, not summed.
    pub fn region_zero_outside(&self, shape: [usize; 3], voxels: impl IntoIterator<Item = usize>) -> Region {
        let mut region = self.region(shape, voxels);
        let [nx, ny, nz] = region.shape;
        let ry = self.radii()[1] as isize;
        if let Some(t) = &mut region.targets {
            let mut x_zero = vec![true; ny * nz];
            t.spans.iter().for_each(|&(start, _)| x_zero[start / nx] = false);
            let y_zero = (0..ny * nz)
                .map(|row| {
                    let (y, z) = ((row % ny) as isize, row / ny);
                    (-ry..=ry).all(|d| x_zero[reflect(y + d, ny) + ny * z])
                })
                .collect();
            t.zero = Some([x_zero, y_zero]);
        }
        region
    }

    /// The x-rows each of the first two passes must fill for exact values at `voxels`.
    fn targets(&self, shape: [usize; 3], voxels: Vec<usize>) -> Targets {
        let [nx, ny, nz] = shape;
        let [_, ry, rz] = self.radii().map(|r| r as isize);
        let mut y_rows = vec![false; ny * nz];
        for &l in &voxels {
            let (y, z) = (l / nx % ny, (l / (nx * ny)) as isize);
            for d in -rz..=rz {
                y_rows[y + ny * reflect(z + d, nz)] = true;
            }
        }
        let mut x_rows = vec![false; ny * nz];
        for row in (0..ny * nz).filter(|&row| y_rows[row]) {
            let (y, z) = ((row % ny) as isize, row / ny);
            for d in -ry..=ry {
                x_rows[reflect(y + d, ny) + ny * z] = true;
            }
        }
        // Each x-row's span, from its first voxel to its last (sorted first: any order of
        // voxels is taken). A cortical mask cuts a row into many short runs (23,341 in the
        // 4,048 rows of a 2 mm ribbon): one sum over the span costs far less than one per
        // run, and the lanes between the runs are scratch.
        let mut sorted = voxels;
        sorted.sort_unstable();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for l in sorted {
            match spans.last_mut() {
                Some((start, len)) if *start / nx == l / nx => *len = l + 1 - *start,
                _ => spans.push((l, 1)),
            }
        }
        Targets { spans, rows: [x_rows, y_rows], zero: None }
    }

    /// [`passes`](Self::passes) computing only what `targets` needs (every kernel present):
    /// the x pass on rows\[0\] into `other`, the y pass on rows\[1\] back into `data`, the z
    /// pass on the spans of the voxels' x-rows (each lane summed in tap order, as everywhere).
    fn passes_at(&self, data: &mut [f32], shape: [usize; 3], targets: &Targets, other: &mut [f32], line: &mut [f32]) {
        let [nx, ny, nz] = shape;
        let [wx, wy, wz] = &self.kernels;
        let ix = padded_index(nx, wx);
        let zero = |pass: usize, row: usize| targets.zero.as_ref().is_some_and(|z| z[pass][row]);
        for row in (0..ny * nz).filter(|&row| targets.rows[0][row]) {
            if zero(0, row) {
                other[row * nx..(row + 1) * nx].fill(0.0);
                continue;
            }
            filter_line(wx, &ix, &data[row * nx..(row + 1) * nx], &mut other[row * nx..(row + 1) * nx], line);
        }
        let iy = padded_index(ny, wy);
        for row in (0..ny * nz).filter(|&row| targets.rows[1][row]) {
            if zero(1, row) {
                data[row * nx..(row + 1) * nx].fill(0.0);
                continue;
            }
            let (y, z) = (row % ny, row / ny);
            let taps = &iy[y..y + wy.len()];
            let other = &*other;
            weighted_sum(&mut data[row * nx..(row + 1) * nx], wy, |t| {
                let at = (taps[t] + ny * z) * nx;
                &other[at..at + nx]
            });
        }
        let iz = padded_index(nz, wz);
        let plane = nx * ny;
        for &(start, len) in &targets.spans {
            let (xy, z) = (start % plane, start / plane);
            let taps = &iz[z..z + wz.len()];
            let data = &*data;
            weighted_sum(&mut other[start..start + len], wz, |t| {
                let at = xy + plane * taps[t];
                &data[at..at + len]
            });
        }
        for &(start, len) in &targets.spans {
            data[start..start + len].copy_from_slice(&other[start..start + len]);
        }
    }

    /// The three passes on `data` (shape `shape`), alternating with `other`.
    fn passes(&self, data: &mut [f32], shape: [usize; 3], other: &mut [f32], line: &mut [f32]) {
        let strides = [1, shape[0], shape[0] * shape[1]];
        let mut in_data = true;
        for axis in 0..3 {
            let w = &self.kernels[axis];
            if w.is_empty() {
                continue;
            }
            let (src, dst): (&[f32], &mut [f32]) = match in_data {
                true => (data, other),
                false => (other, data),
            };
            correlate(w, shape[axis], strides[axis], src, dst, line);
            in_data = !in_data;
        }
        if !in_data {
            data.copy_from_slice(other);
        }
    }
}

/// A box of a grid, `lo` its first corner and `shape` its size: what
/// [`Gaussian3d::apply_within`] filters.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    lo: [usize; 3],
    pub shape: [usize; 3],
    /// What the voxels read, when every axis has a kernel (else the box is filtered whole).
    targets: Option<Targets>,
}

/// The voxels (linear in a region's box, in spans along x) and the x-rows (y + ny·z) the x pass (rows\[0\])
/// and the y pass (rows\[1\]) must fill for them.
#[derive(Debug, Clone, PartialEq)]
struct Targets {
    /// The voxels' x-rows, each as the span (first voxel, length) from its first voxel
    /// to its last.
    spans: Vec<(usize, usize)>,
    /// For input that is zero outside the voxels: per pass, the rows whose sums read only
    /// zeros, filled with +0 (what those sums give) instead of summed.
    zero: Option<[Vec<bool>; 2]>,
    rows: [Vec<bool>; 2],
}

impl Region {
    /// Voxels in the box.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The box's linear index (x fastest) of a grid voxel inside it, the grid of `shape`.
    pub fn local(&self, shape: [usize; 3], linear: usize) -> usize {
        let ijk = [linear % shape[0], linear / shape[0] % shape[1], linear / (shape[0] * shape[1])];
        let [i, j, k]: [usize; 3] = std::array::from_fn(|a| ijk[a] - self.lo[a]);
        i + self.shape[0] * (j + self.shape[1] * k)
    }

    /// `copy(box range, grid range)` for every x-row of the box in a grid of `shape`.
    fn copy_rows(&self, shape: [usize; 3], mut copy: impl FnMut(std::ops::Range<usize>, std::ops::Range<usize>)) {
        let [nx, ny, nz] = self.shape;
        for k in 0..nz {
            for j in 0..ny {
                let dst = nx * (j + ny * k);
                let src = self.lo[0] + shape[0] * (self.lo[1] + j + shape[1] * (self.lo[2] + k));
                copy(dst..dst + nx, src..src + nx);
            }
        }
    }
}

/// The first `len` values of `scratch`, grown when shorter. Not cleared: every pass writes
/// each value it later reads (a memset of a volume per call was a tenth of the surrogates).
fn grown(scratch: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if scratch.len() < len {
        scratch.resize(len, 0.0);
    }
    &mut scratch[..len]
}

/// Non-finite values set to 0 (`ensure_finite`), as a select the compiler vectorises.
fn zero_non_finite(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = if v.is_finite() { *v } else { 0.0 });
}

/// The source index of each padded position along an axis of length `n` for kernel `w`:
/// r reflected values on each side.
fn padded_index(n: usize, w: &[f32]) -> Vec<usize> {
    let r = (w.len() / 2) as isize;
    (-r..n as isize + r).map(|k| reflect(k, n)).collect()
}

/// One x-line filtered: `src` copied once with its reflected ends into `line` (`idx` from
/// [`padded_index`]), then summed tap by tap into `out`.
fn filter_line(w: &[f32], idx: &[usize], src: &[f32], out: &mut [f32], line: &mut [f32]) {
    let (n, r) = (src.len(), w.len() / 2);
    let padded = &mut line[..idx.len()];
    // The line itself, then its reflected ends (idx[r + k] = k in between).
    padded[r..r + n].copy_from_slice(src);
    for k in (0..r).chain(r + n..idx.len()) {
        padded[k] = src[idx[k]];
    }
    weighted_sum(out, w, |t| &padded[t..t + n]);
}

/// One axis of [`Gaussian3d::apply`]: `dst` = `src` correlated with `w` along the axis of
/// length `n` and memory stride `stride`; `line` holds a padded x-line (stride 1).
fn correlate(w: &[f32], n: usize, stride: usize, src: &[f32], dst: &mut [f32], line: &mut [f32]) {
    let idx = padded_index(n, w);
    let block = n * stride;
    for (src, out) in src.chunks(block).zip(dst.chunks_mut(block)) {
        if stride == 1 {
            filter_line(w, &idx, src, out, line);
            continue;
        }
        for (k, o) in out.chunks_mut(stride).enumerate() {
            let taps = &idx[k..k + w.len()];
            weighted_sum(o, w, |t| &src[taps[t] * stride..(taps[t] + 1) * stride]);
        }
    }
}

/// Lanes summed in registers at once: the output is written once, not once per tap.
const CHUNK: usize = 32;

/// out = Σ_t w[t]·row(t) (each row as long as `out`), summed over t in order. With AVX2
/// and AVX-512 the same loop runs on 8 and 16 lanes instead of SSE2's 4: separate
/// multiplies and adds (no FMA, which would round once instead of twice), so the result is
/// the same bit for bit. (AVX-512 smooths a 2 mm volume ~7% faster than AVX2 on an AMD
/// EPYC Zen 5.)
fn weighted_sum<'a>(out: &mut [f32], w: &[f32], row: impl Fn(usize) -> &'a [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { weighted_sum_avx512(out, w, row) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { weighted_sum_avx2(out, w, row) };
        }
    }
    weighted_sum_body::<CHUNK, { CHUNK / 2 }, { CHUNK / 4 }, { CHUNK / 8 }>(out, w, row)
}

/// 128 lanes: 8 registers of 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weighted_sum_avx512<'a>(out: &mut [f32], w: &[f32], row: impl Fn(usize) -> &'a [f32]) {
    weighted_sum_body::<128, 64, 32, 16>(out, w, row)
}

/// 64 lanes: 8 registers of 8, enough independent sums to hide the adds' latency.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weighted_sum_avx2<'a>(out: &mut [f32], w: &[f32], row: impl Fn(usize) -> &'a [f32]) {
    weighted_sum_body::<64, 32, 16, 8>(out, w, row)
}

/// Each output lane is 0 + w[0]·x[0] + w[1]·x[1] + … in tap order, however many lanes are
/// summed at once: the widths change the speed, not the bits. Whole chunks of `A` lanes
/// first, each held in registers across the taps. The rest goes in chunks of `B`, and its
/// last part as one chunk of the narrowest of `B`, `C`, `D` that covers it, placed to end
/// at the last lane: it sums some lanes again, to the same bits, where narrower chunks one
/// after the other would each wait on the latency of their own few sums (an x-row of 91
/// with 64, 32, 16, 8: lanes 0–63, then 59–90). Lines shorter than `D` go one tap at a time.
#[inline(always)]
fn weighted_sum_body<'a, const A: usize, const B: usize, const C: usize, const D: usize>(out: &mut [f32], w: &[f32], row: impl Fn(usize) -> &'a [f32]) {
    let n = out.len();
    let mut done = in_chunks::<A>(out, 0, w, &row);
    done = in_chunks::<B>(out, done, w, &row);
    // Under B lanes left: the narrowest chunk that covers them, ending at the last lane,
    // where the line is that wide; else whole chunks of the next width down.
    if n - done > C {
        if n >= B {
            in_chunks::<B>(out, n - B, w, &row);
            return;
        }
        done = in_chunks::<C>(out, done, w, &row);
    }
    if n - done > D {
        if n >= C {
            in_chunks::<C>(out, n - C, w, &row);
            return;
        }
        done = in_chunks::<D>(out, done, w, &row);
    }
    if n - done > 0 && n >= D {
        in_chunks::<D>(out, n - D, w, &row);
        return;
    }
    let rest = &mut out[done..];
    rest.fill(0.0);
    for (t, &wt) in w.iter().enumerate() {
        rest.iter_mut().zip(&row(t)[done..]).for_each(|(a, x)| *a += wt * x);
    }
}

/// Sums `out[from..]` in whole chunks of `N` lanes; returns where the whole chunks end.
#[inline(always)]
fn in_chunks<'a, const N: usize>(out: &mut [f32], from: usize, w: &[f32], row: &impl Fn(usize) -> &'a [f32]) -> usize {
    let whole = from + (out.len() - from) / N * N;
    for (c, o) in out[from..whole].chunks_exact_mut(N).enumerate() {
        let at = from + c * N;
        let mut acc = [0f32; N];
        for (t, &wt) in w.iter().enumerate() {
            let x: &[f32; N] = row(t)[at..at + N].try_into().expect("a chunk");
            acc.iter_mut().zip(x).for_each(|(a, x)| *a += wt * x);
        }
        o.copy_from_slice(&acc);
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum's bits do not depend on how many lanes go at once, nor on the instruction
    /// set the machine dispatches to: lines of 1–300 values, 1–17 taps, against 1 lane.
    #[test]
    fn weighted_sums_are_the_same_bits_at_every_width() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for (len, taps) in [(1, 1), (7, 3), (9, 2), (12, 4), (17, 15), (33, 7), (49, 15), (63, 5), (64, 9), (91, 11), (130, 17), (300, 13)] {
            let w: Vec<f32> = (0..taps).map(|_| next()).collect();
            let rows: Vec<Vec<f32>> = (0..taps).map(|_| (0..len).map(|_| next() * 1e3).collect()).collect();
            let sum = |f: &dyn Fn(&mut [f32])| {
                let mut out = vec![f32::NAN; len];
                f(&mut out);
                out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            let one = sum(&|o| weighted_sum_body::<1, 1, 1, 1>(o, &w, |t| &rows[t]));
            assert_eq!(sum(&|o| weighted_sum_body::<CHUNK, 16, 8, 4>(o, &w, |t| &rows[t])), one, "{len} × {taps}");
            assert_eq!(sum(&|o| weighted_sum_body::<128, 64, 32, 16>(o, &w, |t| &rows[t])), one, "{len} × {taps}");
            assert_eq!(sum(&|o| weighted_sum_body::<64, 32, 16, 8>(o, &w, |t| &rows[t])), one, "{len} × {taps}");
            assert_eq!(sum(&|o| weighted_sum(o, &w, |t| &rows[t])), one, "{len} × {taps}, dispatched");
        }
    }

    #[test]
    fn reflection_is_scipys() {
        // scipy.ndimage "reflect" on n = 3: … b a | a b c | c b a | a b c …
        let idx: Vec<usize> = (-5..8).map(|i| reflect(i, 3)).collect();
        assert_eq!(idx, [1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]);
    }

    #[test]
    fn a_constant_stays_and_an_impulse_spreads_as_the_kernel() {
        let eye = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]];
        let g = Gaussian3d::new(6.0, eye);
        // σ = 6 / (2.3548 · 2) = 1.274 voxels → r = ⌊5.096 + 0.5⌋ = 5; along z σ = 0.849, r = 3.
        assert_eq!(g.radii(), [5, 5, 3]);
        let shape = [11, 11, 7];
        let mut line = Vec::new();
        let mut flat = vec![3.5f32; 11 * 11 * 7];
        g.apply(&mut flat, shape, &mut line);
        assert!(flat.iter().all(|v| (v - 3.5).abs() < 1e-5));
        // An impulse in the middle becomes the outer product of the three kernels.
        let mut v = vec![0f32; 11 * 11 * 7];
        let centre = 5 + 11 * 5 + 121 * 3;
        v[centre] = 1.0;
        g.apply(&mut v, shape, &mut line);
        let [kx, ky, kz] = &g.kernels;
        for (dz, wz) in kz.iter().enumerate() {
            for (dy, wy) in ky.iter().enumerate() {
                for (dx, wx) in kx.iter().enumerate() {
                    let at = dx + 11 * dy + 121 * dz;
                    assert!((v[at] - wx * wy * wz).abs() < 1e-8);
                }
            }
        }
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    /// The region's values at its voxels against the whole grid's, bit for bit: random
    /// values (non-finite ones too) outside the voxels, voxel sets inside the grid and at its
    /// sides, kernels wider than the grid along an axis.
    #[test]
    fn filtering_a_region_equals_the_whole_grid_at_its_voxels() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // One scratch for everything: what a call leaves in it must not matter.
        let mut scratch = Vec::new();
        for case in 0..24 {
            let shape = [rng.random_range(3..30), rng.random_range(3..30), rng.random_range(2..20)];
            let size: usize = shape.iter().product();
            let vox = [rng.random_range(1.0..4.0), rng.random_range(1.0..4.0), rng.random_range(1.0..5.0)];
            let linear = [[vox[0], 0.0, 0.0], [0.0, vox[1], 0.0], [0.0, 0.0, vox[2]]];
            let g = Gaussian3d::new(rng.random_range(2.0..14.0), linear);
            // A box of voxels somewhere (at a side of the grid in some cases), a few dropped.
            let lo: [usize; 3] = std::array::from_fn(|a| rng.random_range(0..shape[a]));
            let hi: [usize; 3] = std::array::from_fn(|a| rng.random_range(lo[a]..shape[a]) + 1);
            let voxels: Vec<usize> = (0..size)
                .filter(|&l| {
                    let ijk = [l % shape[0], l / shape[0] % shape[1], l / (shape[0] * shape[1])];
                    (0..3).all(|a| (lo[a]..hi[a]).contains(&ijk[a])) && rng.random_bool(0.8)
                })
                .collect();
            let mut whole: Vec<f32> = (0..size).map(|_| rng.random_range(-3.0..3.0)).collect();
            whole[rng.random_range(0..size)] = f32::NAN;
            let mut part = whole.clone();
            g.apply(&mut whole, shape, &mut scratch);
            let region = g.region(shape, voxels.iter().copied());
            g.apply_within(&mut part, shape, &region, &mut scratch);
            for &l in &voxels {
                assert_eq!(part[l].to_bits(), whole[l].to_bits(), "case {case}: voxel {l}");
            }
            // Values at the voxels only (zero elsewhere), the box alone held: the surrogates' case.
            let region = g.region_zero_outside(shape, voxels.iter().copied());
            let mut sparse = vec![0f32; size];
            let mut boxed = vec![0f32; region.len()];
            for &l in &voxels {
                sparse[l] = rng.random_range(-3.0..3.0);
                boxed[region.local(shape, l)] = sparse[l];
            }
            g.apply(&mut sparse, shape, &mut scratch);
            g.apply_boxed(&mut boxed, &region, &mut scratch);
            for &l in &voxels {
                assert_eq!(boxed[region.local(shape, l)].to_bits(), sparse[l].to_bits(), "case {case}: boxed voxel {l}");
            }
        }
    }

    #[test]
    fn non_finite_values_are_zeroed_first() {
        let g = Gaussian3d::new(4.0, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        let mut v = vec![1f32; 27];
        v[13] = f32::NAN;
        g.apply(&mut v, [3, 3, 3], &mut Vec::new());
        assert!(v.iter().all(|x| x.is_finite() && *x < 1.0));
    }
}
