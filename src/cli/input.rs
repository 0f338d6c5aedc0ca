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
}

impl MappingArgs {
    /// The decoder these flags describe; a refused mapping names its file and line.
    pub fn decoder(
        &self,
    ) -> Result<churnguard::mapping::EventDecoder, churnguard::mapping::MappingError> {
        churnguard::mapping::EventDecoder::from_file(self.event_mapping.as_deref())
    }
}

/// `churnguard check-mapping`.
#[derive(Debug, Clone, Args)]
pub struct CheckMappingArgs {
    /// Sample of source events, one JSON object per line.
    #[arg(long)]
    pub events: PathBuf,
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// How many records to show one by one before the histogram.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
}
