//! Avro input in the Confluent wire format: a magic byte `0`, the writer schema's id as four
//! big-endian bytes, then one Avro binary datum.
//!
//! Shops that run a Schema Registry put Avro on their topics, not JSON. The writer schemas come
//! from a local directory of `<id>.avsc` files (what works without a registry). A datum is
//! decoded with its writer schema and turned into a JSON value (see `json.rs`), which then goes
//! through the same mapping as a CSV or Parquet row, so every mapping rule applies unchanged.
//! Every way a payload can be wrong is a [`Rejection`] (`malformed_json`) whose detail starts
//! with `Avro:` and names what is wrong; none panics.

mod json;
mod schemas;

#[cfg(test)]
mod tests;

use std::io::Read;

pub use schemas::{AvroSchemaError, AvroSchemas};

use crate::event::{RejectReason, Rejection};

/// The byte every Confluent-framed payload starts with.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte and schema id.
const HEADER_LEN: usize = 5;
/// The longest detail an Avro refusal carries (the decoder's own message can quote data).
const MAX_DETAIL: usize = 300;

impl AvroSchemas {
    /// One wire-format payload as a JSON value, ready for the mapping.
    pub fn decode(&self, payload: &[u8]) -> Result<serde_json::Value, Rejection> {
        let Some((header, datum)) = payload.split_first_chunk::<HEADER_LEN>() else {
            return Err(refuse(format!(
                "{} bytes is too short for the Confluent wire format (magic byte 0, 4-byte \
                 schema id, datum)",
                payload.len()
            )));
        };
        if header[0] != MAGIC_BYTE {
            let hint = if header[0] == b'{' {
                " (this looks like JSON: is the topic Avro?)"
            } else {
                ""
            };
            return Err(refuse(format!(
                "magic byte is 0x{:02x}, not 0: not the Confluent wire format{hint}",
                header[0]
            )));
        }
        let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let Some(schema) = self.get(id) else {
            return Err(refuse(format!(
                "unknown schema id {id} (schemas from {})",
                self.source()
            )));
        };
        let mut reader = Tracked {
            data: datum,
            pos: 0,
            hit_end: false,
        };
        let decoded = apache_avro::from_avro_datum(&schema.schema, &mut reader, None);
        // The decoder reads a union index, a boolean or a string that ends early as a null:
        // any read past the end means the datum was cut short, whatever it returned.
        if reader.hit_end {
            return Err(refuse(format!(
                "datum of schema id {id} is truncated ({} bytes after the header)",
                datum.len()
            )));
        }
        let value = decoded.map_err(|e| {
            refuse(format!(
                "datum does not match schema id {id} ({}): {e}",
                schema.file
            ))
        })?;
        if reader.pos < datum.len() {
            return Err(refuse(format!(
                "{} bytes left after the datum of schema id {id}: not written with {}",
                datum.len() - reader.pos,
                schema.file
            )));
        }
        json::to_json(&value, &schema.schema, &schema.names)
            .map_err(|e| refuse(format!("schema id {id}: {e}")))
    }
}

/// A refusal of an Avro payload, its detail bounded.
fn refuse(detail: String) -> Rejection {
    let mut detail = format!("Avro: {detail}");
    if detail.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    Rejection::new(RejectReason::MalformedJson, detail)
}

/// A reader over the datum that remembers whether anything tried to read past its end.
struct Tracked<'a> {
    data: &'a [u8],
    pos: usize,
    hit_end: bool,
}

impl Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.data[self.pos..];
        if rest.len() < buf.len() {
            self.hit_end = true;
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}
