//! Request traces in the Mooncake JSONL format.
//!
//! One JSON object per line: `{"timestamp": 27482, "input_length": 6955,
//! "output_length": 52, "hash_ids": [46, 47, 48, 2353]}`. Only `hash_ids` is
//! required; each id stands for a 512-token block *and everything before it*.
//! Blank lines are skipped. Any other malformed line is an error naming the
//! file, the line and the field.
//!
//! Input is bounded: only regular files are read (a device or FIFO such as
//! `/dev/zero` never ends), a line may hold at most [`MAX_LINE_BYTES`] and a
//! request at most [`MAX_IDS_PER_REQUEST`] ids, and the whole trace must fit
//! in the memory available (each id costs about [`BYTES_PER_ID`] once
//! parsed and hashed). A UTF-8 byte-order mark at the start is skipped;
//! bytes that are not UTF-8 are an error naming the line.

use kvtier_logical::hash_trace_ids_into;
use kvtier_logical::{CacheSalt, SequenceHash};
use std::path::{Path, PathBuf};

/// The built-in workload: the Mooncake FAST'25 synthetic trace (Apache-2.0),
/// 3,993 requests. Used when no `--trace` is given.
pub const EMBEDDED_TRACE: &str = include_str!("../../../tests/data/mooncake_synthetic_trace.jsonl");

/// Name shown for the embedded trace.
pub const EMBEDDED_NAME: &str = "embedded:mooncake_synthetic_trace.jsonl";

/// One request of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRequest {
    /// Arrival time in milliseconds (0 when absent).
    pub timestamp: u64,
    /// Prompt tokens (0 when absent).
    pub input_length: u64,
    /// Generated tokens (0 when absent).
    pub output_length: u64,
    /// One id per prompt block; each stands for the block and its whole prefix.
    pub hash_ids: Vec<u64>,
}

/// Longest line read, in bytes (a request of [`MAX_IDS_PER_REQUEST`] ids
/// written with 10-digit ids fits).
pub const MAX_LINE_BYTES: usize = 16 << 20;
/// Most block ids in one request (2^20 blocks of 512 tokens: 512 M tokens).
pub const MAX_IDS_PER_REQUEST: usize = 1 << 20;
/// Memory one parsed id costs: 8 bytes as an id, 16 as a sequence hash, and
/// vector slack.
pub const BYTES_PER_ID: u64 = 48;

/// A parse error, pointing at the file, line and field.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("cannot read trace {path}: {source}")]
    Io {
        /// The trace file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a valid request.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The trace file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the field where possible.
        message: String,
    },
    /// The path is not a regular file.
    #[error("cannot read trace {path}: it is {what}, not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is (`a character device`, `a FIFO`, ...).
        what: &'static str,
    },
    /// The trace needs more memory than is available.
    #[error("trace {path} is too large: about {needed} bytes once parsed at line {line}, {available} available ({limit})")]
    TooLarge {
        /// The trace file.
        path: String,
        /// Line reached.
        line: usize,
        /// Bytes the trace needs so far.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// Where the limit comes from.
        limit: String,
    },
    /// The trace holds no request.
    #[error("{path}: the trace holds no request")]
    Empty {
        /// The trace file.
        path: String,
    },
}

/// A parsed trace.
#[derive(Clone, Debug)]
pub struct Trace {
    /// Where it came from (a path or the embedded name).
    pub name: String,
    /// The requests, in file order.
    pub requests: Vec<TraceRequest>,
}

impl Trace {
    /// Read and parse a trace file (a regular file; bounded, see the module
    /// docs).
    pub fn from_file(path: &Path) -> Result<Trace, TraceError> {
        let io = |source| TraceError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            let what = if t.is_dir() {
                "a directory"
            } else if t.is_fifo() {
                "a FIFO"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else if t.is_socket() {
                "a socket"
            } else {
                "of an unknown type"
            };
            return Err(TraceError::NotAFile {
                path: path.to_owned(),
                what,
            });
        }
        let file = std::fs::File::open(path).map_err(io)?;
        Trace::from_reader(
            &path.display().to_string(),
            std::io::BufReader::with_capacity(1 << 20, file),
            kvtier_memory::available_memory(),
        )
        .map_err(|e| match e {
            TraceError::Io { source, .. } => io(source),
            e => e,
        })
    }

    /// The embedded default workload.
    pub fn embedded() -> Trace {
        Trace::parse(EMBEDDED_NAME, EMBEDDED_TRACE).expect("the embedded trace is valid")
    }

    /// Parse JSONL text; `name` labels errors.
    pub fn parse(name: &str, text: &str) -> Result<Trace, TraceError> {
        Trace::from_reader(name, text.as_bytes(), None)
    }

    /// Parse JSONL from `reader` line by line, within the bounds of the
    /// module docs; `memory` is the available memory and where its limit
    /// comes from (no memory check when `None`).
    pub fn from_reader(
        name: &str,
        mut reader: impl std::io::BufRead,
        memory: Option<(u64, String)>,
    ) -> Result<Trace, TraceError> {
        use std::io::{BufRead, Read};
        let line_err = |line: usize, message: String| TraceError::Line {
            path: name.to_string(),
            line,
            message,
        };
        let mut requests = Vec::new();
        let mut buf = Vec::new();
        let mut ids = 0u64;
        let mut line = 0usize;
        loop {
            buf.clear();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|source| TraceError::Io {
                    path: PathBuf::from(name),
                    source,
                })?;
            if n == 0 {
                break;
            }
            line += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            } else if buf.len() > MAX_LINE_BYTES {
                return Err(line_err(
                    line,
                    format!("line longer than {MAX_LINE_BYTES} bytes (no end of line found)"),
                ));
            }
            let mut bytes = &buf[..];
            if line == 1 {
                bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            }
            let text = std::str::from_utf8(bytes).map_err(|e| {
                line_err(
                    line,
                    format!(
                        "not UTF-8 text (invalid byte at column {})",
                        e.valid_up_to() + 1
                    ),
                )
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let req = parse_line(text).map_err(|m| line_err(line, m))?;
            ids += req.hash_ids.len() as u64;
            if let Some((available, limit)) = &memory {
                let needed = ids * BYTES_PER_ID;
                if needed > *available {
                    return Err(TraceError::TooLarge {
                        path: name.to_string(),
                        line,
                        needed,
                        available: *available,
                        limit: limit.clone(),
                    });
                }
            }
            requests.push(req);
        }
        if requests.is_empty() {
            return Err(TraceError::Empty {
                path: name.to_string(),
            });
        }
        Ok(Trace {
            name: name.to_string(),
            requests,
        })
    }

    /// Chain every request's ids into sequence hashes, once, before a replay.
    pub fn hashed(&self, salt: CacheSalt) -> HashedTrace {
        let total: usize = self.requests.iter().map(|r| r.hash_ids.len()).sum();
        let mut hashes = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(self.requests.len());
        for r in &self.requests {
            hash_trace_ids_into(salt, &r.hash_ids, &mut hashes);
            ends.push(hashes.len());
        }
        HashedTrace { hashes, ends }
    }
}

/// Parse one line, naming the field at fault.
fn parse_line(line: &str) -> Result<TraceRequest, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        format!("not valid JSON: {msg} (column {})", e.column())
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected a JSON object, found {}", kind(&v)))?;
    let uint = |field: &str| -> Result<u64, String> {
        match obj.get(field) {
            None | Some(serde_json::Value::Null) => Ok(0),
            Some(x) => x.as_u64().ok_or_else(|| {
                format!("field `{field}`: expected a non-negative integer, found {x}")
            }),
        }
    };
    let ids = match obj.get("hash_ids") {
        None => return Err("missing field `hash_ids`".to_string()),
        Some(serde_json::Value::Array(a)) if a.len() > MAX_IDS_PER_REQUEST => {
            return Err(format!(
                "field `hash_ids`: {} ids, at most {MAX_IDS_PER_REQUEST} per request",
                a.len()
            ))
        }
        Some(serde_json::Value::Array(a)) => a,
        Some(x) => {
            return Err(format!(
                "field `hash_ids`: expected an array, found {}",
                kind(x)
            ))
        }
    };
    let hash_ids = ids
        .iter()
        .enumerate()
        .map(|(j, x)| {
            x.as_u64().ok_or_else(|| {
                format!("field `hash_ids`, element {j}: expected a non-negative integer, found {x}")
            })
        })
        .collect::<Result<Vec<u64>, String>>()?;
    Ok(TraceRequest {
        timestamp: uint("timestamp")?,
        input_length: uint("input_length")?,
        output_length: uint("output_length")?,
        hash_ids,
    })
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A trace's requests as chained sequence hashes in one flat buffer.
#[derive(Clone, Debug, Default)]
pub struct HashedTrace {
    hashes: Vec<SequenceHash>,
    ends: Vec<usize>,
}

impl HashedTrace {
    /// Number of requests.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True if there is no request.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The block hashes of request `i`.
    pub fn request(&self, i: usize) -> &[SequenceHash] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.hashes[start..self.ends[i]]
    }

    /// Iterate over requests' hashes in order.
    pub fn iter(&self) -> impl Iterator<Item = &[SequenceHash]> + '_ {
        (0..self.len()).map(move |i| self.request(i))
    }

    /// Requests `start..start + len` (clamped to the trace) as a new trace.
    pub fn slice(&self, start: usize, len: usize) -> HashedTrace {
        let start = start.min(self.len());
        let end = start.saturating_add(len).min(self.len());
        let mut out = HashedTrace::default();
        for i in start..end {
            out.hashes.extend_from_slice(self.request(i));
            out.ends.push(out.hashes.len());
        }
        out
    }

    /// Number of distinct block hashes in the trace.
    pub fn distinct_blocks(&self) -> usize {
        let set: std::collections::HashSet<_> = self.hashes.iter().collect();
        set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn embedded_parses() {
        let t = Trace::embedded();
        assert_eq!(t.requests.len(), 3993);
        let h = t.hashed(CacheSalt(0));
        assert_eq!(h.len(), 3993);
        assert_eq!(h.iter().map(|r| r.len()).sum::<usize>(), 121_877);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        // (input, how the message starts, what else it contains).
        let cases = [
            (
                "{\"hash_ids\": [1, 2]}\n\n{\"timestamp\": 3}\n",
                "t.jsonl:3: ",
                "hash_ids",
            ),
            (
                "{\"hash_ids\": [1], \"timestamp\": \"x\"}",
                "t.jsonl:1: field `timestamp`",
                "",
            ),
            ("[1]", "", "expected a JSON object"),
            ("{\"hash_ids\": [1, -4]}", "", "hash_ids"),
            ("not json", "t.jsonl:1: ", ""),
            ("\n\n", "", "no request"),
        ];
        for (text, start, part) in cases {
            let e = Trace::parse("t.jsonl", text).unwrap_err().to_string();
            assert!(e.starts_with(start) && e.contains(part), "{text:?}: {e}");
        }
        let e = Trace::parse("t.jsonl", "{\"hash_ids\": [1, \"x\"]}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.jsonl:1: field `hash_ids`, element 1: expected a non-negative integer, found \"x\""
        );
    }

    #[test]
    fn bounded_and_well_located_input_errors() {
        // A BOM is skipped; non-UTF-8 names its line.
        let t = Trace::parse("t", "\u{feff}{\"hash_ids\": [1]}\n").unwrap();
        assert_eq!(t.requests.len(), 1);
        let bad = b"{\"hash_ids\": [1]}\n{\"hash_ids\": [\xff]}\n";
        let e = Trace::from_reader("t", &bad[..], None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t:2: not UTF-8"), "{e}");
        // An endless line is cut at the bound.
        let zeros = std::io::BufReader::new(std::io::repeat(0).take(MAX_LINE_BYTES as u64 + 10));
        let e = Trace::from_reader("z", zeros, None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("z:1: line longer than"), "{e}");
        // Too many ids in one request.
        let mut line = String::from("{\"hash_ids\": [");
        for i in 0..=MAX_IDS_PER_REQUEST {
            line.push_str(if i == 0 { "1" } else { ",1" });
        }
        line.push_str("]}");
        let e = Trace::parse("t", &line).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
        // More than the memory available.
        let e = Trace::from_reader(
            "m",
            &b"{\"hash_ids\": [1, 2, 3]}\n"[..],
            Some((100, "test".into())),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("too large") && e.contains("100 available"),
            "{e}"
        );
        // Devices are refused before reading.
        let e = Trace::from_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Trace::from_file(Path::new("/nonexistent/x.jsonl")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.jsonl"));
    }
}
