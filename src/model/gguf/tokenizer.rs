//! Tokenizers rebuilt from GGUF metadata (a GGUF carries no tokenizer.json), as
//! transformers' GGUF loader rebuilds them (`integrations/gguf/gguf_tokenizer_mapping.py`):
//!
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE from the stored merges, split as the
//!   file's `tokenizer.ggml.pre` says (Llama 3, SmolLM, …);
//! - `tokenizer.ggml.model = llama`: a SentencePiece BPE vocabulary (Llama 1/2, Mistral,
//!   TinyLlama, …): `LlamaTokenizer`'s pipeline — no normaliser, `Metaspace` turning
//!   spaces into `▁` and prefixing the text's first piece with one, BPE with byte fallback
//!   (`<0xNN>` tokens for characters outside the vocabulary) and merges recovered from the
//!   pieces' scores when the file stores none.
//!
//! Token types follow llama.cpp: 3 (control) tokens become special tokens, 4 (user
//! defined) plain added tokens, so neither is cut into pieces.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior, Tokenizer};

use super::Meta;
use crate::error::{Error, Result};

/// llama.cpp's token types.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The tokenizer the metadata describes.
pub(super) fn from_metadata(meta: &Meta) -> Result<Tokenizer> {
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    match meta.string("tokenizer.ggml.model")?.as_str() {
        "gpt2" => byte_level(meta, tokens),
        "llama" => sentencepiece(meta, tokens),
        other => Err(Error::format(meta.path, format!("GGUF tokenizer model '{other}' is not supported (gpt2: byte-level BPE; llama: SentencePiece BPE); use the Hugging Face folder of this model"))),
    }
}

fn tok_err<'a>(meta: &'a Meta) -> impl Fn(tokenizers::Error) -> Error + 'a {
    move |e| Error::format(meta.path, format!("cannot build the tokenizer: {e}"))
}

/// The stored merges (`a b` per entry), if the file has them.
fn stored_merges(meta: &Meta) -> Result<Option<Vec<(String, String)>>> {
    if !meta.map.contains_key("tokenizer.ggml.merges") {
        return Ok(None);
    }
    meta.strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::format(meta.path, format!("malformed merge '{m}'")))
        })
        .collect::<Result<_>>()
        .map(Some)
}

fn vocab(tokens: &[String]) -> tokenizers::models::bpe::Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// `tokenizer.ggml.token_type`, one per token, when the file has it.
fn token_types(meta: &Meta, n: usize) -> Result<Option<Vec<i32>>> {
    let key = "tokenizer.ggml.token_type";
    let Some(v) = meta.map.get(key) else {
        return Ok(None);
    };
    let types = meta
        .typed(key, v.to_vec())?
        .iter()
        .map(|t| meta.typed(key, t.to_i32()))
        .collect::<Result<Vec<_>>>()?;
    if types.len() != n {
        return Err(Error::format(meta.path, format!("{key} has {} entries for {n} tokens", types.len())));
    }
    Ok(Some(types))
}

/// Control tokens as special tokens; with `user_defined`, type-4 tokens as added tokens.
fn add_typed_tokens(meta: &Meta, tok: &mut Tokenizer, tokens: &[String], user_defined: bool) -> Result<()> {
    let Some(types) = token_types(meta, tokens.len())? else {
        return Ok(());
    };
    let of_type = |want: i32, special: bool| -> Vec<AddedToken> {
        types
            .iter()
            .zip(tokens)
            .filter(|(&t, _)| t == want)
            .map(|(_, s)| AddedToken::from(s.clone(), special).normalized(false))
            .collect()
    };
    tok.add_special_tokens(of_type(CONTROL, true)).map_err(tok_err(meta))?;
    if user_defined {
        tok.add_tokens(of_type(USER_DEFINED, false))
            .map_err(tok_err(meta))?;
    }
    Ok(())
}

/// Byte-level BPE (GGUF `gpt2`, as Llama 3 and SmolLM store it).
fn byte_level(meta: &Meta, tokens: Vec<String>) -> Result<Tokenizer> {
    let merges = stored_merges(meta)?
        .ok_or_else(|| Error::format(meta.path, "a gpt2 tokenizer without tokenizer.ggml.merges"))?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(&tokens), merges)
        .build()
        .map_err(tok_err(meta))?;
    let mut tok = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre = meta
        .map
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map_or("gpt2", |s| s.as_str());
    match pre {
        // llama.cpp splits digits one by one before the GPT-2 pattern for these.
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" => {
            tok.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level.into(),
            ])));
        }
        "llama-bpe" | "llama3" => {
            const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
            let split = Split::new(
                SplitPattern::Regex(LLAMA3.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tok_err(meta))?;
            tok.with_pre_tokenizer(Some(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])));
        }
        _ => {
            tok.with_pre_tokenizer(Some(byte_level));
        }
    }
    tok.with_decoder(Some(ByteLevel::default()));
    add_typed_tokens(meta, &mut tok, &tokens, false)?;
    Ok(tok)
}

/// SentencePiece BPE (GGUF `llama`), as transformers' `LlamaTokenizer` (legacy = false).
fn sentencepiece(meta: &Meta, tokens: Vec<String>) -> Result<Tokenizer> {
    let merges = match stored_merges(meta)? {
        Some(m) => m,
        None => {
            let key = "tokenizer.ggml.scores";
            let scores = meta
                .typed(key, meta.get(key)?.to_vec())?
                .iter()
                .map(|v| meta.typed(key, v.to_f32()))
                .collect::<Result<Vec<f32>>>()?;
            if scores.len() != tokens.len() {
                return Err(Error::format(meta.path, format!("{key} has {} entries for {} tokens", scores.len(), tokens.len())));
            }
            if let Some(i) = scores.iter().position(|s| s.is_nan()) {
                return Err(Error::format(meta.path, format!("{key}: the score of token {i} is NaN")));
            }
            merges_from_scores(&tokens, &scores)
        }
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(&tokens), merges)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(tok_err(meta))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
    let decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(tok_err(meta))?.into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
        Strip::new(' ', 1, 0).into(),
    ];
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    // transformers also makes the unknown token special (its `unk_token`), so a literal
    // "<unk>" in the text is that one token.
    if let Some(v) = meta.map.get("tokenizer.ggml.unknown_token_id") {
        let id = meta.typed("tokenizer.ggml.unknown_token_id", v.to_u32())? as usize;
        let unk = tokens.get(id).ok_or_else(|| {
            Error::format(meta.path, format!("tokenizer.ggml.unknown_token_id {id} is outside the {} tokens", tokens.len()))
        })?;
        tok.add_special_tokens([AddedToken::from(unk.clone(), true).normalized(false)])
            .map_err(tok_err(meta))?;
    }
    add_typed_tokens(meta, &mut tok, &tokens, true)?;
    // `encode(text, true)` puts BOS first when the file asks for it (the default for
    // SentencePiece vocabularies, as llama.cpp and transformers read them).
    let add_bos = meta
        .map
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(true);
    if let (true, Some(bos)) = (add_bos, meta.map.get("tokenizer.ggml.bos_token_id")) {
        let id = meta.typed("tokenizer.ggml.bos_token_id", bos.to_u32())?;
        let name = tokens.get(id as usize).ok_or_else(|| {
            Error::format(meta.path, format!("tokenizer.ggml.bos_token_id {id} is outside the {} tokens", tokens.len()))
        })?;
        let template = TemplateProcessing::builder()
            .try_single(format!("{name}:0 $A:0"))
            .and_then(|b| b.try_pair(format!("{name}:0 $A:0 {name}:1 $B:1")))
            .map_err(|e| Error::format(meta.path, format!("BOS template: {e}")))?
            .special_tokens(vec![(name.clone(), id)])
            .build()
            .map_err(|e| Error::format(meta.path, format!("BOS template: {e}")))?;
        tok.with_post_processor(Some(template));
    }
    Ok(tok)
}

/// BPE merges implied by a SentencePiece vocabulary, as transformers'
/// `generate_merges(vocab, scores)`: every split of a piece into two pieces of the
/// vocabulary is a merge ranked by the whole piece's score (highest first), ties by the
/// left then right part's length in characters (longest first), then in vocabulary order
/// (pieces in file order; a piece's splits by the ids of their left, then right part).
pub(crate) fn merges_from_scores(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let ids: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    // Python's dict(zip(tokens, scores)): first position, last score of a repeated piece.
    let mut seen = std::collections::HashSet::new();
    let mut merges: Vec<(&str, &str, f32, usize, usize)> = Vec::new();
    for piece in tokens {
        if !seen.insert(piece.as_str()) {
            continue;
        }
        let score = scores[ids[piece.as_str()]];
        let mut local: Vec<(&str, &str, f32, usize, usize)> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(l, r)| ids.contains_key(l) && ids.contains_key(r))
            .map(|(l, r)| (l, r, score, l.chars().count(), r.chars().count()))
            .collect();
        local.sort_by_key(|&(l, r, ..)| (ids[l], ids[r]));
        merges.extend(local);
    }
    // Stable, descending on (score, left length, right length): equal keys keep their order,
    // as Python's sorted(..., reverse=True) does; scores compare as Python floats (−0 = 0;
    // NaN was refused).
    merges.sort_by(|a, b| {
        b.2.partial_cmp(&a.2)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.3.cmp(&a.3))
            .then(b.4.cmp(&a.4))
    });
    merges
        .into_iter()
        .map(|(l, r, ..)| (l.to_string(), r.to_string()))
        .collect()
}
