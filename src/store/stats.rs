//! The `.stats` file: one BOLD run reduced to the sufficient statistics of its fit.

use std::io::{Read, Write};
use std::path::Path;

use ndarray::{Array1, Array2};

use crate::error::{err, Context, Result};
use crate::kernels::ridge_stats::RunStats;

/// The binary layout of a run's statistics: magic, then u64 k, v, n, absorbed, then f64 LE
/// gram (k·k), xty (k·v, row-major), sum_x (k), sum_y (v), sum_y2 (v), then v validity bytes.
const MAGIC: &[u8; 8] = b"CFSTATS1";

/// Writes the statistics in the layout above to `out`, a few KiB at a time: no copy of
/// the file (k·V floats, 37 MB for 70 regressors at 2 mm) is built in memory.
pub fn encode_stats(s: &RunStats, absorbed: usize, valid: &[bool], out: &mut dyn Write) -> std::io::Result<()> {
    let (k, v) = s.xty.dim();
    out.write_all(MAGIC)?;
    for n in [k, v, s.n, absorbed] {
        out.write_all(&(n as u64).to_le_bytes())?;
    }
    let mut floats = s.gram.iter().chain(s.xty.iter()).chain(s.sum_x.iter()).chain(s.sum_y.iter()).chain(s.sum_y2.iter()).peekable();
    let mut chunk = Vec::with_capacity(8 * 1024);
    while floats.peek().is_some() {
        chunk.clear();
        chunk.extend(floats.by_ref().take(1024).flat_map(|x| x.to_le_bytes()));
        out.write_all(&chunk)?;
    }
    valid.chunks(8 * 1024).try_for_each(|c| {
        chunk.clear();
        chunk.extend(c.iter().map(|&b| b as u8));
        out.write_all(&chunk)
    })
}

pub fn decode_stats(path: &Path) -> Result<(RunStats, usize, Vec<bool>)> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("{}: cannot read run statistics", path.display()))?;
    let bad = |what: &str| {
        err!(
            "{}: {what} (not run statistics of this cortexflow)",
            path.display()
        )
    };
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        return Err(bad("bad header"));
    }
    let word = |i: usize| {
        u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes")) as usize
    };
    let (k, v, n, absorbed) = (word(0), word(1), word(2), word(3));
    // The sizes come from the file: checked arithmetic, so a corrupt header is an error
    // and never an overflow or an allocation of what it claims.
    let floats = k
        .checked_mul(k)
        .zip(k.checked_mul(v))
        .and_then(|(kk, kv)| kk.checked_add(kv))
        .and_then(|f| f.checked_add(k))
        .and_then(|f| v.checked_mul(2).and_then(|v2| f.checked_add(v2)));
    let expected = floats
        .and_then(|f| f.checked_mul(8))
        .and_then(|b| b.checked_add(40))
        .and_then(|b| b.checked_add(v));
    let Some((floats, expected)) = floats.zip(expected) else {
        return Err(bad("header sizes overflow"));
    };
    if bytes.len() != expected {
        return Err(bad("wrong size"));
    }
    let f: Vec<f64> = bytes[40..40 + 8 * floats]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    // Sums of finite data are finite: anything else is damage, named here rather than
    // as a failed fit downstream.
    if let Some(i) = f.iter().position(|x| !x.is_finite()) {
        return Err(bad(&format!("value {} at float {i} is not finite", f[i])));
    }
    let (gram, rest) = f.split_at(k * k);
    let (xty, rest) = rest.split_at(k * v);
    let (sum_x, rest) = rest.split_at(k);
    let (sum_y, sum_y2) = rest.split_at(v);
    let stats = RunStats {
        gram: Array2::from_shape_vec((k, k), gram.to_vec())?,
        xty: Array2::from_shape_vec((k, v), xty.to_vec())?,
        sum_x: Array1::from(sum_x.to_vec()),
        sum_y: Array1::from(sum_y.to_vec()),
        sum_y2: Array1::from(sum_y2.to_vec()),
        n,
    };
    let valid = bytes[40 + 8 * floats..].iter().map(|&b| b != 0).collect();
    Ok((stats, absorbed, valid))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_statistics_round_trip_and_corruption_is_an_error() {
        let x = Array2::from_shape_fn((9, 3), |(t, j)| (t * (j + 1)) as f64 % 7.0);
        let y = Array2::from_shape_fn((9, 4), |(t, j)| ((t + j) % 5) as f64 - 2.0);
        let s = RunStats::from_block(x.view(), y.view());
        let mut bytes = Vec::new();
        encode_stats(&s, 2, &[true, false, true, true], &mut bytes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.stats");
        std::fs::write(&path, &bytes).unwrap();
        let (back, absorbed, valid) = decode_stats(&path).unwrap();
        assert_eq!(back, s);
        assert_eq!(absorbed, 2);
        assert_eq!(valid, vec![true, false, true, true]);
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(decode_stats(&path)
            .unwrap_err()
            .to_string()
            .contains("wrong size"));
        // A header whose sizes overflow usize is an error, not a panic or a huge allocation.
        let mut huge = bytes.clone();
        huge[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
        huge[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        let e = decode_stats(&path).unwrap_err().to_string();
        assert!(e.contains("header sizes overflow"), "{e}");
    }
}
