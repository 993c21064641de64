//! Weights kept in their stored dtype: f16/bf16 in the pages of their checkpoint file, or
//! GGUF quantisation blocks.
//!
//! Why: converting a 7B model's f16/bf16 safetensors to f32 as they are read doubles its
//! 13.5 GB to 27 GB, more than a 24 GB machine. A [`StoredMatrix`] is a name in the
//! memory-mapped files, a [`QuantizedMatrix`] a GGUF tensor's blocks; either's rows are
//! converted to f32 only into a caller's scratch, a chunk at a time, just before a product
//! needs them ([`RowSource`]). Resident memory is then the stored weights (for mapped files,
//! the pages the forward has touched, which the kernel may drop and re-read under pressure)
//! plus one chunk of f32 rows per call.
//!
//! bf16 → f32 and f16 → f32 are exact (every half value is an f32 value), and a quantised
//! row dequantises to the same f32 values whether alone or with its tensor, so a product
//! over converted rows equals the product over an f32 copy up to the GEMM's summation
//! order. (candle's quantised matmul instead rounds the activations to 8 bits: on SmolLM2
//! it drifted by 5–7% of a tap's RMS and ran 4–25× slower; `benches/quantized.rs`.)

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

/// A (rows × cols) matrix whose rows can be converted to f32 a range at a time.
pub trait RowSource: Send + Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Rows `first..first + out.len() / cols` in f32 into `out`.
    fn rows_to_f32(&self, first: usize, out: &mut [f32]) -> candle_core::Result<()>;
}

/// The half-precision formats kept as stored; f32 checkpoints are copied as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    Bf16,
    F16,
}

impl Half {
    /// Converts little-endian half values (`bytes.len() == 2 · out.len()`) to f32.
    pub fn to_f32(self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), 2 * out.len());
        let pairs = bytes.chunks_exact(2).zip(out.iter_mut());
        match self {
            // bf16 is the top half of an f32: a shift, which the compiler vectorises.
            Half::Bf16 => pairs.for_each(|(b, o)| {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
            }),
            Half::F16 => pairs.for_each(|(b, o)| {
                *o = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
            }),
        }
    }

    fn of(dtype: DType) -> Option<Self> {
        match dtype {
            DType::BF16 => Some(Half::Bf16),
            DType::F16 => Some(Half::F16),
            _ => None,
        }
    }
}

/// What dtype the weights of a loaded model live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WeightDtype {
    /// f16/bf16 safetensors weights stay in their mapped files; quantised GGUF weights are
    /// dequantised to f32 when the whole model then fits in 4 GiB, else kept quantised.
    #[default]
    Auto,
    /// Every weight stays in its stored dtype: half safetensors as above, GGUF weights and
    /// token embedding in their quantisation blocks whatever the model's size.
    Stored,
    /// Every weight is copied to f32 at load (twice a half checkpoint's size; for parity
    /// work). BERT, RoBERTa and GPT-2 checkpoints are always copied to f32.
    F32,
}

/// A (rows × cols) half-precision matrix inside memory-mapped safetensors files.
#[derive(Clone)]
pub struct StoredMatrix {
    files: Arc<MmapedSafetensors>,
    name: String,
    rows: usize,
    cols: usize,
    half: Half,
}

impl StoredMatrix {
    /// The tensor `name` when it is a (rows × cols) f16/bf16 matrix; `None` for other
    /// dtypes (which the caller copies to f32); an error when absent or of another shape.
    pub fn find(
        files: &Arc<MmapedSafetensors>,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> candle_core::Result<Option<Self>> {
        let view = files.get(name)?;
        if view.shape() != [rows, cols] {
            candle_core::bail!(
                "tensor '{name}' has shape {:?}, expected [{rows}, {cols}]",
                view.shape()
            );
        }
        let Some(half) = DType::try_from(view.dtype()).ok().and_then(Half::of) else {
            return Ok(None);
        };
        Ok(Some(StoredMatrix {
            files: Arc::clone(files),
            name: name.to_string(),
            rows,
            cols,
            half,
        }))
    }

    /// The stored bytes of the whole matrix (row-major, 2 bytes a value).
    fn bytes(&self) -> &[u8] {
        // `find` checked the name and shape, and the files do not change while mapped.
        let view = self
            .files
            .get(&self.name)
            .expect("a StoredMatrix names a tensor of its files");
        view.data()
    }


}

/// The rows `ids` of `m` as an (ids × cols) f32 tensor: an embedding lookup that never
/// makes an f32 copy of the table.
fn gather(m: &dyn RowSource, ids: &[u32]) -> candle_core::Result<Tensor> {
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= m.rows()) {
        candle_core::bail!("token id {bad} outside the {} rows of the embedding", m.rows());
    }
    let mut out = vec![0f32; ids.len() * m.cols()];
    for (&id, row) in ids.iter().zip(out.chunks_exact_mut(m.cols().max(1))) {
        m.rows_to_f32(id as usize, row)?;
    }
    Tensor::from_vec(out, (ids.len(), m.cols()), &Device::Cpu)
}

impl RowSource for StoredMatrix {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn rows_to_f32(&self, first: usize, out: &mut [f32]) -> candle_core::Result<()> {
        let start = 2 * first * self.cols;
        self.half
            .to_f32(&self.bytes()[start..start + 2 * out.len()], out);
        Ok(())
    }
}

/// A (rows × cols) GGUF tensor kept in its quantisation blocks; a row is `cols / block`
/// whole blocks, so any range of rows dequantises on its own.
pub struct QuantizedMatrix {
    tensor: QTensor,
    rows: usize,
    cols: usize,
    row_bytes: usize,
}

impl QuantizedMatrix {
    /// `tensor` must be 2-D, its rows a whole number of blocks (as GGUF requires).
    pub fn new(tensor: QTensor) -> candle_core::Result<Self> {
        let (rows, cols) = tensor.shape().dims2()?;
        let dtype = tensor.dtype();
        if !cols.is_multiple_of(dtype.block_size()) {
            candle_core::bail!("rows of {cols} values are not whole {dtype:?} blocks");
        }
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        Ok(QuantizedMatrix {
            tensor,
            rows,
            cols,
            row_bytes,
        })
    }
}

impl RowSource for QuantizedMatrix {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn rows_to_f32(&self, first: usize, out: &mut [f32]) -> candle_core::Result<()> {
        let n = out.len() / self.cols;
        let data = self.tensor.data()?;
        let bytes = &data[first * self.row_bytes..(first + n) * self.row_bytes];
        dequantize_into(self.tensor.dtype(), bytes, out)
    }
}

/// The blocks in `bytes` (whole blocks of `dtype`) dequantised into `out`, with candle's
/// own per-format `to_float`, without copying the blocks.
fn dequantize_into(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> candle_core::Result<()> {
    use candle_core::quantized::k_quants::*;
    fn blocks<T: GgmlType>(bytes: &[u8], out: &mut [f32]) -> candle_core::Result<()> {
        let size = std::mem::size_of::<T>();
        if !bytes.len().is_multiple_of(size) || out.len() != bytes.len() / size * T::BLCK_SIZE {
            candle_core::bail!("{} bytes are not whole blocks for {} values", bytes.len(), out.len());
        }
        if bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
            candle_core::bail!("quantised blocks are not aligned in memory");
        }
        // SAFETY: `bytes` holds whole blocks of `T` (checked above), aligned for `T`; the
        // block types are plain data (candle reads GGUF files into them the same way).
        let xs = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) };
        T::to_float(xs, out);
        Ok(())
    }
    match dtype {
        GgmlDType::F32 => blocks::<f32>(bytes, out),
        GgmlDType::F16 => blocks::<half::f16>(bytes, out),
        GgmlDType::BF16 => blocks::<half::bf16>(bytes, out),
        GgmlDType::Q4_0 => blocks::<BlockQ4_0>(bytes, out),
        GgmlDType::Q4_1 => blocks::<BlockQ4_1>(bytes, out),
        GgmlDType::Q5_0 => blocks::<BlockQ5_0>(bytes, out),
        GgmlDType::Q5_1 => blocks::<BlockQ5_1>(bytes, out),
        GgmlDType::Q8_0 => blocks::<BlockQ8_0>(bytes, out),
        GgmlDType::Q8_1 => blocks::<BlockQ8_1>(bytes, out),
        GgmlDType::Q2K => blocks::<BlockQ2K>(bytes, out),
        GgmlDType::Q3K => blocks::<BlockQ3K>(bytes, out),
        GgmlDType::Q4K => blocks::<BlockQ4K>(bytes, out),
        GgmlDType::Q5K => blocks::<BlockQ5K>(bytes, out),
        GgmlDType::Q6K => blocks::<BlockQ6K>(bytes, out),
        GgmlDType::Q8K => blocks::<BlockQ8K>(bytes, out),
    }
}

/// A token embedding table: f32 in memory, or rows gathered from a stored table.
pub enum Embedding {
    F32(Tensor),
    Rows(Box<dyn RowSource>),
}

impl Embedding {
    /// The rows of `ids` (flattened), as an (ids × hidden) f32 tensor.
    pub fn lookup(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        match self {
            Embedding::F32(table) => {
                let index = Tensor::from_slice(ids, ids.len(), &Device::Cpu)?;
                table.index_select(&index, 0)
            }
            Embedding::Rows(m) => gather(m.as_ref(), ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 65,536 bit patterns against `half`'s own conversion (bf16 → f32
    /// and f16 → f32 are exact, so equality is by bits; NaNs stay NaN).
    #[test]
    fn conversion_is_exact_for_every_pattern() {
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        let mut out = vec![0f32; 1 << 16];
        for (kind, reference) in [
            (Half::Bf16, (|b| half::bf16::from_bits(b).to_f32()) as fn(u16) -> f32),
            (Half::F16, |b| half::f16::from_bits(b).to_f32()),
        ] {
            kind.to_f32(&bytes, &mut out);
            for (bits, &got) in (0..=u16::MAX).zip(&out) {
                let want = reference(bits);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{kind:?} {bits:#06x}: {got} vs {want}"
                );
            }
        }
    }
}
