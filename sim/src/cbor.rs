//! CBOR (RFC 8949) to and from JSON values, as far as the Smithy RPC v2 CBOR protocol
//! (`smithy.protocols#rpcv2Cbor`) uses it: the wire protocol of CloudWatch in the current AWS
//! SDKs (the Rust SDK's aws-sdk-cloudwatch among them; botocore's model lists
//! `"protocols": ["smithy-rpc-v2-cbor", "json", "query"]`).
//!
//! The protocol (Smithy docs, "RPC v2 CBOR protocol"): structures are maps keyed by member
//! name, lists are arrays, blobs byte strings, timestamps tag 1 around epoch seconds (an
//! integer or a float); a client may send definite or indefinite lengths. Decoding keeps
//! what JSON can hold: a byte string becomes an array of its bytes (no operation here takes a
//! blob), tag 1 its number, any other tag its content, `undefined` null.

use serde_json::{Map, Number, Value};

/// How deeply arrays, maps and tags may nest (a request nested deeper is refused, not a
/// stack overflow).
const MAX_DEPTH: usize = 64;

/// Decodes one CBOR data item (the whole input).
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut d = Decoder {
        bytes,
        at: 0,
        depth: 0,
    };
    let v = d.item()?.ok_or("a break where a data item was expected")?;
    if d.at != bytes.len() {
        return Err(format!("{} bytes after the data item", bytes.len() - d.at));
    }
    Ok(v)
}

struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The argument of a head with additional information `info` (None: indefinite).
    fn argument(&mut self, info: u8) -> Result<Option<u64>, String> {
        Ok(Some(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(
                self.take(2)?.try_into().unwrap_or_default(),
            )),
            26 => u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().unwrap_or_default(),
            )),
            27 => u64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()),
            31 => return Ok(None),
            _ => return Err(format!("reserved additional information {info}")),
        }))
    }

    fn len(n: u64) -> Result<usize, String> {
        usize::try_from(n).map_err(|_| format!("length {n} too large"))
    }

    /// One data item, or None for a break (0xff).
    fn item(&mut self) -> Result<Option<Value>, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let item = self.item_here();
        self.depth -= 1;
        item
    }

    fn item_here(&mut self) -> Result<Option<Value>, String> {
        let head = self.take(1)?[0];
        let (major, info) = (head >> 5, head & 0x1f);
        if head == 0xff {
            return Ok(None);
        }
        let value = match major {
            0 => Value::from(self.argument(info)?.ok_or("indefinite integer")?),
            1 => {
                let n = self.argument(info)?.ok_or("indefinite integer")?;
                let n = i64::try_from(n).map_err(|_| "negative integer too large")?;
                Value::from(-1 - n)
            }
            2 | 3 => {
                let mut raw = Vec::new();
                match self.argument(info)? {
                    Some(n) => raw.extend_from_slice(self.take(Self::len(n)?)?),
                    // Indefinite: definite chunks of the same major type until a break.
                    None => loop {
                        let chunk = self.take(1)?[0];
                        if chunk == 0xff {
                            break;
                        }
                        if chunk >> 5 != major {
                            return Err("a chunk of another type in an indefinite string".into());
                        }
                        let n = self
                            .argument(chunk & 0x1f)?
                            .ok_or("nested indefinite string")?;
                        raw.extend_from_slice(self.take(Self::len(n)?)?);
                    },
                }
                if major == 3 {
                    Value::String(String::from_utf8(raw).map_err(|e| format!("text: {e}"))?)
                } else {
                    Value::Array(raw.into_iter().map(Value::from).collect())
                }
            }
            4 => {
                let mut items = Vec::new();
                match self.argument(info)? {
                    Some(n) => {
                        for _ in 0..n {
                            items.push(self.item()?.ok_or("a break inside a definite array")?);
                        }
                    }
                    None => {
                        while let Some(v) = self.item()? {
                            items.push(v);
                        }
                    }
                }
                Value::Array(items)
            }
            5 => {
                let mut map = Map::new();
                let mut entry = |d: &mut Self, key: Value| -> Result<(), String> {
                    let Value::String(key) = key else {
                        return Err("a map key that is not text".into());
                    };
                    let v = d.item()?.ok_or("a break where a map value was expected")?;
                    map.insert(key, v);
                    Ok(())
                };
                match self.argument(info)? {
                    Some(n) => {
                        for _ in 0..n {
                            let key = self.item()?.ok_or("a break inside a definite map")?;
                            entry(self, key)?;
                        }
                    }
                    None => {
                        while let Some(key) = self.item()? {
                            entry(self, key)?;
                        }
                    }
                }
                Value::Object(map)
            }
            6 => {
                self.argument(info)?.ok_or("indefinite tag")?;
                self.item()?.ok_or("a tag around a break")?
            }
            _ => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 | 23 => Value::Null,
                25 => {
                    let b = self.take(2)?;
                    float(half(u16::from_be_bytes([b[0], b[1]])))?
                }
                26 => float(f64::from(f32::from_be_bytes(
                    self.take(4)?.try_into().unwrap_or_default(),
                )))?,
                27 => float(f64::from_be_bytes(
                    self.take(8)?.try_into().unwrap_or_default(),
                ))?,
                _ => return Err(format!("unsupported simple value {info}")),
            },
        };
        Ok(Some(value))
    }
}

fn float(f: f64) -> Result<Value, String> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("{f} has no JSON form"))
}

/// IEEE 754 half precision (RFC 8949, Appendix D).
fn half(h: u16) -> f64 {
    let exp = (h >> 10) & 0x1f;
    let mant = f64::from(h & 0x3ff);
    let v = match exp {
        0 => mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ => (mant + 1024.0) * 2f64.powi(i32::from(exp) - 25),
    };
    if h & 0x8000 != 0 {
        -v
    } else {
        v
    }
}

/// Encodes a JSON value as CBOR (definite lengths). Members named in `timestamps` are
/// timestamps: tag 1 around their epoch seconds, as the protocol carries them.
pub fn encode(value: &Value, timestamps: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value, timestamps, false);
    out
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn write(out: &mut Vec<u8>, value: &Value, timestamps: &[&str], timestamp: bool) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Number(n) => {
            if timestamp {
                head(out, 6, 1);
            }
            if let Some(u) = n.as_u64() {
                head(out, 0, u);
            } else if let Some(i) = n.as_i64() {
                head(out, 1, (-1 - i) as u64);
            } else {
                out.push(0xfb);
                out.extend(n.as_f64().unwrap_or_default().to_be_bytes());
            }
        }
        Value::String(s) => {
            head(out, 3, s.len() as u64);
            out.extend(s.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for v in items {
                write(out, v, timestamps, false);
            }
        }
        Value::Object(map) => {
            head(out, 5, map.len() as u64);
            for (k, v) in map {
                write(out, &Value::String(k.clone()), timestamps, false);
                write(out, v, timestamps, timestamps.contains(&k.as_str()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_what_json_holds_with_timestamps_tagged() {
        let v = json!({"a": [1, -5, 1.5, "x", true, null, {"b": 300}], "At": 1795766600.25, "n": 70000, "big": 5_000_000_000u64});
        let bytes = encode(&v, &["At"]);
        // tag 1 (0xc1) then a float64 before... the timestamp's value.
        let at = bytes
            .windows(3)
            .position(|w| w == [0x62, b'A', b't'])
            .unwrap();
        assert_eq!(&bytes[at + 3..at + 5], &[0xc1, 0xfb]);
        assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn decodes_rfc_8949_appendix_a_examples() {
        let cases: [(&[u8], Value); 10] = [
            (&[0x19, 0x03, 0xe8], json!(1000)),
            (&[0x38, 0x63], json!(-100)),
            (&[0xf9, 0x3c, 0x00], json!(1.0)),
            (&[0xf9, 0xc4, 0x00], json!(-4.0)),
            (&[0xfa, 0x47, 0xc3, 0x50, 0x00], json!(100000.0)),
            (&[0x64, 0x49, 0x45, 0x54, 0x46], json!("IETF")),
            (
                &[
                    0x7f, 0x65, 0x73, 0x74, 0x72, 0x65, 0x61, 0x64, 0x6d, 0x69, 0x6e, 0x67, 0xff,
                ],
                json!("streaming"),
            ),
            (&[0x9f, 0x01, 0x82, 0x02, 0x03, 0xff], json!([1, [2, 3]])),
            (
                &[
                    0xbf, 0x61, 0x61, 0x01, 0x61, 0x62, 0x9f, 0x02, 0x03, 0xff, 0xff,
                ],
                json!({"a": 1, "b": [2, 3]}),
            ),
            (&[0xc1, 0x1a, 0x51, 0x4b, 0x67, 0xb0], json!(1363896240)),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).unwrap(), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn refuses_truncated_and_trailing_input() {
        assert!(decode(&[0x19, 0x03]).is_err());
        assert!(decode(&[0x01, 0x02]).is_err());
        assert!(
            decode(&[0xa1, 0x01, 0x02]).is_err(),
            "a key that is not text"
        );
        let deep = [vec![0x81; 100_000], vec![0x01]].concat();
        assert!(decode(&deep).unwrap_err().contains("nested deeper"));
    }
}
