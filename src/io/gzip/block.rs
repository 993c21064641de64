//! One deflate block with dynamic Huffman codes (RFC 1951 §3.2.7) from a block's tokens:
//! the codes are built from the block's own symbol counts, so a map's float bytes cost
//! what their distribution says (the exponent bytes cluster) rather than the fixed 8–9 bits.

/// A run of literals (`LITERALS | count`, the bytes kept apart in order) or a match
/// (`MATCH | distance code << 16 | length`). Literals come in runs because a map's floats
/// are mostly literals: they are counted and coded straight from their bytes.
pub type Token = u32;
pub const MATCH: Token = 1 << 31;
pub const LITERALS: Token = 1 << 30;
/// The most literals one token counts.
pub const MAX_LITERALS: u32 = LITERALS - 1;
/// End of block, in the literal/length alphabet.
const END: usize = 256;
const LITLEN_SYMBOLS: usize = 286;
const DIST_SYMBOLS: usize = 30;
/// Longest code of the literal/length and distance alphabets, and of the code-length one.
const MAX_BITS: u32 = 15;
const MAX_CL_BITS: u32 = 7;
/// The order the code-length code's lengths are sent in.
const CL_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// A match token (the writer looks for distance codes 0 and 3: distances 1 and 4).
pub fn match_token(len: usize, dist_code: u32) -> Token {
    MATCH | dist_code << 16 | len as u32
}

/// Deflate's length symbol of a match of `len` (3–258), its extra bits and their value.
pub const fn length_symbol(len: u32) -> (u32, u32, u32) {
    if len == 258 {
        return (285, 0, 0);
    }
    if len < 11 {
        return (254 + len, 0, 0);
    }
    // Lengths 11.. come in groups of four symbols with 1, 2, … 5 extra bits.
    let (mut symbol, mut base, mut extra) = (265, 11, 1);
    loop {
        let span = 4 << extra;
        if len < base + span {
            let k = (len - base) >> extra;
            return (symbol + k, extra, len - base - (k << extra));
        }
        symbol += 4;
        base += span;
        extra += 1;
    }
}

/// [`length_symbol`] of every length 0–258 (0–2 unused), packed as symbol | extra bits
/// << 16 | value << 20: a match is counted and coded by one lookup.
const LENGTHS: [u32; 259] = {
    let mut table = [0u32; 259];
    let mut len = 3;
    while len <= 258 {
        let (symbol, extra, value) = length_symbol(len as u32);
        table[len] = symbol | extra << 16 | value << 20;
        len += 1;
    }
    table
};

/// Bits packed least significant first into `out[..len]`. Every put stores the whole
/// 64-bit accumulator at `len` and then moves `len` by the whole bytes it holds, so there
/// is no branch on the bit count; [`reserve`](Self::reserve) keeps 8 bytes of room
/// beyond what the puts may fill.
pub struct Bits {
    acc: u64,
    /// Bits in `acc`, < 8 between puts.
    n: u32,
    len: usize,
    out: Vec<u8>,
}

impl Bits {
    pub fn new() -> Bits {
        Bits { acc: 0, n: 0, len: 0, out: vec![0; 64] }
    }

    /// Room for `bytes` more whole bytes of puts.
    pub fn reserve(&mut self, bytes: usize) {
        if self.out.len() < self.len + bytes + 8 {
            self.out.resize(self.len + bytes + 8, 0);
        }
    }

    /// Appends the low `len` (≤ 32) bits of `bits`; room reserved.
    #[inline]
    pub fn put(&mut self, bits: u32, len: u32) {
        self.put_wide(u64::from(bits), len);
    }

    /// Appends the low `len` (≤ 40) bits of `bits`; room reserved. (7 bits at most wait in
    /// the accumulator, so 47 fit.)
    #[inline]
    pub fn put_wide(&mut self, bits: u64, len: u32) {
        self.acc |= bits << self.n;
        self.n += len;
        self.out[self.len..self.len + 8].copy_from_slice(&self.acc.to_le_bytes());
        let whole = self.n / 8;
        self.len += whole as usize;
        self.acc = self.acc.checked_shr(8 * whole).unwrap_or(0);
        self.n -= 8 * whole;
    }

    /// Appends the codes of `bytes` from `table` (code | length << 16, lengths ≤ 15),
    /// `K` to a store: 7 + K · (longest code) bits must fit the accumulator (K = 3 always,
    /// K = 4 for codes of at most 14 bits). Room reserved.
    #[inline]
    fn put_literals<const K: usize>(&mut self, bytes: &[u8], table: &[u32; 256]) {
        let mut groups = bytes.chunks_exact(K);
        for g in &mut groups {
            for &x in g {
                let e = table[x as usize];
                self.acc |= u64::from(e & 0xffff) << self.n;
                self.n += e >> 16;
            }
            self.out[self.len..self.len + 8].copy_from_slice(&self.acc.to_le_bytes());
            let whole = self.n / 8;
            self.len += whole as usize;
            self.acc >>= 8 * whole;
            self.n -= 8 * whole;
        }
        for &x in groups.remainder() {
            let e = table[x as usize];
            self.put(e & 0xffff, e >> 16);
        }
    }

    /// Pads to a whole byte (the partial byte is already stored) and appends `bytes`.
    pub fn align_and_append(&mut self, bytes: &[u8]) {
        if self.n > 0 {
            self.len += 1;
        }
        (self.acc, self.n) = (0, 0);
        self.reserve(bytes.len());
        self.out[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// The whole bytes so far.
    pub fn whole(&self) -> &[u8] {
        &self.out[..self.len]
    }

    /// Forgets the whole bytes (written out), keeping the partial one.
    pub fn clear_whole(&mut self) {
        self.out[0] = self.out[self.len];
        self.len = 0;
    }
}

/// Code lengths (≤ `limit`) of a Huffman code for `freq`, every used symbol coded. At
/// least two symbols get a code (the two first ones are counted once if unused), so every
/// code is complete, which inflaters require of all but a lone code. Too deep a tree
/// halves the counts (rounding up) and is built again.
fn code_lengths(freq: &mut [u32], limit: u32) -> Vec<u32> {
    // Equal counts give a tree ⌈log₂ n⌉ deep, so halving ends when that fits.
    assert!(freq.len() <= 1 << limit, "{} symbols in codes of {limit} bits", freq.len());
    for f in freq.iter_mut().take(2) {
        *f = (*f).max(1);
    }
    loop {
        let mut leaves: Vec<usize> = (0..freq.len()).filter(|&s| freq[s] > 0).collect();
        leaves.sort_by_key(|&s| (freq[s], s));
        let m = leaves.len();
        // Two queues: leaves by weight, then internal nodes in the order made (their
        // weights rise), so the two lightest are always at the fronts.
        let mut weight: Vec<u64> = leaves.iter().map(|&s| u64::from(freq[s])).collect();
        let mut parent = vec![0usize; 2 * m - 1];
        let (mut leaf, mut node) = (0, m);
        for k in 0..m - 1 {
            let mut lightest = || {
                let take_leaf = leaf < m && (node >= m + k || weight[leaf] <= weight[node]);
                let i = if take_leaf { &mut leaf } else { &mut node };
                *i += 1;
                *i - 1
            };
            let (a, b) = (lightest(), lightest());
            weight.push(weight[a] + weight[b]);
            parent[a] = m + k;
            parent[b] = m + k;
        }
        // A node is made after its children: depths from the root (the last) down.
        let mut depth = vec![0u32; 2 * m - 1];
        for i in (0..2 * m - 2).rev() {
            depth[i] = depth[parent[i]] + 1;
        }
        if depth[..m].iter().all(|&d| d <= limit) {
            let mut lengths = vec![0; freq.len()];
            for (i, &s) in leaves.iter().enumerate() {
                lengths[s] = depth[i];
            }
            return lengths;
        }
        for f in freq.iter_mut().filter(|f| **f > 0) {
            *f = f.div_ceil(2);
        }
    }
}

/// Canonical codes (RFC 1951 §3.2.2) of `lengths`, bit-reversed as they are sent.
fn canonical(lengths: &[u32]) -> Vec<u32> {
    let mut count = [0u32; 16];
    lengths.iter().filter(|&&l| l > 0).for_each(|&l| count[l as usize] += 1);
    let mut next = [0u32; 16];
    for bits in 1..16 {
        next[bits] = (next[bits - 1] + count[bits - 1]) << 1;
    }
    lengths
        .iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let code = next[l as usize];
            next[l as usize] += 1;
            code.reverse_bits() >> (32 - l)
        })
        .collect()
}

/// The code-length sequence run-length coded (RFC 1951 §3.2.7): (symbol 0–18, extra value).
fn run_length(lengths: &[u32]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lengths.len() {
        let l = lengths[i];
        let mut run = lengths[i..].iter().take_while(|&&x| x == l).count();
        i += run;
        if l == 0 {
            while run >= 11 {
                let n = run.min(138);
                out.push((18, n as u32 - 11));
                run -= n;
            }
            if run >= 3 {
                out.push((17, run as u32 - 3));
                run = 0;
            }
        } else {
            out.push((l, 0));
            run -= 1;
            while run >= 3 {
                let n = run.min(6);
                out.push((16, n as u32 - 3));
                run -= n;
            }
        }
        out.extend(std::iter::repeat_n((l, 0), run));
    }
    out
}

/// How often each byte occurs (four tables, so that equal bytes close together do not
/// wait on each other's increments).
fn byte_counts(bytes: &[u8]) -> [u32; 256] {
    let mut tables = [[0u32; 256]; 4];
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        for (table, &b) in tables.iter_mut().zip(q) {
            table[b as usize] += 1;
        }
    }
    quads.remainder().iter().for_each(|&b| tables[0][b as usize] += 1);
    std::array::from_fn(|b| tables.iter().map(|t| t[b]).sum())
}

/// Writes `tokens` as one dynamic-code block (`last`: the stream's final block); its
/// literal runs take their bytes from `literals`, in order.
pub fn write(tokens: &[Token], literals: &[u8], last: bool, bits: &mut Bits) {
    let (mut litlen, mut dist) = ([0u32; LITLEN_SYMBOLS], [0u32; DIST_SYMBOLS]);
    litlen[..256].copy_from_slice(&byte_counts(literals));
    for &t in tokens.iter().filter(|&&t| t & MATCH != 0) {
        litlen[(LENGTHS[(t & 0x1ff) as usize] & 0xffff) as usize] += 1;
        dist[(t >> 16 & 0x1f) as usize] += 1;
    }
    litlen[END] = 1;
    let (ll_len, d_len) = (code_lengths(&mut litlen, MAX_BITS), code_lengths(&mut dist, MAX_BITS));
    let hlit = 257.max(ll_len.iter().rposition(|&l| l > 0).map_or(0, |p| p + 1));
    let hdist = 1.max(d_len.iter().rposition(|&l| l > 0).map_or(0, |p| p + 1));
    let all: Vec<u32> = ll_len[..hlit].iter().chain(&d_len[..hdist]).copied().collect();
    let runs = run_length(&all);
    let mut cl_freq = [0u32; 19];
    runs.iter().for_each(|&(s, _)| cl_freq[s as usize] += 1);
    let cl_len = code_lengths(&mut cl_freq, MAX_CL_BITS);
    let cl_code = canonical(&cl_len);
    let hclen = 4.max(CL_ORDER.iter().rposition(|&s| cl_len[s] > 0).map_or(0, |p| p + 1));

    bits.reserve(600); // the header: 17 + 19·3 bits and at most 316 run-length codes of ≤ 14 bits
    bits.put(u32::from(last) | 2 << 1, 3);
    bits.put(hlit as u32 - 257, 5);
    bits.put(hdist as u32 - 1, 5);
    bits.put(hclen as u32 - 4, 4);
    CL_ORDER[..hclen].iter().for_each(|&s| bits.put(cl_len[s], 3));
    for &(s, extra) in &runs {
        bits.put(cl_code[s as usize], cl_len[s as usize]);
        match s {
            16 => bits.put(extra, 2),
            17 => bits.put(extra, 3),
            18 => bits.put(extra, 7),
            _ => {}
        }
    }
    let (ll_code, d_code) = (canonical(&ll_len), canonical(&d_len));
    // A literal's code (≤ 15 bits) and, above it, its length.
    let literal: [u32; 256] = std::array::from_fn(|b| ll_code[b] | ll_len[b] << 16);
    let four = ll_len[..256].iter().all(|&l| l <= 14);
    // A match's whole code (length code, extra bits, distance code: ≤ 15 + 5 + 15 bits)
    // below bit 48, its length above; by length for the two distances the writer uses
    // (codes 0 and 3), built once a block; any other distance coded one match at a time.
    let match_code = |len: usize, d: usize| -> u64 {
        let e = LENGTHS[len];
        let (symbol, extra, value) = ((e & 0xffff) as usize, e >> 16 & 0xf, e >> 20);
        let (code, bits) = (u64::from(ll_code[symbol] | value << ll_len[symbol]), ll_len[symbol] + extra);
        (code | u64::from(d_code[d]) << bits) | u64::from(bits + d_len[d]) << 48
    };
    let table = |d: usize| -> Vec<u64> { (0..259).map(|len| match_code(len, d)).collect() };
    let (by_length_0, by_length_3) = (table(0), table(3));
    // At most 15 bits a literal (under 2 bytes) and 15 + 5 + 15 a match; the hot loop on
    // a copy of the bit state, so that it stays in registers.
    bits.reserve(literals.len() * 2 + tokens.len() * 5 + 8);
    let mut b = Bits { out: std::mem::take(&mut bits.out), ..*bits };
    let mut at = 0;
    for &t in tokens {
        if t & MATCH == 0 {
            let n = (t & MAX_LITERALS) as usize;
            let run = &literals[at..at + n];
            if four {
                b.put_literals::<4>(run, &literal);
            } else {
                b.put_literals::<3>(run, &literal);
            }
            at += n;
        } else {
            let len = (t & 0x1ff) as usize;
            let code = match t >> 16 & 0x1f {
                0 => by_length_0[len],
                3 => by_length_3[len],
                d => match_code(len, d as usize),
            };
            b.put_wide(code & 0xffff_ffff_ffff, (code >> 48) as u32);
        }
    }
    debug_assert_eq!(at, literals.len(), "the literal runs cover the block's literals");
    b.put(ll_code[END], ll_len[END]);
    *bits = b;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length symbols against RFC 1951's table (§3.2.5), written out.
    #[test]
    fn length_symbols_are_rfc_1951s() {
        let extra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
        let base = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
        for len in 3..=258u32 {
            let k = (0..29).rev().find(|&k| base[k] <= len).unwrap();
            assert_eq!(length_symbol(len), (257 + k as u32, extra[k], len - base[k]), "length {len}");
        }
    }

    /// A block whose literal counts fall geometrically (so some literal codes are 15
    /// bits and go three to a store) with matches at distances 1, 2 and 4 (codes 0, 1, 3:
    /// the tabled ones and one coded alone) is read back by flate2.
    #[test]
    fn skewed_blocks_with_long_codes_read_back() {
        use std::io::Read;
        let (mut tokens, mut literals, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        let mut counts = [0u32; 256];
        for k in 0..24u32 {
            let n = 1usize << 20u32.saturating_sub(k).min(17);
            let bytes: Vec<u8> = (0..n).map(|i| if i % 3 == 2 { 24 + (i % 7) as u8 } else { k as u8 }).collect();
            bytes.iter().for_each(|&b| counts[b as usize] += 1);
            literals.extend_from_slice(&bytes);
            tokens.push(LITERALS | n as Token);
            raw.extend_from_slice(&bytes);
            for (len, d, dist) in [(3 + k as usize, 0, 1), (258, 1, 2), (40, 3, 4)] {
                tokens.push(match_token(len, d));
                for _ in 0..len {
                    raw.push(raw[raw.len() - dist]);
                }
            }
        }
        let lengths = code_lengths(&mut counts.to_vec(), MAX_BITS);
        assert_eq!(lengths.iter().max(), Some(&MAX_BITS), "some literal code is 15 bits");
        let mut bits = Bits::new();
        write(&tokens, &literals, true, &mut bits);
        bits.align_and_append(&[]);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(bits.whole()).read_to_end(&mut back).unwrap();
        assert!(back == raw, "{} bytes back of {}", back.len(), raw.len());
    }

    /// Kraft's equality (a complete code) and the length limit, on skewed counts that
    /// would make a tree 30 deep (Fibonacci weights), on one and on no used symbol.
    #[test]
    fn codes_are_complete_and_limited() {
        let mut fib = vec![1u32, 1];
        while fib.len() < 30 {
            fib.push(fib[fib.len() - 1] + fib[fib.len() - 2]);
        }
        for (mut freq, limit) in [(fib, 7), (vec![0, 0, 5, 0], 7), (vec![0; 19], 7), ((0..286).map(|s| s * s % 97).collect(), 15)] {
            let lengths = code_lengths(&mut freq, limit);
            assert!(lengths.iter().all(|&l| l <= limit));
            let kraft: f64 = lengths.iter().filter(|&&l| l > 0).map(|&l| 0.5f64.powi(l as i32)).sum();
            assert_eq!(kraft, 1.0, "{lengths:?}");
        }
    }

    /// Canonical codes: RFC 1951's example (lengths 3 3 3 3 3 2 4 4 → 010 011 100 101
    /// 110 00 1110 1111), bit-reversed.
    #[test]
    fn canonical_codes_are_the_rfcs_example() {
        let want = [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111];
        let lengths = [3, 3, 3, 3, 3, 2, 4, 4];
        for ((got, w), l) in canonical(&lengths).into_iter().zip(want).zip(lengths) {
            assert_eq!(got, (w as u32).reverse_bits() >> (32 - l));
        }
    }
}
