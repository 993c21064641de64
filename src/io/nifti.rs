//! NIfTI-1 images: header validation, the affine and TR rules, streaming reads of 4D BOLD
//! inside a mask, and atomic float32 writes on the grid of an input image.
//!
//! The header is parsed by the `nifti` crate; voxel data are decoded here, one 3D volume
//! at a time, so a 4D run never needs more memory than its masked voxels plus one volume.
//!
//! Longer than ~500 lines on purpose: one format, read and written in one place, so the
//! header rules (affine, TR, scaling, sizes) are checked the same way on both sides.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use ndarray::ShapeBuilder;
use ndarray::{s, Array2, Array3, Array4, ArrayView2, ArrayView3, ArrayViewMut1, Axis};
use nifti::{Endianness, NiftiHeader, NiftiType};

use super::affine::Affine;

mod write;
pub use write::{write_map, write_masked, write_series, write_volumes};
use crate::error::{in_words, Error, Result};

/// Plausible repetition times, in seconds. Outside this range the TR rule below applies.
pub const PLAUSIBLE_TR_S: std::ops::RangeInclusive<f64> = 0.05..=100.0;

/// The spatial frame of an image: its shape and the header fields that place it in the world.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub shape: [usize; 3],
    pub affine: Affine,
    /// The source header's spatial fields (qform, sform code, zooms), copied into every map
    /// written on this grid so that readers that prefer the qform see the same space.
    spatial: SpatialFields,
}

#[derive(Debug, Clone, PartialEq)]
struct SpatialFields {
    pixdim_xyz: [f32; 4],
    qform_code: i16,
    sform_code: i16,
    quatern: [f32; 6],
}

impl Grid {
    /// A grid made here rather than read: `affine` as its sform (code 2, aligned), no qform.
    pub fn with_affine(shape: [usize; 3], affine: Affine) -> Grid {
        let a = &affine.0;
        let norm = |c: usize| (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt() as f32;
        let spatial = SpatialFields {
            pixdim_xyz: [1.0, norm(0), norm(1), norm(2)],
            qform_code: 0,
            sform_code: 2,
            quatern: [0.0; 6],
        };
        Grid { shape, affine, spatial }
    }

    pub fn n_voxels(&self) -> usize {
        self.shape.iter().product()
    }

    /// Same shape and affines equal within `tol_mm` (the header stores them in float32).
    pub fn matches(&self, other: &Grid, tol_mm: f64) -> bool {
        self.shape == other.shape && self.affine.max_abs_diff(&other.affine) <= tol_mm
    }

    /// Errors unless `other` (read from `other_path`) lies on this grid (read from `path`).
    pub fn ensure_same(&self, path: &Path, other: &Grid, other_path: &Path) -> Result<()> {
        if self.matches(other, 1e-4) {
            return Ok(());
        }
        Err(Error::format(
            other_path,
            format!(
                "image grid {:?} with affine {:?} differs from the grid of {} ({:?}, affine {:?}); resample it onto that grid first",
                other.shape, other.affine.0, path.display(), self.shape, self.affine.0
            ),
        ))
    }
}

/// A validated NIfTI-1 header.
#[derive(Debug, Clone)]
pub struct ImageHeader {
    pub path: PathBuf,
    pub grid: Grid,
    /// Number of 3D volumes (the 4th dimension; 1 for a 3D image).
    pub n_vols: usize,
    /// Repetition time in seconds, after the unit rule; `None` for 3D images or pixdim[4] = 0.
    pub tr: Option<f64>,
    /// A note when the TR rule had to reinterpret the header (also logged as a warning).
    pub tr_note: Option<String>,
    pub datatype: NiftiType,
    raw: NiftiHeader,
}

/// A whole image in memory, voxel values after scl_slope/scl_inter, shape (x, y, z, t).
#[derive(Debug, Clone)]
pub struct Image {
    pub header: ImageHeader,
    pub data: Array4<f32>,
}

/// A set of voxels on a grid, in x-fastest (NIfTI file) order.
#[derive(Debug, Clone)]
pub struct Mask {
    pub grid: Grid,
    /// Linear index of each voxel in the file's x-fastest order.
    pub linear: Vec<usize>,
}

/// BOLD time series inside a mask: `data` is T × V (scans × masked voxels), f32 as
/// stored, or f64 for a caller that computes in f64 (read straight into it: no f32 copy
/// of the run beside the f64 one).
#[derive(Debug, Clone)]
pub struct MaskedBold<T = f32> {
    pub header: ImageHeader,
    pub data: Array2<T>,
}

/// What a run's values are read into: f32, or f64 (every f32 exactly).
pub trait BoldValue: Copy + Send + From<f32> {}
impl BoldValue for f32 {}
impl BoldValue for f64 {}

impl<T> MaskedBold<T> {
    /// Consecutive voxel blocks of at most `size` columns (the unit the encoders stream over).
    pub fn blocks(&self, size: usize) -> impl Iterator<Item = (usize, ArrayView2<'_, T>)> {
        let size = size.max(1);
        self.data
            .axis_chunks_iter(Axis(1), size)
            .enumerate()
            .map(move |(b, v)| (b * size, v))
    }
}

impl Mask {
    /// Every voxel of the grid.
    pub fn full(grid: &Grid) -> Mask {
        Mask {
            grid: grid.clone(),
            linear: (0..grid.n_voxels()).collect(),
        }
    }

    /// Voxels where `keep` holds for the first volume of `image`.
    pub fn from_image(image: &Image, keep: impl Fn(f32) -> bool) -> Mask {
        Mask::from_volume(&image.header.grid, image.data.index_axis(Axis(3), 0), keep)
    }

    /// Voxels of a volume on `grid` where `keep` holds.
    pub fn from_volume(grid: &Grid, vol: ArrayView3<f32>, keep: impl Fn(f32) -> bool) -> Mask {
        let linear = fortran_indices(grid.shape)
            .filter(|&(_, [i, j, k])| keep(vol[[i, j, k]]))
            .map(|(l, _)| l)
            .collect();
        Mask {
            grid: grid.clone(),
            linear,
        }
    }

    pub fn len(&self) -> usize {
        self.linear.len()
    }

    pub fn is_empty(&self) -> bool {
        self.linear.is_empty()
    }

    /// The linear index (x fastest, as a volume is stored) of each masked voxel.
    pub fn linear(&self) -> impl Iterator<Item = usize> + '_ {
        self.linear.iter().copied()
    }

    /// (i, j, k) of each masked voxel.
    pub fn ijk(&self) -> impl Iterator<Item = [usize; 3]> + '_ {
        let [nx, ny, _] = self.grid.shape;
        self.linear
            .iter()
            .map(move |&l| [l % nx, (l / nx) % ny, l / (nx * ny)])
    }

    /// The masked voxels of every volume of `image` (on this mask's grid): volumes × len.
    pub fn rows(&self, image: &Image) -> Array2<f64> {
        let ijk: Vec<[usize; 3]> = self.ijk().collect();
        let vols = image.data.dim().3;
        Array2::from_shape_fn((vols, ijk.len()), |(a, v)| {
            let [x, y, z] = ijk[v];
            image.data[[x, y, z, a]] as f64
        })
    }

    /// Scatters one value per masked voxel into a volume (zero elsewhere).
    pub fn unmask(&self, values: &[f32]) -> Array3<f32> {
        let mut vol = Array3::zeros(self.grid.shape);
        for (ijk, &v) in self.ijk().zip(values) {
            vol[ijk] = v;
        }
        vol
    }
}

/// Linear (x-fastest) index with its (i, j, k).
fn fortran_indices(shape: [usize; 3]) -> impl Iterator<Item = (usize, [usize; 3])> {
    let [nx, ny, nz] = shape;
    (0..nz).flat_map(move |k| {
        (0..ny).flat_map(move |j| (0..nx).map(move |i| (i + nx * (j + ny * k), [i, j, k])))
    })
}

/// Reads and validates the header of a `.nii` or `.nii.gz` file.
pub fn read_header(path: &Path) -> Result<ImageHeader> {
    let len = super::regular_file(path)?;
    let bytes = header_bytes(path)?;
    check_dims(path, &bytes)?;
    let raw = NiftiHeader::from_reader(&bytes[..]).map_err(|e| {
        let why = nifti_error(e);
        Error::format(path, format!("not a readable NIfTI-1 header: {why}"))
    })?;
    validate(path, raw, len)
}

/// The nifti crate's error in words: its I/O variant prints as `Io(Kind(UnexpectedEof))`.
fn nifti_error(e: nifti::NiftiError) -> String {
    match e {
        nifti::NiftiError::Io(io) => in_words(&io),
        other => other.to_string(),
    }
}

/// Size of a NIfTI-1 header.
const HEADER_LEN: usize = 348;

fn is_gz_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The first 348 bytes of the file (decompressed for `.nii.gz`), read once so that the
/// dims can be checked in the file's own byte order before the header is parsed.
fn header_bytes(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let source: Box<dyn Read> = if is_gz_path(path) {
        Box::new(MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    source
        .take(HEADER_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Error::format(
                path,
                format!("cannot read the NIfTI-1 header: {}", in_words(&e)),
            )
        })?;
    if bytes.len() < HEADER_LEN {
        return Err(Error::format(
            path,
            format!(
                "file ends inside the NIfTI-1 header ({} of {HEADER_LEN} bytes): truncated, or not a NIfTI file",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// dim[0] and the used dims, as signed numbers in the header's byte order. The byte order
/// is found from sizeof_hdr (348): the nifti crate guesses it from dim[0] instead, so a
/// dim[0] of 8 would otherwise be reported byte-swapped (2048) and a negative dim as 65491.
fn check_dims(path: &Path, b: &[u8]) -> Result<()> {
    let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
    let little = match (i32::from_le_bytes(word(0)), i32::from_be_bytes(word(0))) {
        (348, _) => true,
        (_, 348) => false,
        (n, _) => {
            return Err(Error::format(
                path,
                format!("sizeof_hdr = {n}, not 348: not a NIfTI-1 header"),
            ))
        }
    };
    let dim = |d: usize| {
        let a = [b[40 + 2 * d], b[41 + 2 * d]];
        if little {
            i16::from_le_bytes(a)
        } else {
            i16::from_be_bytes(a)
        }
    };
    let ndim = dim(0);
    if !(1..=7).contains(&ndim) {
        return Err(Error::format(
            path,
            format!("dim[0]={ndim}: the number of dimensions must be 1 to 7"),
        ));
    }
    if let Some(d) = (1..=ndim as usize).find(|&d| dim(d) < 1) {
        return Err(Error::format(
            path,
            format!(
                "dim[{d}]={}: every used dimension must be at least 1",
                dim(d)
            ),
        ));
    }
    Ok(())
}

/// (Longer than ~80 lines on purpose: Every header rule in one place, in the order nibabel applies them, so a file fails on the rule nibabel would name first.)
fn validate(path: &Path, raw: NiftiHeader, file_len: u64) -> Result<ImageHeader> {
    let bad = |msg: String| Error::format(path, msg);
    if &raw.magic != b"n+1\0" {
        return Err(bad(format!(
            "magic {:?} is not \"n+1\": only single-file NIfTI-1 (.nii, .nii.gz) is supported",
            String::from_utf8_lossy(&raw.magic)
        )));
    }
    let ndim = raw.dim[0] as usize;
    if !(1..=7).contains(&ndim) {
        return Err(bad(format!("dim[0] = {ndim}, expected 1 to 7")));
    }
    let dim = |d: usize| if d <= ndim { raw.dim[d] as usize } else { 1 };
    if let Some(d) = (1..=ndim).find(|&d| raw.dim[d] == 0) {
        return Err(bad(format!(
            "dim[{d}] = 0, every used dimension must be at least 1"
        )));
    }
    if (5..=ndim).any(|d| raw.dim[d] > 1) {
        return Err(bad(format!(
            "dims {:?}: images of more than 4 dimensions are not supported",
            &raw.dim[1..=ndim]
        )));
    }
    let datatype = raw.data_type().ok().filter(|t| element_size(*t).is_some());
    let datatype = datatype.ok_or_else(|| bad(format!("datatype code {} is not one of uint8, int8, int16, uint16, int32, uint32, float32, float64", raw.datatype)))?;
    let size = element_size(datatype).unwrap_or(0);
    if raw.bitpix as usize != size * 8 {
        return Err(bad(format!(
            "bitpix = {} but datatype {datatype:?} has {} bits",
            raw.bitpix,
            size * 8
        )));
    }
    if !(raw.vox_offset.is_finite() && raw.vox_offset >= 348.0) {
        return Err(bad(format!(
            "vox_offset = {}, expected at least 348",
            raw.vox_offset
        )));
    }
    let shape = [dim(1), dim(2), dim(3)];
    let zooms = [raw.pixdim[1], raw.pixdim[2], raw.pixdim[3]];
    if zooms.iter().any(|z| !z.is_finite() || *z == 0.0) {
        return Err(bad(format!(
            "voxel sizes pixdim[1..3] = {zooms:?} must be finite and non-zero"
        )));
    }
    let affine = best_affine(&raw, shape);
    if affine.inverse().is_none() || affine.0.iter().flatten().any(|v| !v.is_finite()) {
        return Err(bad(format!(
            "the voxel-to-world affine {:?} is not invertible",
            affine.0
        )));
    }
    let n_vols = dim(4);
    let (tr, tr_note) = if n_vols > 1 || ndim >= 4 {
        repetition_time(&raw)
    } else {
        (None, None)
    };
    let spatial = SpatialFields {
        pixdim_xyz: [raw.pixdim[0], raw.pixdim[1], raw.pixdim[2], raw.pixdim[3]],
        qform_code: raw.qform_code,
        sform_code: raw.sform_code,
        quatern: [
            raw.quatern_b,
            raw.quatern_c,
            raw.quatern_d,
            raw.quatern_x,
            raw.quatern_y,
            raw.quatern_z,
        ],
    };
    let header = ImageHeader {
        path: path.to_path_buf(),
        grid: Grid {
            shape,
            affine,
            spatial,
        },
        n_vols,
        tr,
        tr_note,
        datatype,
        raw,
    };
    check_data_size(&header, file_len)?;
    Ok(header)
}

/// sform when sform_code > 0, else qform when qform_code > 0, else the base affine
/// (nibabel's `get_best_affine`).
fn best_affine(h: &NiftiHeader, shape: [usize; 3]) -> Affine {
    if h.sform_code > 0 {
        Affine::from_sform(h)
    } else if h.qform_code > 0 {
        Affine::from_qform(h)
    } else {
        Affine::base(
            shape,
            [h.pixdim[1], h.pixdim[2], h.pixdim[3]].map(|z| z.abs() as f64),
        )
    }
}

/// The TR rule. pixdim[4] is converted to seconds by `xyzt_units` (unknown units = seconds).
/// If the result is outside [`PLAUSIBLE_TR_S`], the header's unit is taken to be wrong:
/// a value that is plausible in milliseconds (e.g. 2000 labelled seconds) is divided by
/// 1000, one plausible in seconds (e.g. 2 labelled milliseconds) is kept as seconds; a
/// note says so. Otherwise the value is kept with a note that it is implausible.
pub fn repetition_time(h: &NiftiHeader) -> (Option<f64>, Option<String>) {
    let raw = h.pixdim[4] as f64;
    if !raw.is_finite() || raw <= 0.0 {
        return (
            None,
            Some(format!(
                "pixdim[4] = {raw}: no repetition time in the header"
            )),
        );
    }
    let (unit, to_s) = match h.xyzt_units & 0x38 {
        16 => ("ms", 1e-3),
        24 => ("us", 1e-6),
        8 => ("s", 1.0),
        _ => ("unknown units (taken as s)", 1.0),
    };
    let tr = raw * to_s;
    if PLAUSIBLE_TR_S.contains(&tr) {
        return (Some(tr), None);
    }
    for (guess, factor) in [("ms", 1e-3), ("s", 1.0)] {
        if PLAUSIBLE_TR_S.contains(&(raw * factor)) {
            let note = format!(
                "TR {raw} {unit} is implausible; read as {raw} {guess} = {} s",
                raw * factor
            );
            return (Some(raw * factor), Some(note));
        }
    }
    (
        Some(tr),
        Some(format!(
            "TR {raw} {unit} = {tr} s is outside {PLAUSIBLE_TR_S:?} s; kept as is"
        )),
    )
}

fn element_size(t: NiftiType) -> Option<usize> {
    use NiftiType::*;
    match t {
        Uint8 | Int8 => Some(1),
        Int16 | Uint16 => Some(2),
        Int32 | Uint32 | Float32 => Some(4),
        Float64 => Some(8),
        _ => None,
    }
}

impl ImageHeader {
    fn volume_bytes(&self) -> usize {
        self.grid.n_voxels() * element_size(self.datatype).unwrap_or(1)
    }

    /// Bytes of voxel data the header declares (u128: dims of 32767⁴ × 8 bytes fit).
    fn data_bytes(&self) -> u128 {
        self.volume_bytes() as u128 * self.n_vols as u128
    }

    /// "dims [x, y, z] × t volumes of Int16", for size errors.
    fn extent(&self) -> String {
        format!(
            "dims {:?} × {} volumes of {:?}",
            self.grid.shape, self.n_vols, self.datatype
        )
    }

    fn is_gz(&self) -> bool {
        is_gz_path(&self.path)
    }

    /// Errors unless the image is 4-D: a 3-D image is one volume, not a run (said before
    /// the missing TR that follows from it).
    pub fn ensure_bold(&self) -> Result<()> {
        if self.raw.dim[0] < 4 {
            return Err(Error::format(
                &self.path,
                "is 3-D (one volume); a BOLD run needs 4 dimensions",
            ));
        }
        Ok(())
    }

    /// The repetition time of a BOLD run: errors for a 3-D image or a header without one.
    pub fn bold_tr(&self) -> Result<f64> {
        self.ensure_bold()?;
        self.tr.ok_or_else(|| {
            let why = self
                .tr_note
                .as_deref()
                .unwrap_or("no repetition time in the header");
            Error::format(&self.path, why)
        })
    }

    /// (slope, intercept) as nibabel applies them: a zero or non-finite slope means none.
    fn scaling(&self) -> (f64, f64) {
        let (m, b) = (self.raw.scl_slope as f64, self.raw.scl_inter as f64);
        if m == 0.0 || !m.is_finite() {
            (1.0, 0.0)
        } else {
            (m, if b.is_finite() { b } else { 0.0 })
        }
    }
}

/// Deflate compresses at most 1032:1, so a `.nii.gz` of L bytes holds at most ~1032·L
/// bytes of image: a header declaring more is forged or corrupt, whatever the memory.
const GZIP_MAX_RATIO: u128 = 1032;

/// The data size the header declares against what the file can hold, before anything is
/// allocated: exactly for `.nii`, by the deflate bound for `.nii.gz` (the stream is then
/// checked as it is read).
fn check_data_size(h: &ImageHeader, file_len: u64) -> Result<()> {
    let declared = h.data_bytes();
    let offset = h.raw.vox_offset as u128;
    let len = file_len as u128;
    if h.is_gz() {
        let most = len * GZIP_MAX_RATIO;
        if offset + declared > most {
            return Err(Error::format(
                &h.path,
                format!(
                    "declares {declared} bytes of data ({}), more than a gzip file of {len} bytes can hold (at most {most}): a corrupt or forged header",
                    h.extent()
                ),
            ));
        }
    } else if offset + declared > len {
        return Err(Error::format(
            &h.path,
            format!(
                "truncated: declares {declared} bytes of data, holds {} ({})",
                len.saturating_sub(offset),
                h.extent()
            ),
        ));
    }
    Ok(())
}

/// Errors unless `bytes` of memory are available for reading `path` (said before the
/// allocation, which would otherwise abort the process or draw the OOM killer).
fn ensure_affordable(path: &Path, what: &str, bytes: u128) -> Result<()> {
    let have = super::affordable_memory() as u128;
    if bytes > have {
        return Err(Error::format(
            path,
            format!(
                "{what} needs {} of memory, {} is available",
                super::human_bytes(bytes),
                super::human_bytes(have)
            ),
        ));
    }
    Ok(())
}

/// Reads into `buf` until it is full or the data end; returns the bytes read. The end of
/// a compressed stream cut short counts as an end, so the error can say how much was there.
fn fill(source: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match source.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams the volumes of an image, decoding each into f32 with scaling applied.
struct VolumeReader {
    header: ImageHeader,
    source: Box<dyn Read>,
    bytes: Vec<u8>,
    next: usize,
}

impl VolumeReader {
    fn open(header: ImageHeader) -> Result<Self> {
        let file = File::open(&header.path).map_err(|e| Error::io(&header.path, e))?;
        let mut source: Box<dyn Read> = if header.is_gz() {
            Box::new(MultiGzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let offset = header.raw.vox_offset as u64;
        let skipped = std::io::copy(&mut (&mut source).take(offset), &mut std::io::sink())
            .map_err(|e| {
                let why = in_words(&e);
                Error::format(&header.path, format!("cannot read past the header: {why}"))
            })?;
        if skipped < offset {
            return Err(Error::format(
                &header.path,
                format!("file ends inside the header ({skipped} of {offset} bytes)"),
            ));
        }
        let bytes = vec![0; header.volume_bytes()];
        Ok(VolumeReader {
            header,
            source,
            bytes,
            next: 0,
        })
    }

    /// Decodes the next volume into `out` (x-fastest order). Returns false after the last.
    fn next_into(&mut self, out: &mut [f32]) -> Result<bool> {
        if self.next == self.header.n_vols {
            return Ok(false);
        }
        let h = &self.header;
        let got = fill(&mut self.source, &mut self.bytes).map_err(|e| {
            Error::format(
                &h.path,
                format!("volume {} of {}: {}", self.next + 1, h.n_vols, in_words(&e)),
            )
        })?;
        if got < self.bytes.len() {
            let holds = self.next as u128 * self.bytes.len() as u128 + got as u128;
            return Err(Error::format(
                &h.path,
                format!(
                    "truncated: declares {} bytes of data, holds {holds} ({})",
                    h.data_bytes(),
                    h.extent()
                ),
            ));
        }
        decode(&self.bytes, h.datatype, h.raw.endianness, h.scaling(), out);
        self.next += 1;
        Ok(true)
    }
}

fn decode(bytes: &[u8], t: NiftiType, endian: Endianness, (m, b): (f64, f64), out: &mut [f32]) {
    fn each<const N: usize>(
        bytes: &[u8],
        out: &mut [f32],
        f: impl Fn([u8; N]) -> f64,
        m: f64,
        b: f64,
    ) {
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(N)) {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            *o = (f(a) * m + b) as f32;
        }
    }
    let le = endian == Endianness::Little;
    macro_rules! num {
        ($t:ty, $n:literal) => {
            each::<$n>(
                bytes,
                out,
                |a| {
                    (if le {
                        <$t>::from_le_bytes(a)
                    } else {
                        <$t>::from_be_bytes(a)
                    }) as f64
                },
                m,
                b,
            )
        };
    }
    use NiftiType::*;
    match t {
        Uint8 => num!(u8, 1),
        Int8 => num!(i8, 1),
        Int16 => num!(i16, 2),
        Uint16 => num!(u16, 2),
        Int32 => num!(i32, 4),
        Uint32 => num!(u32, 4),
        Float32 => num!(f32, 4),
        Float64 => num!(f64, 8),
        _ => unreachable!("datatypes are validated in read_header"),
    }
}

/// Reads a whole 3D or 4D image into memory (x, y, z, t).
pub fn read_image(path: &Path) -> Result<Image> {
    read_image_of(read_header(path)?)
}

fn read_image_of(header: ImageHeader) -> Result<Image> {
    let path = header.path.clone();
    let voxels = header.grid.n_voxels() as u128;
    let need = 4 * voxels * (header.n_vols as u128 + 1) + header.volume_bytes() as u128;
    ensure_affordable(&path, "reading the image", need)?;
    let [nx, ny, nz] = header.grid.shape;
    let mut data = Array4::<f32>::zeros((nx, ny, nz, header.n_vols).f());
    let mut reader = VolumeReader::open(header.clone())?;
    let mut buf = vec![0f32; header.grid.n_voxels()];
    let mut t = 0;
    while reader.next_into(&mut buf)? {
        let vol =
            ArrayView3F::from_shape((nx, ny, nz).f(), &buf).expect("buffer sized from the grid");
        data.index_axis_mut(Axis(3), t).assign(&vol);
        t += 1;
    }
    Ok(Image { header, data })
}

type ArrayView3F<'a> = ndarray::ArrayView3<'a, f32>;

/// Reads a mask image: voxels whose value is non-zero (and not NaN). A mask is one volume:
/// a 4-D image of several would leave which volume is meant to a guess.
pub fn read_mask(path: &Path) -> Result<Mask> {
    let header = read_header(path)?;
    if header.n_vols > 1 {
        return Err(Error::format(
            path,
            format!(
                "a mask must be 3-D, this image has {} volumes (dims {:?})",
                header.n_vols,
                &header.raw.dim[1..=header.raw.dim[0] as usize]
            ),
        ));
    }
    let mask = Mask::from_image(&read_image_of(header)?, |v| v != 0.0 && !v.is_nan());
    if mask.is_empty() {
        return Err(Error::format(path, "the mask has no non-zero voxel"));
    }
    Ok(mask)
}

/// Reads a map's volumes (one for a 3-D map) inside `mask`, one volume at a time:
/// volumes × mask voxels, as [`Mask::rows`] of the whole image but holding one grid
/// volume, not all of them (a subject's 64-atom β map at 2 mm: 17 MB, not 231 MB).
pub fn read_map_rows(path: &Path, mask: &Mask) -> Result<Array2<f64>> {
    let header = read_header(path)?;
    mask.grid.ensure_same(Path::new("the mask"), &header.grid, path)?;
    let n = header.grid.n_voxels();
    ensure_affordable(path, "reading the map", 8 * header.n_vols as u128 * mask.len() as u128 + 4 * n as u128)?;
    let mut data = Array2::<f64>::zeros((header.n_vols, mask.len()));
    let mut reader = VolumeReader::open(header)?;
    let mut buf = vec![0f32; n];
    for mut row in data.outer_iter_mut() {
        reader.next_into(&mut buf)?;
        row.iter_mut().zip(&mask.linear).for_each(|(dst, &l)| *dst = f64::from(buf[l]));
    }
    Ok(data)
}

/// Reads a 4D BOLD run inside `mask` (all voxels when `None`), one volume at a time.
/// The mask must lie on the run's grid.
pub fn read_bold(path: &Path, mask: Option<(&Path, &Mask)>) -> Result<MaskedBold> {
    read_bold_as(path, mask, None::<&fn(&mut [f32], &mut Vec<f32>)>)
}

/// Volumes of a run being filtered at once (each with its scratch): what a filter adds to
/// the memory of a read, whatever the length of the run.
pub const FILTERED_IN_FLIGHT: usize = 4;

/// As [`read_bold`], with `each` applied to every whole volume (x fastest, on the run's
/// grid; the second argument is scratch owned by the volume's slot) before it is masked.
///
/// On a machine with more than one core a helper thread filters volumes while this one
/// decodes the next; when [`FILTERED_IN_FLIGHT`] volumes wait, this thread filters one
/// itself instead of waiting. A filter thus costs a few volumes of memory, not a run, and
/// its time is shared by two cores (no thread spins: both block on channels). Each
/// volume goes to its own row, so the result does not depend on who filtered it.
pub fn read_bold_each(
    path: &Path,
    mask: Option<(&Path, &Mask)>,
    each: impl Fn(&mut [f32], &mut Vec<f32>) + Sync,
) -> Result<MaskedBold> {
    read_bold_as(path, mask, Some(&each))
}

/// [`read_bold`] (`each`: None) or [`read_bold_each`], into values of type `T`.
pub fn read_bold_as<T: BoldValue, F: Fn(&mut [f32], &mut Vec<f32>) + Sync>(
    path: &Path,
    mask: Option<(&Path, &Mask)>,
    each: Option<&F>,
) -> Result<MaskedBold<T>> {
    let header = read_header(path)?;
    header.ensure_bold()?;
    // Said here, where the TR matters (maps of statistics carry none).
    if let Some(note) = &header.tr_note {
        tracing::warn!("{}: {note}", path.display());
    }
    let full;
    let mask = match mask {
        Some((mask_path, m)) => {
            m.grid.ensure_same(mask_path, &header.grid, path)?;
            m
        }
        None => {
            full = Mask::full(&header.grid);
            &full
        }
    };
    let voxels = header.grid.n_voxels() as u128;
    // With a filter: a volume and its scratch per slot.
    let slots = if each.is_some() { 2 * FILTERED_IN_FLIGHT as u128 } else { 1 };
    let value = std::mem::size_of::<T>() as u128;
    let need = value * header.n_vols as u128 * mask.len() as u128 + 4 * slots * voxels + header.volume_bytes() as u128;
    ensure_affordable(path, "reading the run", need)?;
    let mut data = Array2::<T>::from_elem((header.n_vols, mask.len()), T::from(0.0));
    let mut reader = VolumeReader::open(header.clone())?;
    let n = header.grid.n_voxels();
    let masked = |row: ArrayViewMut1<T>, buf: &[f32]| {
        row.into_iter().zip(&mask.linear).for_each(|(dst, &l)| *dst = T::from(buf[l]));
    };
    let helped = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    match each {
        Some(each) if helped => {
            let slots = (0..FILTERED_IN_FLIGHT).map(|_| (vec![0f32; n], Vec::new()));
            let filter = |(row, (mut buf, mut scratch)): (ArrayViewMut1<T>, Slot)| {
                each(&mut buf, &mut scratch);
                masked(row, &buf);
                (buf, scratch)
            };
            read_beside_helper(&mut reader, data.outer_iter_mut(), slots, &filter)?;
        }
        _ => {
            let (mut buf, mut scratch) = (vec![0f32; n], Vec::new());
            for row in data.outer_iter_mut() {
                reader.next_into(&mut buf)?;
                if let Some(each) = each {
                    each(&mut buf, &mut scratch);
                }
                masked(row, &buf);
            }
        }
    }
    Ok(MaskedBold { header, data })
}

/// A volume's buffer and its filter's scratch.
type Slot = (Vec<f32>, Vec<f32>);

/// Decodes each volume of `reader` into a free slot and hands it with its row to `filter`,
/// run by a helper thread or, when every slot is waiting, by this one. A slot is free again
/// once `filter` returns it.
fn read_beside_helper<'r, T: Send + 'r>(
    reader: &mut VolumeReader,
    rows: impl Iterator<Item = ArrayViewMut1<'r, T>>,
    slots: impl Iterator<Item = Slot>,
    filter: &(impl Fn((ArrayViewMut1<'r, T>, Slot)) -> Slot + Sync),
) -> Result<()> {
    let (free_tx, free) = crossbeam_channel::unbounded();
    slots.for_each(|s| free_tx.send(s).expect("the receiver is here"));
    let (jobs_tx, jobs) = crossbeam_channel::unbounded();
    std::thread::scope(|scope| {
        let helper = scope.spawn(|| {
            for job in jobs.iter() {
                let _ = free_tx.send(filter(job));
            }
        });
        let read = || -> Result<()> {
            for row in rows {
                // A free slot; when every slot is taken, a waiting volume filtered here
                // rather than waiting for the helper.
                let mut slot = match free.try_recv() {
                    Ok(slot) => slot,
                    Err(_) => match jobs.try_recv() {
                        Ok(job) => filter(job),
                        Err(_) => free.recv().expect("this thread holds a sender of free slots"),
                    },
                };
                reader.next_into(&mut slot.0)?;
                jobs_tx.send((row, slot)).expect("the receiver is here");
            }
            Ok(())
        };
        let read = read();
        drop(jobs_tx);
        // What is left is shared with the helper until none is.
        for job in jobs.iter() {
            filter(job);
        }
        helper.join().expect("a filter does not panic");
        read
    })
}

/// Nearest-neighbour resampling of a label image onto `target`: each target voxel takes
/// the label of the source voxel nearest to its centre (world = A_target·ijk,
/// source ijk = round(A_source⁻¹·world)); a centre outside the source's extent [0, n − 1]
/// along any axis gets 0, as scipy's `mode="constant"` under nilearn's `resample_img`
/// treats it (a centre at −1e-6 is outside, though it rounds to voxel 0).
pub fn resample_nearest(source: &Image, target: &Grid) -> Array3<f32> {
    let src_grid = &source.header.grid;
    let inv = src_grid
        .affine
        .inverse()
        .expect("validated headers have invertible affines");
    let vol = source.data.index_axis(Axis(3), 0);
    let mut out = Array3::zeros(target.shape);
    for ((i, j, k), o) in out.indexed_iter_mut() {
        let p = inv.apply(target.affine.apply([i as f64, j as f64, k as f64]));
        let idx: Option<Vec<usize>> = (0..3)
            .map(|d| {
                let inside = p[d] >= 0.0 && p[d] <= (src_grid.shape[d] - 1) as f64;
                inside.then_some((p[d] + 0.5).floor() as usize)
            })
            .collect();
        if let Some(idx) = idx {
            *o = vol[[idx[0], idx[1], idx[2]]];
        }
    }
    out
}

/// A label image as a [`Grid`]-sized volume, resampled when its grid differs.
pub fn labels_on(source: &Image, target: &Grid) -> Array3<f32> {
    if source.header.grid.matches(target, 1e-4) {
        source.data.slice(s![.., .., .., 0]).to_owned()
    } else {
        resample_nearest(source, target)
    }
}
