//! vLLM's KV-event wire format: the event types, their msgpack encodings and
//! a tolerant decoder.
//!
//! A payload is an `EventBatch` encoded as an array `[ts, [events], data_parallel_rank]`
//! (msgspec `array_like`; the rank is omitted when it is `None`). Each event is
//! encoded in one of two ways ([`WireFormat`]):
//!
//! - **map**: a map whose first key is `"type"` (msgspec `tag=True`), then the
//!   fields in declaration order, fields equal to their default left out
//!   (`omit_defaults`). vLLM >= 0.33 sends this; NVIDIA Dynamo accepts it.
//!   `BlockStored` keeps `parent_block_hash`, `lora_id`, `medium` and
//!   `lora_name` even when `None`: vLLM declares them without a default.
//! - **array**: `["BlockStored", block_hashes, parent_block_hash, token_ids,
//!   block_size, lora_id, medium, lora_name]`, `["BlockRemoved", block_hashes,
//!   medium]`, `["AllBlocksCleared"]` (msgspec `array_like`, trailing defaults
//!   omitted). SGLang, older vLLM and llm-d read this; readers of the older
//!   7-element form ignore the trailing `lora_name`.
//!
//! The encoder writes exactly the bytes msgspec writes for the same objects:
//! in the map form, vLLM 0.33's own (including msgspec's 16-bit map header for
//! `BlockStored`, a struct of more than 15 fields); in the array form, those of
//! an array-like struct of vLLM's required fields; smallest integer forms and
//! `float64` timestamps throughout. The golden tests check both against vLLM's
//! classes. The decoder accepts both encodings, integer
//! hashes signed or unsigned, byte-string hashes (low 64 bits, big-endian, as
//! llm-d reads them) and ignores unknown fields.

use rmp::encode as enc;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How events are encoded inside a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireFormat {
    /// Tagged maps (vLLM >= 0.33, Dynamo).
    #[default]
    Map,
    /// Tagged arrays (SGLang, older vLLM, llm-d).
    Array,
}

impl WireFormat {
    /// Every format.
    pub const ALL: [WireFormat; 2] = [WireFormat::Map, WireFormat::Array];

    /// `map` or `array`.
    pub fn name(self) -> &'static str {
        match self {
            WireFormat::Map => "map",
            WireFormat::Array => "array",
        }
    }
}

impl std::str::FromStr for WireFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        WireFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown event format `{s}` (expected `map` or `array`)"))
    }
}

/// One KV event as routers see it. Hashes are the engine's 64-bit block hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum WireEvent {
    /// Blocks became cached: a chain, each block the parent of the next.
    BlockStored {
        /// The chain's hashes, parent first.
        block_hashes: Vec<u64>,
        /// Parent of the first block (`None` for a sequence's first block).
        parent_block_hash: Option<u64>,
        /// The chain's tokens, `block_size` per block, or empty when unknown.
        token_ids: Vec<u32>,
        /// Tokens per block.
        block_size: u32,
        /// LoRA adapter id (deprecated by vLLM in favour of `lora_name`).
        lora_id: Option<i64>,
        /// Where the blocks live (`GPU`, `CPU`, `STORAGE`, ...).
        medium: Option<String>,
        /// LoRA adapter name.
        lora_name: Option<String>,
    },
    /// Blocks stopped being cached in `medium`.
    BlockRemoved {
        /// The removed blocks.
        block_hashes: Vec<u64>,
        /// Where they lived.
        medium: Option<String>,
    },
    /// Everything this publisher had announced is gone, in every medium.
    AllBlocksCleared,
}

impl WireEvent {
    /// The event's tag (`BlockStored`, `BlockRemoved`, `AllBlocksCleared`).
    pub fn tag(&self) -> &'static str {
        match self {
            WireEvent::BlockStored { .. } => "BlockStored",
            WireEvent::BlockRemoved { .. } => "BlockRemoved",
            WireEvent::AllBlocksCleared => "AllBlocksCleared",
        }
    }
}

/// A batch of events, the payload of one message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventBatch {
    /// Seconds since the Unix epoch when the batch was built.
    pub ts: f64,
    /// The events, in order.
    pub events: Vec<WireEvent>,
    /// The publisher's data-parallel rank (omitted on the wire when `None`).
    pub data_parallel_rank: Option<i64>,
}

/// Payloads that are not a valid event batch.
#[derive(Debug, thiserror::Error)]
#[error("undecodable KV event batch: {0}")]
pub struct DecodeError(String);

fn put_uint(out: &mut Vec<u8>, v: u64) {
    enc::write_uint(out, v).expect("writing to a Vec cannot fail");
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        put_uint(out, v as u64);
    } else {
        enc::write_sint(out, v).expect("writing to a Vec cannot fail");
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    enc::write_str(out, s).expect("writing to a Vec cannot fail");
}

fn put_array_len(out: &mut Vec<u8>, n: usize) {
    enc::write_array_len(out, n as u32).expect("writing to a Vec cannot fail");
}

fn put_map_len(out: &mut Vec<u8>, n: usize) {
    enc::write_map_len(out, n as u32).expect("writing to a Vec cannot fail");
}

fn put_nil(out: &mut Vec<u8>) {
    enc::write_nil(out).expect("writing to a Vec cannot fail");
}

fn put_opt_str(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        Some(s) => put_str(out, s),
        None => put_nil(out),
    }
}

fn put_uints<T: Copy + Into<u64>>(out: &mut Vec<u8>, v: &[T]) {
    put_array_len(out, v.len());
    for &x in v {
        put_uint(out, x.into());
    }
}

/// Append one event's encoding to `out`.
pub fn encode_event(out: &mut Vec<u8>, ev: &WireEvent, format: WireFormat) {
    let map = format == WireFormat::Map;
    // The key of the next field (map form only).
    let key = |out: &mut Vec<u8>, k: &str| {
        if map {
            put_str(out, k);
        }
    };
    // A tagged struct of `fields` fields (the tag counted) up to its tag.
    let head = |out: &mut Vec<u8>, fields, tag: &str| {
        if map {
            put_map_len(out, fields);
            put_str(out, "type");
        } else {
            put_array_len(out, fields);
        }
        put_str(out, tag);
    };
    match ev {
        WireEvent::BlockStored {
            block_hashes,
            parent_block_hash,
            token_ids,
            block_size,
            lora_id,
            medium,
            lora_name,
        } => {
            if map {
                // msgspec sizes a struct's map header for all its fields:
                // vLLM 0.33's BlockStored has 15 plus the tag, so map16.
                out.push(0xde);
                out.extend_from_slice(&8u16.to_be_bytes());
                put_str(out, "type");
            } else {
                put_array_len(out, 8);
            }
            put_str(out, "BlockStored");
            key(out, "block_hashes");
            put_uints(out, block_hashes);
            key(out, "parent_block_hash");
            match parent_block_hash {
                Some(p) => put_uint(out, *p),
                None => put_nil(out),
            }
            key(out, "token_ids");
            put_uints(out, token_ids);
            key(out, "block_size");
            put_uint(out, u64::from(*block_size));
            key(out, "lora_id");
            match lora_id {
                Some(l) => put_int(out, *l),
                None => put_nil(out),
            }
            key(out, "medium");
            put_opt_str(out, medium);
            key(out, "lora_name");
            put_opt_str(out, lora_name);
        }
        WireEvent::BlockRemoved {
            block_hashes,
            medium,
        } => {
            head(out, 3, "BlockRemoved");
            key(out, "block_hashes");
            put_uints(out, block_hashes);
            key(out, "medium");
            put_opt_str(out, medium);
        }
        WireEvent::AllBlocksCleared => {
            head(out, 1, "AllBlocksCleared");
        }
    }
}

/// Encode a whole batch (the payload frame).
pub fn encode_batch(batch: &EventBatch, format: WireFormat) -> Vec<u8> {
    // Sized for the worst case (9 bytes per hash, 5 per token, the keys and
    // scalars of an event) so the buffer is written without regrowing.
    let size: usize = batch
        .events
        .iter()
        .map(|e| match e {
            WireEvent::BlockStored {
                block_hashes,
                token_ids,
                medium,
                ..
            } => {
                160 + 9 * block_hashes.len()
                    + 5 * token_ids.len()
                    + medium.as_ref().map_or(0, |m| m.len())
            }
            WireEvent::BlockRemoved {
                block_hashes,
                medium,
            } => 48 + 9 * block_hashes.len() + medium.as_ref().map_or(0, |m| m.len()),
            WireEvent::AllBlocksCleared => 32,
        })
        .sum();
    let mut out = Vec::with_capacity(24 + size);
    put_array_len(
        &mut out,
        if batch.data_parallel_rank.is_some() {
            3
        } else {
            2
        },
    );
    enc::write_f64(&mut out, batch.ts).expect("writing to a Vec cannot fail");
    put_array_len(&mut out, batch.events.len());
    for ev in &batch.events {
        encode_event(&mut out, ev, format);
    }
    if let Some(r) = batch.data_parallel_rank {
        put_int(&mut out, r);
    }
    out
}

/// Decode a payload frame (either event encoding, or a mix).
pub fn decode_batch(payload: &[u8]) -> Result<EventBatch, DecodeError> {
    rmp_serde::from_slice::<RawBatch>(payload)
        .map(|b| EventBatch {
            ts: b.0,
            events: b.1.into_iter().map(|h| h.0).collect(),
            data_parallel_rank: b.2,
        })
        .map_err(|e| DecodeError(e.to_string()))
}

#[derive(Deserialize)]
struct RawBatch(f64, Vec<HashedEvent>, #[serde(default)] Option<i64>);

/// A block hash as sent: an integer (signed or not) or a byte string.
struct WireHash(u64);

impl<'de> Deserialize<'de> for WireHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireHash;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a block hash (integer or bytes)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WireHash, E> {
                Ok(WireHash(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WireHash, E> {
                Ok(WireHash(v as u64))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<WireHash, E> {
                let tail = &v[v.len().saturating_sub(8)..];
                Ok(WireHash(
                    tail.iter().fold(0u64, |a, &b| (a << 8) | b as u64),
                ))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<WireHash, E> {
                self.visit_bytes(&v)
            }
        }
        d.deserialize_any(V)
    }
}

fn hashes(v: Vec<WireHash>) -> Vec<u64> {
    v.into_iter().map(|h| h.0).collect()
}

/// A [`WireEvent`] decoded from either encoding.
struct HashedEvent(WireEvent);

/// The fields an event may carry, gathered from a map or an array.
#[derive(Default)]
struct Fields {
    block_hashes: Option<Vec<WireHash>>,
    parent: Option<WireHash>,
    token_ids: Option<Vec<u32>>,
    block_size: Option<u32>,
    lora_id: Option<i64>,
    medium: Option<String>,
    lora_name: Option<String>,
}

impl Fields {
    fn build<E: de::Error>(self, tag: &str) -> Result<WireEvent, E> {
        match tag {
            "BlockStored" => Ok(WireEvent::BlockStored {
                block_hashes: hashes(
                    self.block_hashes
                        .ok_or_else(|| E::missing_field("block_hashes"))?,
                ),
                parent_block_hash: self.parent.map(|h| h.0),
                token_ids: self.token_ids.unwrap_or_default(),
                block_size: self
                    .block_size
                    .ok_or_else(|| E::missing_field("block_size"))?,
                lora_id: self.lora_id,
                medium: self.medium,
                lora_name: self.lora_name,
            }),
            "BlockRemoved" => Ok(WireEvent::BlockRemoved {
                block_hashes: hashes(
                    self.block_hashes
                        .ok_or_else(|| E::missing_field("block_hashes"))?,
                ),
                medium: self.medium,
            }),
            "AllBlocksCleared" => Ok(WireEvent::AllBlocksCleared),
            other => Err(E::unknown_variant(
                other,
                &["BlockStored", "BlockRemoved", "AllBlocksCleared"],
            )),
        }
    }
}

impl<'de> Deserialize<'de> for HashedEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = HashedEvent;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a KV event as a tagged map or a tagged array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HashedEvent, A::Error> {
        let mut tag: Option<String> = None;
        let mut f = Fields::default();
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                "type" => tag = Some(map.next_value()?),
                "block_hashes" => f.block_hashes = Some(map.next_value()?),
                "parent_block_hash" => f.parent = map.next_value()?,
                "token_ids" => f.token_ids = Some(map.next_value()?),
                "block_size" => f.block_size = Some(map.next_value()?),
                "lora_id" => f.lora_id = map.next_value()?,
                "medium" => f.medium = map.next_value()?,
                "lora_name" => f.lora_name = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let tag = tag.ok_or_else(|| de::Error::missing_field("type"))?;
        f.build(&tag).map(HashedEvent)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HashedEvent, A::Error> {
        let tag: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &"an event tag"))?;
        let mut f = Fields::default();
        match tag.as_str() {
            "BlockStored" => {
                f.block_hashes = seq.next_element()?;
                f.parent = seq.next_element::<Option<WireHash>>()?.flatten();
                f.token_ids = seq.next_element()?;
                f.block_size = seq.next_element()?;
                f.lora_id = seq.next_element::<Option<i64>>()?.flatten();
                f.medium = seq.next_element::<Option<String>>()?.flatten();
                f.lora_name = seq.next_element::<Option<String>>()?.flatten();
            }
            "BlockRemoved" => {
                f.block_hashes = seq.next_element()?;
                f.medium = seq.next_element::<Option<String>>()?.flatten();
            }
            _ => {}
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        f.build(&tag).map(HashedEvent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_from_their_names() {
        for f in WireFormat::ALL {
            assert_eq!(f.name().parse::<WireFormat>(), Ok(f));
        }
        assert_eq!(
            "Map".parse::<WireFormat>(),
            Err("unknown event format `Map` (expected `map` or `array`)".to_string())
        );
    }

    fn sample() -> EventBatch {
        EventBatch {
            ts: 1.5,
            events: vec![
                WireEvent::AllBlocksCleared,
                WireEvent::BlockStored {
                    block_hashes: vec![1, u64::MAX, 300],
                    parent_block_hash: None,
                    token_ids: vec![],
                    block_size: 16,
                    lora_id: None,
                    medium: Some("GPU".into()),
                    lora_name: None,
                },
                WireEvent::BlockStored {
                    block_hashes: vec![7],
                    parent_block_hash: Some(300),
                    token_ids: vec![1, 2, 3, 4],
                    block_size: 4,
                    lora_id: Some(-3),
                    medium: None,
                    lora_name: Some("adapter".into()),
                },
                WireEvent::BlockRemoved {
                    block_hashes: vec![u64::MAX],
                    medium: Some("CPU".into()),
                },
            ],
            data_parallel_rank: Some(2),
        }
    }

    #[test]
    fn both_encodings_round_trip() {
        for format in [WireFormat::Map, WireFormat::Array] {
            let b = sample();
            let bytes = encode_batch(&b, format);
            assert_eq!(decode_batch(&bytes).unwrap(), b, "{format:?}");
        }
        let mut b = sample();
        b.data_parallel_rank = None;
        let bytes = encode_batch(&b, WireFormat::Map);
        assert_eq!(bytes[0], 0x92, "rank omitted: a 2-element batch");
        assert_eq!(decode_batch(&bytes).unwrap(), b);
    }

    #[test]
    fn map_form_starts_with_the_tag_and_array_form_is_positional() {
        let mut out = Vec::new();
        encode_event(&mut out, &WireEvent::AllBlocksCleared, WireFormat::Map);
        assert_eq!(out, b"\x81\xa4type\xb0AllBlocksCleared");
        out.clear();
        encode_event(&mut out, &WireEvent::AllBlocksCleared, WireFormat::Array);
        assert_eq!(out, b"\x91\xb0AllBlocksCleared");
    }

    #[test]
    fn decoder_accepts_signed_and_byte_hashes_and_old_short_arrays() {
        // ["BlockStored", [-1, b"\x00..\x05"], None, [], 16, None, "GPU"] (7 elements).
        #[derive(Serialize)]
        struct Old<'a>(
            &'a str,
            (i64, serde_bytes_like::Bytes<'a>),
            Option<u64>,
            Vec<u32>,
            u32,
            Option<i64>,
            &'a str,
        );
        mod serde_bytes_like {
            pub struct Bytes<'a>(pub &'a [u8]);
            impl serde::Serialize for Bytes<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_bytes(self.0)
                }
            }
        }
        let key = [9u8, 9, 0, 0, 0, 0, 0, 0, 0, 5];
        let ev = Old(
            "BlockStored",
            (-1, serde_bytes_like::Bytes(&key)),
            None,
            vec![],
            16,
            None,
            "GPU",
        );
        let payload = rmp_serde::to_vec(&(0.0f64, vec![ev])).unwrap();
        let b = decode_batch(&payload).unwrap();
        assert_eq!(b.data_parallel_rank, None);
        match &b.events[0] {
            WireEvent::BlockStored {
                block_hashes,
                medium,
                lora_name,
                ..
            } => {
                assert_eq!(block_hashes, &vec![u64::MAX, 5]);
                assert_eq!(medium.as_deref(), Some("GPU"));
                assert_eq!(lora_name, &None);
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(decode_batch(b"\x93\x01").is_err());
        let unknown = rmp_serde::to_vec(&(0.0f64, vec![("Nope",)])).unwrap();
        assert!(decode_batch(&unknown).is_err());
    }
}
