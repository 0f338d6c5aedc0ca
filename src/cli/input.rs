//! Flags that say how input records are read: the event mapping shared by the service and the
//! offline tools, and `check-mapping`, which shows what a mapping makes of a sample. Kept apart
//! from `args` so the commands that read events share one definition.

use std::path::PathBuf;

use clap::Args;

/// `--event-mapping`: how input records become events, for the service and the offline tools
/// alike.
#[derive(Debug, Clone, Args)]
pub struct MappingArgs {
    /// Event mapping file (TOML): where the source keeps each field and what its event types
    /// mean (presets in deploy/mappings/). Without it, input is churnguard's native JSON.
    #[arg(long, env = "CHURNGUARD_EVENT_MAPPING")]
    pub event_mapping: Option<PathBuf>,
    /// Directory of Avro writer schemas named `<id>.avsc`: payloads are then Avro in the
    /// Confluent wire format (magic byte 0, 4-byte schema id, datum), mapped like JSON records.
    #[arg(long, env = "CHURNGUARD_AVRO_SCHEMAS")]
    pub avro_schemas: Option<PathBuf>,
}

impl MappingArgs {
    /// The decoder these flags describe; a refused mapping names its file and line, a refused
    /// schema its file.
    pub fn decoder(&self) -> anyhow::Result<churnguard::mapping::EventDecoder> {
        let decoder = churnguard::mapping::EventDecoder::from_file(self.event_mapping.as_deref())?;
        let Some(dir) = &self.avro_schemas else {
            return Ok(decoder);
        };
        #[cfg(feature = "avro")]
        {
            let schemas = churnguard::mapping::avro::AvroSchemas::load(dir)?;
            tracing::info!(
                dir = %dir.display(),
                schema_ids = ?schemas.ids().collect::<Vec<_>>(),
                "input is Avro in the Confluent wire format"
            );
            Ok(decoder.with_avro(schemas))
        }
        #[cfg(not(feature = "avro"))]
        anyhow::bail!(
            "--avro-schemas {}: this churnguard was built without the `avro` feature",
            dir.display()
        )
    }
}

/// `churnguard check-mapping`.
#[derive(Debug, Clone, Args)]
pub struct CheckMappingArgs {
    /// Sample of source events, one JSON object per line (with `--avro-schemas`, one
    /// wire-format payload per line in base64).
    #[arg(long)]
    pub events: PathBuf,
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// How many records to show one by one before the histogram.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
}
