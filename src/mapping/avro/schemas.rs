//! The writer schemas, loaded once at startup from a directory of `<id>.avsc` files and checked
//! there, so a bad file stops the command with its name instead of refusing every message.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use apache_avro::schema::{Name, Namespace, ResolvedSchema, Schema};

/// The largest length or item count one Avro field may declare. The decoder allocates what a
/// length prefix claims before reading it; a forged prefix must not reserve gigabytes. An event
/// has no string or array near this size.
pub const MAX_DECLARED_LEN: usize = 1 << 20;

/// Why the schema directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum AvroSchemaError {
    #[error("cannot read the Avro schema directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the Avro schema directory {0} holds no <id>.avsc file")]
    Empty(PathBuf),
    #[error("invalid Avro schema {file}: {reason}")]
    File { file: PathBuf, reason: String },
}

/// One writer schema with the named types it defines (for `Ref`s and decimals' scales).
#[derive(Debug)]
pub(super) struct WriterSchema {
    pub schema: Schema,
    pub names: HashMap<Name, Schema>,
    /// The file it came from, for messages.
    pub file: String,
}

/// Writer schemas by id.
#[derive(Debug)]
pub struct AvroSchemas {
    by_id: BTreeMap<u32, WriterSchema>,
    /// Where they came from, for messages.
    source: String,
}

impl AvroSchemas {
    /// Loads every `<id>.avsc` in `dir` (other files are left alone). A file whose name is not
    /// a schema id, that is not a valid schema, or whose schema an event cannot be read from
    /// (not a record, a recursive type) is an error naming the file.
    pub fn load(dir: &Path) -> Result<AvroSchemas, AvroSchemaError> {
        let dir_error = |source| AvroSchemaError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        let mut by_id = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(dir_error)? {
            let path = entry.map_err(dir_error)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("avsc") {
                continue;
            }
            let file_error = |reason: String| AvroSchemaError::File {
                file: path.clone(),
                reason,
            };
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let id: u32 = stem.parse().map_err(|_| {
                file_error(format!(
                    "the file name must be the schema id: <id>.avsc with id in 0..={}",
                    u32::MAX
                ))
            })?;
            let text = std::fs::read_to_string(&path).map_err(|e| file_error(e.to_string()))?;
            let file = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            let schema = WriterSchema::parse(&text, file).map_err(file_error)?;
            by_id.insert(id, schema);
        }
        if by_id.is_empty() {
            return Err(AvroSchemaError::Empty(dir.to_path_buf()));
        }
        // First call wins, process-wide: set before the first datum is decoded.
        apache_avro::util::max_allocation_bytes(MAX_DECLARED_LEN);
        Ok(AvroSchemas {
            by_id,
            source: dir.display().to_string(),
        })
    }

    /// Schemas given as text (tests, embedding programs): id → schema JSON.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = (u32, &'a str)>,
    ) -> Result<AvroSchemas, AvroSchemaError> {
        let mut by_id = BTreeMap::new();
        for (id, text) in texts {
            let name = format!("schema {id}");
            let schema = WriterSchema::parse(text, name.clone()).map_err(|reason| {
                AvroSchemaError::File {
                    file: name.into(),
                    reason,
                }
            })?;
            by_id.insert(id, schema);
        }
        apache_avro::util::max_allocation_bytes(MAX_DECLARED_LEN);
        Ok(AvroSchemas {
            by_id,
            source: "memory".to_string(),
        })
    }

    /// The schema ids known, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_id.keys().copied()
    }

    pub(super) fn get(&self, id: u32) -> Option<&WriterSchema> {
        self.by_id.get(&id)
    }

    /// Where the schemas came from (the directory).
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl WriterSchema {
    fn parse(text: &str, file: String) -> Result<WriterSchema, String> {
        let schema = Schema::parse_str(text).map_err(|e| e.to_string())?;
        if !matches!(schema, Schema::Record(_)) {
            return Err("the top-level type must be a record (an event is a record)".into());
        }
        let names: HashMap<Name, Schema> = ResolvedSchema::try_from(&schema)
            .map_err(|e| e.to_string())?
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        let mut check = Check {
            names: &names,
            expanding: Vec::new(),
            min_size: HashMap::new(),
        };
        check.min_size(&schema, &None)?;
        Ok(WriterSchema {
            schema,
            names,
            file,
        })
    }
}

/// Refuses the schemas whose datums could cost far more to decode than their size: recursive
/// types (nesting as deep as the payload is long) and arrays of items that take no bytes
/// (a few bytes could declare a million items).
struct Check<'n> {
    names: &'n HashMap<Name, Schema>,
    /// The named types being expanded, outermost first.
    expanding: Vec<Name>,
    /// The smallest encoding of each named type already checked.
    min_size: HashMap<Name, usize>,
}

impl Check<'_> {
    /// The fewest bytes a datum of `schema` takes.
    fn min_size(&mut self, schema: &Schema, namespace: &Namespace) -> Result<usize, String> {
        Ok(match schema {
            Schema::Null => 0,
            Schema::Float => 4,
            Schema::Double => 8,
            Schema::Duration => 12,
            Schema::Fixed(f) => f.size,
            Schema::Decimal(d) => self.min_size(&d.inner, namespace)?,
            Schema::Array(a) => {
                if self.min_size(&a.items, namespace)? == 0 {
                    return Err("an array of items that take no bytes (e.g. nulls or empty \
                                records) is not accepted: a few bytes could declare millions"
                        .into());
                }
                1
            }
            Schema::Map(m) => {
                self.min_size(&m.types, namespace)?;
                1
            }
            Schema::Union(u) => {
                for variant in u.variants() {
                    self.min_size(variant, namespace)?;
                }
                1
            }
            Schema::Record(r) => {
                let name = r.name.fully_qualified_name(namespace);
                self.expanding.push(name.clone());
                let mut size = 0;
                for field in &r.fields {
                    size += self.min_size(&field.schema, &name.namespace)?;
                }
                self.expanding.pop();
                self.min_size.insert(name, size);
                size
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace);
                if self.expanding.contains(&name) {
                    return Err(format!(
                        "type {} is recursive (refers to itself): not accepted for events",
                        name.fullname(None)
                    ));
                }
                if let Some(size) = self.min_size.get(&name) {
                    return Ok(*size);
                }
                let target = self
                    .names
                    .get(&name)
                    .ok_or_else(|| format!("type {} is not defined", name.fullname(None)))?;
                self.min_size(target, &name.namespace)?
            }
            _ => 1,
        })
    }
}
