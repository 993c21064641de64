//! A gzip writer for float maps: runs as matches, everything else as literals, in
//! deflate blocks with codes built from each block's counts ([`block`]).
//!
//! A map on the grid is mostly the zeros around the brain and, inside it, float32 values
//! whose low bytes no match finder shortens. So only two kinds of match are looked for:
//! a byte repeated (distance 1: the zeros, which u64 compares skip 32 bytes at a time) and
//! a float repeated (distance 4: a count map's equal values); everything else is a literal.
//! Literals are found up to 45 at a time (SSE2 compares against the bytes 1 and 4 back),
//! kept as runs over their own bytes, counted by a byte histogram and coded three or four
//! to a store; a match is coded from a table built once a block. There are no hash
//! chains, and the CRC-32 of a long zero run is a product in GF(2)\[x\] (zlib's
//! `crc32_combine_op`), not a pass over its bytes. The deflate of a 2 mm 64-atom β map
//! (231 MB raw, a cortical mask: 1.5 million runs of brain between zeros) takes 0.094 s
//! (0.14 s with 6 literals a scan and a match's symbol found by a loop, 0.17 s earlier
//! with a token per literal), where zlib-rs's run-length strategy took 0.29 s, at about
//! its size (table in [`crate::io::nifti::write`]; `benches/map_write.rs` against nibabel).
//!
//! The output is one standard gzip member: gzip, zlib, Python's gzip and nibabel read it.

mod block;

use std::io::{self, Write};

use block::{match_token, Bits, Token, LITERALS, MATCH};
use zlib_rs::crc32::{crc32, crc32_combine_gen, crc32_combine_op};

/// Output buffered before each write to the inner writer.
const OUT_CHUNK: usize = 1 << 18;
/// Symbols (literals and matches) a block codes: enough that its code table (~100 bytes)
/// costs nothing, few enough that the codes follow the data's changes.
const BLOCK_SYMBOLS: usize = 1 << 16;
/// The shortest and longest match deflate codes.
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
/// Zero runs at least this long enter the CRC by `crc32_combine_op` (~40 products in
/// GF(2)\[x\]), shorter ones by the byte-wise CRC.
const ZERO_CRC_RUN: usize = 1 << 12;
/// gzip's header: magic, deflate, no flags, no mtime, XFL 4 (fastest, as zlib marks a
/// level-1 or run-length stream), OS 3 (Unix, zlib's).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3];

/// Deflates what is written into gzip on `W`; [`finish`](Self::finish) writes the trailer.
/// After an error of the inner writer the stream is broken (input may have been taken
/// but not written): the caller discards it, as the crate's atomic writes do.
pub struct GzWriter<W: Write> {
    inner: W,
    bits: Bits,
    /// The block being gathered (up to 2·BLOCK_SYMBOLS − 1 symbols: a piece on top of a
    /// nearly full block): its tokens, and the bytes of its literal runs.
    tokens: Vec<Token>,
    literals: Vec<u8>,
    crc: u32,
    /// Bytes written so far.
    len: u64,
    /// The stream's last 4 bytes (most recent last), what matches may refer to.
    tail: [u8; 4],
}

impl<W: Write> GzWriter<W> {
    /// A gzip stream on `inner`. Dropped without [`finish`](Self::finish), the stream has
    /// no trailer (the crate's writes are atomic, so such a file never takes a map's place).
    pub fn new(inner: W) -> GzWriter<W> {
        let mut bits = Bits::new();
        bits.align_and_append(&HEADER);
        GzWriter { inner, bits, tokens: Vec::new(), literals: Vec::with_capacity(2 * BLOCK_SYMBOLS), crc: 0, len: 0, tail: [0; 4] }
    }

    /// Ends the block and the stream (the gzip trailer: CRC-32 and length mod 2³²) and
    /// returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        block::write(&self.tokens, &self.literals, true, &mut self.bits);
        let mut trailer = [0; 8];
        trailer[..4].copy_from_slice(&self.crc.to_le_bytes());
        trailer[4..].copy_from_slice(&(self.len as u32).to_le_bytes());
        self.bits.align_and_append(&trailer);
        self.inner.write_all(self.bits.whole())?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Codes `buf`, the stream's next bytes, and adds them to the CRC.
    fn encode(&mut self, buf: &[u8]) {
        // The stream's bytes before buf that matches may reach (at most the last 4).
        let have = self.len.min(4) as usize;
        // The byte `back` before buf[i], if the stream has it.
        let before = |tail: &[u8; 4], i: usize, back: usize| match i.checked_sub(back) {
            Some(k) => Some(buf[k]),
            None => (back - i <= have).then(|| tail[4 + i - back]),
        };
        // Pushed to local Vecs, whose lengths stay in registers.
        let mut tokens = std::mem::take(&mut self.tokens);
        let mut literals = std::mem::take(&mut self.literals);
        let mut i = 0;
        // The CRC has taken buf[..crc_from].
        let mut crc_from = 0;
        while i < buf.len() {
            let b = buf[i];
            // Most bytes of a brain's floats start no 3-byte repeat of the byte before or
            // of the float before: up to 45 (SSE2) or 6 such literals at a time.
            if i >= 4 && i + 8 <= buf.len() {
                let lead = if i + WIDE_LEAD_BYTES <= buf.len() { wide_literal_lead(buf, i) } else { literal_lead(buf, i) };
                if lead > 0 {
                    push_literals(&mut tokens, &mut literals, &buf[i..i + lead]);
                    i += lead;
                    continue;
                }
            }
            if before(&self.tail, i, 1) == Some(b) {
                let run = repeat_run(&buf[i..], b);
                if run >= MIN_MATCH {
                    if b == 0 && run >= ZERO_CRC_RUN {
                        self.crc = crc32(self.crc, &buf[crc_from..i]);
                        self.crc = !crc32_combine_op(!self.crc, 0, crc32_combine_gen(run as u64));
                        crc_from = i + run;
                    }
                    put_run(&mut tokens, &mut literals, &buf[i..i + run], 0);
                    i += run;
                    continue;
                }
            }
            if before(&self.tail, i, 4) == Some(b) {
                let run = period4_run(buf, i, &self.tail);
                if run >= MIN_MATCH {
                    put_run(&mut tokens, &mut literals, &buf[i..i + run], 1);
                    i += run;
                    continue;
                }
            }
            push_literals(&mut tokens, &mut literals, &buf[i..i + 1]);
            i += 1;
        }
        self.tokens = tokens;
        self.literals = literals;
        self.crc = crc32(self.crc, &buf[crc_from..]);
        self.len += buf.len() as u64;
        // The new tail: the last 4 bytes of tail ‖ buf.
        let mut tail = [0; 4];
        let n = buf.len();
        for (k, t) in tail.iter_mut().enumerate() {
            let back = 4 - k;
            *t = match n.checked_sub(back) {
                Some(j) => buf[j],
                None => self.tail[4 + n - back],
            };
        }
        self.tail = tail;
    }
}

/// Codes `run`, bytes that repeat those 1 (`d` 0) or 4 (`d` 1) before them, as
/// matches: 258 at a time, the last one at least 3 long, a rest under 3 as literals.
fn put_run(tokens: &mut Vec<Token>, literals: &mut Vec<u8>, run_bytes: &[u8], d: usize) {
    let (mut run, mut at) = (run_bytes.len(), 0);
    while run >= MIN_MATCH {
        let len = if run > MAX_MATCH { MAX_MATCH.min(run - MIN_MATCH) } else { run };
        tokens.push(match_token(len, [0, 3][d]));
        run -= len;
        at += len;
    }
    push_literals(tokens, literals, &run_bytes[at..]);
}

/// Appends `bytes` as literals: to the block's literal bytes, and to the literal run that
/// ends the tokens or a new one.
fn push_literals(tokens: &mut Vec<Token>, literals: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    literals.extend_from_slice(bytes);
    // A block holds under 2·BLOCK_SYMBOLS literals, far below a run's limit.
    match tokens.last_mut() {
        Some(t) if *t & (MATCH | LITERALS) == LITERALS => *t += bytes.len() as Token,
        _ => tokens.push(LITERALS | bytes.len() as Token),
    }
}

/// How many of the bytes buf\[i..i + 6\] (i ≥ 4, i + 8 ≤ len) come before the first
/// that starts a run of 3 repeating the byte before them or the bytes 4 before them
/// (SWAR: a byte of x ^ (x shifted) is zero where the two bytes are equal).
fn literal_lead(buf: &[u8], i: usize) -> usize {
    let load = |k: usize| u64::from_le_bytes(buf[k..k + 8].try_into().expect("8 bytes"));
    let x = load(i);
    // 0x80 in each zero byte of v, exactly (no carries between bytes).
    let zero_bytes = |v: u64| !(((v & 0x7f7f_7f7f_7f7f_7f7f) + 0x7f7f_7f7f_7f7f_7f7f) | v) & 0x8080_8080_8080_8080;
    let starts = |z: u64| z & z >> 8 & z >> 16 & 0x0000_8080_8080_8080;
    let both = starts(zero_bytes(x ^ load(i - 1))) | starts(zero_bytes(x ^ load(i - 4)));
    if both == 0 {
        6
    } else {
        (both.trailing_zeros() / 8) as usize
    }
}

/// The bytes from `i` [`wide_literal_lead`] reads.
const WIDE_LEAD_BYTES: usize = 48;

/// [`literal_lead`] over buf\[i..i + 45\] (i ≥ 4, i + 48 ≤ len): byte-equality masks of
/// 48 positions against the byte 1 and 4 before, 16 at a time, a run of 3 starting where
/// a mask and its next two bits are set.
#[cfg(target_arch = "x86_64")]
fn wide_literal_lead(buf: &[u8], i: usize) -> usize {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
    let window = &buf[i - 4..i + WIDE_LEAD_BYTES];
    // SAFETY: SSE2 is part of x86_64; every load reads 16 bytes inside `window` (offsets
    // 0..=3 + 32 and 4 + 32 with 52 bytes), unaligned loads allowed.
    let mask = |back: usize| -> u64 {
        (0..3).fold(0u64, |m, k| {
            let at = 4 + 16 * k;
            let eq = unsafe {
                let a = _mm_loadu_si128(window[at..at + 16].as_ptr().cast::<__m128i>());
                let b = _mm_loadu_si128(window[at - back..at - back + 16].as_ptr().cast::<__m128i>());
                _mm_movemask_epi8(_mm_cmpeq_epi8(a, b)) as u32 as u64
            };
            m | eq << (16 * k)
        })
    };
    let starts = |m: u64| m & m >> 1 & m >> 2;
    let both = (starts(mask(1)) | starts(mask(4))) & ((1 << 46) - 1);
    (both.trailing_zeros() as usize).min(45)
}

#[cfg(not(target_arch = "x86_64"))]
fn wide_literal_lead(buf: &[u8], i: usize) -> usize {
    literal_lead(buf, i)
}

/// How many bytes at the start of `rest` equal `b`: 32 at a time while all do (a map's
/// background is long zero runs), then 8 at a time.
fn repeat_run(rest: &[u8], b: u8) -> usize {
    let splat = u64::from_le_bytes([b; 8]);
    let differ = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ splat;
    let mut n = 0;
    for chunk in rest.chunks_exact(32) {
        if differ(&chunk[..8]) | differ(&chunk[8..16]) | differ(&chunk[16..24]) | differ(&chunk[24..]) != 0 {
            break;
        }
        n += 32;
    }
    for chunk in rest[n..].chunks_exact(8) {
        let x = differ(chunk);
        if x != 0 {
            return n + (x.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + rest[n..].iter().take_while(|&&x| x == b).count()
}

/// How many bytes of `buf` from `i` equal the byte 4 before them (in `tail` ‖ `buf`).
fn period4_run(buf: &[u8], i: usize, tail: &[u8; 4]) -> usize {
    let mut n = 0;
    // Within the first 4 bytes of buf the byte 4 back may be in the tail.
    while i + n < 4 && i + n < buf.len() {
        if buf[i + n] != tail[i + n] {
            return n;
        }
        n += 1;
    }
    let mut k = i + n;
    while k + 8 <= buf.len() {
        let a = u64::from_le_bytes(buf[k..k + 8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(buf[k - 4..k + 4].try_into().expect("8 bytes"));
        if a != b {
            return k - i + ((a ^ b).trailing_zeros() / 8) as usize;
        }
        k += 8;
    }
    while k < buf.len() && buf[k] == buf[k - 4] {
        k += 1;
    }
    k - i
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // In pieces, so that a block holds about BLOCK_SYMBOLS symbols and the output
        // buffered stays near OUT_CHUNK whatever the size of `buf`.
        for piece in buf.chunks(BLOCK_SYMBOLS) {
            self.encode(piece);
            if self.tokens.len() + self.literals.len() >= BLOCK_SYMBOLS {
                block::write(&self.tokens, &self.literals, false, &mut self.bits);
                self.tokens.clear();
                self.literals.clear();
            }
            if self.bits.whole().len() >= OUT_CHUNK {
                self.inner.write_all(self.bits.whole())?;
                self.bits.clear_whole();
            }
        }
        Ok(buf.len())
    }

    /// Writes out the whole bytes coded so far. Not a sync flush: a reader cannot decode
    /// up to here (that would take an extra block the files do not need).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.write_all(self.bits.whole())?;
        self.bits.clear_whole();
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// `raw` through the writer in pieces of sizes 1, 4, 13, 40, … (so runs and the
    /// 4-byte history cross write boundaries).
    fn gzip(raw: &[u8]) -> Vec<u8> {
        let mut gz = GzWriter::new(Vec::new());
        let (mut rest, mut piece) = (raw, 1);
        while !rest.is_empty() {
            let n = piece.min(rest.len());
            gz.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
            piece = piece * 3 + 1;
        }
        gz.finish().unwrap()
    }

    /// flate2's decoder (which checks the CRC and length) gives `raw` back.
    fn assert_flate2_reads(file: &[u8], raw: &[u8]) {
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(file).read_to_end(&mut back).unwrap();
        assert!(back == raw, "flate2 read back other bytes");
    }

    /// A map-like stream: zero runs between noisy floats, runs of a repeated float and of
    /// a repeated nonzero byte, and a run of every length 1–600 of each kind.
    fn map_like() -> Vec<u8> {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut raw = Vec::new();
        for block in 0..400 {
            raw.resize(raw.len() + 7919 * (block % 5), 0);
            for _ in 0..(block * 37 % 3001) {
                raw.extend_from_slice(&((xorshift(&mut rng) >> 40) as f32 / 7.0).to_le_bytes());
            }
            for _ in 0..block % 7 {
                raw.extend_from_slice(&2.0f32.to_le_bytes());
            }
        }
        for len in 1..=600 {
            raw.push(0x55);
            raw.resize(raw.len() + len, if len % 2 == 0 { 0 } else { 0xab });
            raw.extend_from_slice(&[1, 2, 3, 4]);
            raw.extend((0..len).map(|k| [1, 2, 3, 4][k % 4]));
        }
        raw.resize(raw.len() + 3 * ZERO_CRC_RUN + 5, 0);
        raw
    }

    /// flate2's decoder and the system's `gzip -d` (where installed) give the bytes back,
    /// and the runs make it small.
    #[test]
    fn round_trips_through_other_readers() {
        let raw = map_like();
        let file = gzip(&raw);
        assert!(file.len() < raw.len() / 2, "{} bytes from {}", file.len(), raw.len());
        assert_flate2_reads(&file, &raw);
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

    /// Random streams of literals and runs (zero, byte and float runs of random lengths,
    /// some long enough for the CRC's shortcut), starting with a run, in random pieces.
    #[test]
    fn random_streams_round_trip() {
        let mut rng = 7u64;
        for _ in 0..60 {
            let mut raw = Vec::new();
            while raw.len() < 200_000 {
                let len = (xorshift(&mut rng) % 9000) as usize;
                match xorshift(&mut rng) % 4 {
                    0 => raw.resize(raw.len() + len, 0),
                    1 => raw.resize(raw.len() + len, xorshift(&mut rng) as u8),
                    2 => {
                        let x = (xorshift(&mut rng) as u32).to_le_bytes();
                        raw.extend((0..len).map(|k| x[k % 4]));
                    }
                    _ => raw.extend((0..len).map(|_| xorshift(&mut rng) as u8)),
                }
            }
            let mut gz = GzWriter::new(Vec::new());
            let mut rest = &raw[..];
            while !rest.is_empty() {
                let n = ((xorshift(&mut rng) % 5000) as usize).min(rest.len());
                gz.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
            }
            assert_flate2_reads(&gz.finish().unwrap(), &raw);
        }
    }

    /// Streams of 0–9 bytes (a history shorter than a match's distance).
    #[test]
    fn short_streams() {
        for n in 0..10u8 {
            for raw in [vec![0; n as usize], (0..n).collect::<Vec<u8>>(), (0..n).map(|k| k % 4).collect()] {
                assert_flate2_reads(&gzip(&raw), &raw);
            }
        }
    }

    /// Both literal scans give the first position that starts a run of 3 repeating the
    /// byte 1 or 4 before it, found one position at a time (capped at 6 and 45), on
    /// random bytes from a small alphabet (so runs of both kinds start anywhere).
    #[test]
    fn literal_leads_are_the_brute_force_ones() {
        let mut rng = 99u64;
        for _ in 0..3000 {
            let alphabet = 2 + xorshift(&mut rng) % 14;
            let buf: Vec<u8> = (0..64).map(|_| (xorshift(&mut rng) % alphabet) as u8).collect();
            let starts = |k: usize| (0..3).all(|j| buf[k + j] == buf[k + j - 1]) || (0..3).all(|j| buf[k + j] == buf[k + j - 4]);
            for i in [4, 5, 9, 16] {
                let first = (0..).find(|&k| k >= 45 || starts(i + k)).unwrap();
                let wide = if cfg!(target_arch = "x86_64") { 45 } else { 6 };
                assert_eq!(wide_literal_lead(&buf, i), first.min(wide), "{buf:?} at {i}");
                assert_eq!(literal_lead(&buf, i), first.min(6), "{buf:?} at {i}");
            }
        }
    }

    /// The CRC of a long zero run by the GF(2)[x] product equals the byte-wise one.
    #[test]
    fn zero_run_crc() {
        for (start, n) in [(0u32, 4096u64), (0xdead_beef, 1 << 20), (1, 12345)] {
            let shortcut = !crc32_combine_op(!start, 0, crc32_combine_gen(n));
            assert_eq!(shortcut, crc32(start, &vec![0; n as usize]), "{n} zeros after {start:#x}");
        }
    }
}
