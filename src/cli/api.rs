//! The lookup API's flags, and starting it beside the pipeline: the server, the token file
//! watch and (in a group) the member directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use churnguard::api::{self, ApiConfig, ApiMetrics, Peers, Tokens};
use churnguard::kafka::members::MemberDirectory;
use churnguard::kafka::state_view::StateView;
use churnguard::kafka::PipelineConfig;
use churnguard::metrics::Metrics;
use clap::Args;

/// Flags of the lookup API (`GET /v1/users/{id}`, `/v1/users/{id}/export`).
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Serve the lookup API on this address (off unless set). A port of its own: /metrics
    /// stays on --metrics-addr, so scraping never needs the API's credentials.
    #[arg(long, env = "CHURNGUARD_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// File of bearer tokens, one per line (`TOKEN` or `ID TOKEN`, at least 16 characters);
    /// re-read when it changes, so tokens rotate without a restart. Required with --api-addr.
    #[arg(long, env = "CHURNGUARD_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// The URL the other members reach this one's API at (in Kubernetes:
    /// `http://$(POD_IP):9465` from the downward API). Default: `http://<api-addr>`, or
    /// `http://$HOSTNAME:<port>` when --api-addr binds every interface.
    #[arg(long, env = "CHURNGUARD_API_ADVERTISED_URL")]
    pub api_advertised_url: Option<String>,
    /// Compacted topic where members advertise their URL and partitions, so any member answers
    /// for any user. Created (1 partition) if missing. Empty = `<group>.api-members`.
    #[arg(long, env = "CHURNGUARD_API_MEMBERS_TOPIC", default_value = "")]
    pub api_members_topic: String,
    /// Requests served at once; more are refused with 503 at once rather than queued.
    #[arg(long, env = "CHURNGUARD_API_MAX_CONCURRENT", default_value_t = 64)]
    pub api_max_concurrent: usize,
    /// Longest a request may take, asking other members included (milliseconds).
    #[arg(long, env = "CHURNGUARD_API_TIMEOUT_MS", default_value_t = 2_000)]
    pub api_timeout_ms: u64,
    /// Longest one request to another member may take (milliseconds).
    #[arg(
        long,
        env = "CHURNGUARD_API_FORWARD_TIMEOUT_MS",
        default_value_t = 1_000
    )]
    pub api_forward_timeout_ms: u64,
}

/// The API and what keeps it current.
pub struct RunningApi {
    server: api::ApiServer,
    directory: Option<Arc<MemberDirectory>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningApi {
    /// Stops serving and leaves the member directory (a tombstone, so no member keeps asking).
    pub async fn stop(self) {
        self.server.stop();
        for t in self.tasks {
            t.abort();
        }
        if let Some(d) = self.directory {
            let _ = tokio::task::spawn_blocking(move || d.leave(Duration::from_secs(5))).await;
        }
    }
}

fn advertised_url(args: &ApiArgs, addr: SocketAddr) -> Result<String> {
    if let Some(url) = &args.api_advertised_url {
        let parsed = reqwest::Url::parse(url)
            .with_context(|| format!("--api-advertised-url {url:?} is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            bail!("--api-advertised-url {url:?} must be an http(s) URL with a host");
        }
        return Ok(url.trim_end_matches('/').to_string());
    }
    if !addr.ip().is_unspecified() {
        return Ok(format!("http://{addr}"));
    }
    match std::env::var("HOSTNAME") {
        Ok(host) if !host.is_empty() => Ok(format!("http://{host}:{}", addr.port())),
        _ => bail!(
            "--api-addr {addr} binds every interface: set --api-advertised-url to the URL other \
             members reach this one at (in Kubernetes: http://$(POD_IP):{})",
            addr.port()
        ),
    }
}

/// Loads the token file and starts its watch.
pub fn load_tokens(path: Option<&PathBuf>) -> Result<Arc<Tokens>> {
    let Some(path) = path else {
        bail!("--api-addr needs --api-token-file: the lookup API never runs unauthenticated");
    };
    let tokens = Arc::new(Tokens::load(path)?);
    tracing::info!(path = %path.display(), tokens = ?tokens.ids(), "API tokens loaded");
    Ok(tokens)
}

/// Starts the API if `--api-addr` is set: the server, the token watch and the member directory.
pub async fn start(
    args: &ApiArgs,
    pipeline: &PipelineConfig,
    metrics: &Metrics,
    view: &Arc<StateView>,
) -> Result<Option<RunningApi>> {
    let Some(addr) = args.api_addr else {
        return Ok(None);
    };
    let tokens = load_tokens(args.api_token_file.as_ref())?;
    let url = advertised_url(args, addr)?;
    let topic = if args.api_members_topic.is_empty() {
        format!("{}.api-members", pipeline.group)
    } else {
        args.api_members_topic.clone()
    };
    let options = &pipeline.kafka_options;
    let directory = MemberDirectory::start(
        &pipeline.brokers,
        options,
        &pipeline.group,
        &topic,
        &url,
        true,
    )
    .await
    .with_context(|| format!("cannot join the API member directory on topic {topic}"))?;
    let tasks = vec![
        tokens.watch(Duration::from_secs(5)),
        directory.keep_advertising(Arc::clone(view)),
    ];
    let config = ApiConfig {
        addr,
        advertised_url: url.clone(),
        max_concurrent: args.api_max_concurrent,
        request_timeout: Duration::from_millis(args.api_timeout_ms.max(1)),
        forward_timeout: Duration::from_millis(args.api_forward_timeout_ms.max(1)),
        max_id_bytes: pipeline.engine.max_id_bytes,
    };
    let peers: Arc<dyn Peers> = Arc::clone(&directory) as Arc<dyn Peers>;
    let server = api::serve(
        config,
        tokens,
        Arc::clone(view) as Arc<dyn api::LocalLookup>,
        Some(peers),
        ApiMetrics::register(&metrics.registry),
    )?;
    tracing::info!(addr = %server.addr, advertised = %url, directory = %topic, "lookup API started");
    Ok(Some(RunningApi {
        server,
        directory: Some(directory),
        tasks,
    }))
}
