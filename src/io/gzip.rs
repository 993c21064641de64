//! A gzip writer for float maps: zlib-rs's deflate with the run-length strategy
//! (`Z_RLE`: matches of distance 1 only).
//!
//! A map on the grid is mostly the zeros around the brain, which runs of distance 1 take
//! whole, and in the brain float32 values, whose low bytes no match finder compresses.
//! On a 2 mm 64-atom β map (231 MB raw) the run-length strategy writes 19.3 MB in half
//! the time of zlib-rs's level 2 (20.0 MB), and reads back as fast
//! (`scripts/studies/gzip_level.sh`, table in [`crate::io::nifti::write::LEVEL`]). The
//! output is one standard gzip member: gzip, zlib, Python's gzip and nibabel read it.

use std::io::{self, Write};

use zlib_rs::{DeflateConfig, DeflateFlush, Method, Status, Strategy};

/// zlib's window bits for a 32 KiB window with a gzip header and trailer (16 + 15).
const GZIP_WINDOW: i32 = 31;
/// Output buffered before each write to the inner writer.
const OUT_CHUNK: usize = 1 << 18;

/// Deflates what is written into gzip on `W`; [`finish`](Self::finish) writes the trailer.
pub struct GzWriter<W: Write> {
    inner: W,
    deflate: zlib_rs::Deflate,
    out: Vec<u8>,
}

impl<W: Write> GzWriter<W> {
    /// A run-length gzip stream at `level` (1–9: with this strategy they make the same
    /// deflate stream, only level 9 marks the header's XFL byte; 0 would store). Dropped
    /// without [`finish`](Self::finish), the stream has no trailer (the crate's writes
    /// are atomic, so such a file never takes a map's place).
    pub fn new(inner: W, level: i32) -> GzWriter<W> {
        let config = DeflateConfig { level, method: Method::Deflated, window_bits: GZIP_WINDOW, mem_level: 8, strategy: Strategy::Rle };
        GzWriter { inner, deflate: zlib_rs::Deflate::new_with_config(config), out: vec![0; OUT_CHUNK] }
    }

    /// Deflates `input` with `flush`, writing every full output buffer; returns when the
    /// input is consumed (and, for `Finish`, the stream is ended).
    fn deflate(&mut self, mut input: &[u8], flush: DeflateFlush) -> io::Result<()> {
        if input.is_empty() && flush == DeflateFlush::NoFlush {
            return Ok(()); // zlib reports an error for a call that can make no progress
        }
        loop {
            let before = self.deflate.total_in();
            let before_out = self.deflate.total_out();
            let status = self.deflate.compress(input, &mut self.out, flush).map_err(|e| io::Error::other(format!("deflate: {}", e.as_str())))?;
            let used = (self.deflate.total_in() - before) as usize;
            let made = (self.deflate.total_out() - before_out) as usize;
            input = &input[used..];
            self.inner.write_all(&self.out[..made])?;
            let done = match flush {
                DeflateFlush::Finish => status == Status::StreamEnd,
                // More output pending when the buffer was filled.
                _ => input.is_empty() && made < self.out.len(),
            };
            if done {
                return Ok(());
            }
        }
    }

    /// Ends the stream (the gzip trailer: CRC-32 and length) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.deflate(&[], DeflateFlush::Finish)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.deflate(buf, DeflateFlush::NoFlush)?;
        Ok(buf.len())
    }

    /// Writes out what the inner writer holds; deflate keeps its pending input (a sync
    /// flush would add a block the files do not need).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Long zero runs between noisy floats, written in pieces of every size: flate2's
    /// decoder and the system's `gzip -d` (where installed) give the bytes back.
    #[test]
    fn round_trips_through_other_readers() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut raw = Vec::new();
        for block in 0..400 {
            raw.resize(raw.len() + 7919 * (block % 5), 0);
            for _ in 0..(block * 37 % 3001) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                raw.extend_from_slice(&((rng >> 40) as f32 / 7.0).to_le_bytes());
            }
        }
        let mut gz = GzWriter::new(Vec::new(), 1);
        let mut rest = &raw[..];
        let mut piece = 1;
        while !rest.is_empty() {
            let n = piece.min(rest.len());
            gz.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
            piece = piece * 3 + 1;
        }
        let file = gz.finish().unwrap();
        assert!(file.len() < raw.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&file[..]).read_to_end(&mut back).unwrap();
        assert!(back == raw, "flate2 read back other bytes");
        let gzip = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        if let Ok(mut child) = gzip {
            let mut stdin = child.stdin.take().unwrap();
            let writer = std::thread::spawn(move || stdin.write_all(&file));
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap().unwrap();
            assert!(out.status.success() && out.stdout == raw, "gzip -d read back other bytes");
        }
    }

    /// An empty stream is a valid gzip file of nothing.
    #[test]
    fn empty_stream() {
        let file = GzWriter::new(Vec::new(), 1).finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&file[..]).read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }
}
