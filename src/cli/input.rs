//! Flags that say how input records are read and what the engine makes of them: the event
//! mapping and the sliding windows shared by the service and the offline tools, and
//! `check-mapping`, which shows what a mapping makes of a sample. Kept apart from `args` so the
//! commands that read events share one definition.

use std::path::PathBuf;

use churnguard::features::Windows;
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

/// The sliding windows, shared by every command that runs the engine: a model only scores
/// under the windows it was trained with, so train, evaluate, replay and run take the same flag.
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Sliding-window horizons in days, ascending: 1 to 4 distinct values in 1..=365. Feature
    /// names follow them (e.g. 180 adds purchases_180d), so a model runs only under the windows
    /// it was trained with; per-user memory grows with the longest (at least 90 days are kept
    /// for the fixed 30-vs-60-day trends).
    #[arg(
        long,
        env = "CHURNGUARD_WINDOWS",
        default_value = "7,30,90",
        value_parser = parse_windows
    )]
    pub windows: Windows,
}

/// Parses `--windows` (clap shows the message after the offending value).
pub fn parse_windows(text: &str) -> Result<Windows, String> {
    text.parse::<Windows>().map_err(|e| e.to_string())
}
