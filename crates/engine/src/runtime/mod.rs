//! Builds channels from a validated [`Config`] and runs them.
//!
//! `Engine::start` is the one `build()` step: it opens what each component needs (binds
//! listeners, loads TLS material, builds HTTP clients), so every start-up failure surfaces
//! before anything runs, then spawns sources, destination workers and the retention task.
//! `Engine::shutdown` stops accepting, lets each connection finish the frame it is on and
//! each worker settle its attempt, then closes the store (which flushes it).

pub mod channel;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use causeway_store::{ClaimMode, RetentionConfig, RetentionPolicy, Store};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::alerts::{AlertBoard, Evaluator};
use crate::config::{ChannelConfig, Config, DestinationKind, PayloadFormat, SourceConfig};
use crate::destinations::{self, Sender, Worker};
use crate::fhir::SharedConversion;
use crate::monitor::Monitor;
use crate::net::client::MllpClient;
use crate::net::{https, tls};
use crate::sources::{self, SourceStats, directory::DirectoryOptions, mllp::MllpSourceOptions};
use channel::Channel;

/// A failure to start: nothing keeps running when `start` returns one.
///
/// The reason is part of each message and not also the error's source, so a report that
/// prints the chain (`causeway: {e:#}`) says it once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("channel {channel}: cannot listen on {addr}: {error}")]
    Bind {
        channel: String,
        addr: String,
        error: std::io::Error,
    },
    #[error("cannot serve HTTP on {addr}: {error}")]
    HttpBind { addr: String, error: std::io::Error },
    #[error("server.tls: {error}")]
    HttpTls { error: crate::net::TlsError },
    #[error("channel {channel}: {error}")]
    Tls {
        channel: String,
        error: tls::TlsError,
    },
    #[error("channel {channel}: destination {destination}: {message}")]
    Destination {
        channel: String,
        destination: String,
        message: String,
    },
    #[error("channel {channel} has an HTTP source but [server] http is not set")]
    NoHttpServer { channel: String },
    #[error(transparent)]
    Notifier(#[from] crate::alerts::notify::NotifierError),
    #[error("bringing the FHIR search values up to date: {0}")]
    SearchIndex(causeway_store::Error),
}

/// What the HTTP API gets from the engine being started (see [`Engine::start_with_api`]).
#[derive(Debug)]
pub struct ApiContext<'a> {
    /// The built channels (write-back, management).
    pub channels: &'a BTreeMap<String, Arc<Channel>>,
    /// The bound HTTP address.
    pub addr: SocketAddr,
    /// The engine's live figures (`/metrics`, `/api/monitor`, `/api/stream`).
    pub monitor: &'a Arc<Monitor>,
    /// The alerts the rules raise (`GET /api/alerts`).
    pub alerts: &'a Arc<AlertBoard>,
}

/// A running engine.
pub struct Engine {
    pub store: Arc<dyn Store>,
    channels: BTreeMap<String, Arc<Channel>>,
    mllp_addrs: BTreeMap<String, SocketAddr>,
    source_stats: BTreeMap<String, Arc<SourceStats>>,
    http_addr: Option<SocketAddr>,
    monitor: Arc<Monitor>,
    alerts: Arc<AlertBoard>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field("mllp_addrs", &self.mllp_addrs)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

/// The queue of a destination: destination names are unique within a channel only.
pub fn queue_name(channel: &str, destination: &str) -> String {
    format!("{channel}/{destination}")
}

impl Engine {
    /// Starts every enabled channel of `config` on `store`.
    pub async fn start(config: &Config, store: Arc<dyn Store>) -> Result<Engine, StartError> {
        Self::start_with_api(config, store, |_| None).await
    }

    /// Starts the engine with an HTTP API beside the HTTP sources, on `[server] http`: `api`
    /// gets an [`ApiContext`] (the built channels, which the API needs for write-back and
    /// management, the bound address, the monitor and the alert board) and returns the routes
    /// to serve. Without `[server] http` there is no HTTP server and `api` is not called.
    pub async fn start_with_api<F>(
        config: &Config,
        store: Arc<dyn Store>,
        api: F,
    ) -> Result<Engine, StartError>
    where
        F: FnOnce(ApiContext<'_>) -> Option<axum::Router>,
    {
        // Before any listener or the API: a search must not miss what an older build stored.
        crate::search_index::bring_up_to_date(store.as_ref())
            .await
            .map_err(StartError::SearchIndex)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Woken by every write into the resource store, so notifications go out at once.
        let subscription_wake = Arc::new(Notify::new());
        let mut engine = Engine {
            store: store.clone(),
            channels: BTreeMap::new(),
            mllp_addrs: BTreeMap::new(),
            source_stats: BTreeMap::new(),
            http_addr: None,
            // Replaced once the channels are built.
            monitor: Arc::new(Monitor::new(Vec::new(), BTreeMap::new(), store.clone())),
            alerts: Arc::new(AlertBoard::default()),
            shutdown,
            tasks: JoinSet::new(),
        };
        let mut http_routes = Vec::new();
        // Build everything first: a failure must leave nothing running.
        let mut pending: Vec<Pending> = Vec::new();
        let mut drift_trackers = Vec::new();
        for cfg in config.channels.iter().filter(|c| c.enabled) {
            let (mut channel, workers) = build_channel(cfg, &store, &subscription_wake)?;
            if cfg.drift.enabled {
                let tracker = Arc::new(crate::drift::DriftTracker::open(
                    cfg.drift.clone(),
                    Some(&config.server.data_dir),
                    &cfg.name,
                ));
                drift_trackers.push(tracker.clone());
                channel.drift = Some(tracker);
            }
            let channel = Arc::new(channel);
            match &cfg.source {
                SourceConfig::Mllp(src) => {
                    let listener =
                        TcpListener::bind(&src.listen)
                            .await
                            .map_err(|error| StartError::Bind {
                                channel: cfg.name.clone(),
                                addr: src.listen.clone(),
                                error,
                            })?;
                    let addr = listener.local_addr().map_err(|error| StartError::Bind {
                        channel: cfg.name.clone(),
                        addr: src.listen.clone(),
                        error,
                    })?;
                    let tls = match &src.tls {
                        None => None,
                        Some(t) => Some(
                            tls::server_config(&t.cert, &t.key, t.client_ca.as_deref()).map_err(
                                |error| StartError::Tls {
                                    channel: cfg.name.clone(),
                                    error,
                                },
                            )?,
                        ),
                    };
                    let options = MllpSourceOptions {
                        max_connections: src.max_connections,
                        idle_timeout: src.idle_timeout,
                        read_timeout: src.read_timeout,
                        max_frame: src.max_frame,
                        tls,
                    };
                    engine.mllp_addrs.insert(cfg.name.clone(), addr);
                    let stats = Arc::new(SourceStats::default());
                    engine.source_stats.insert(cfg.name.clone(), stats.clone());
                    pending.push(Pending::Mllp(listener, options, channel.clone(), stats));
                }
                SourceConfig::Http(src) => {
                    if config.server.http.is_none() {
                        return Err(StartError::NoHttpServer {
                            channel: cfg.name.clone(),
                        });
                    }
                    http_routes.push((src.path.clone(), channel.clone(), src.max_body));
                }
                // Fed by the FHIR API's writes (the server calls the channel): nothing to run.
                SourceConfig::FhirApi => {}
                SourceConfig::Directory(src) => {
                    let options = DirectoryOptions {
                        path: src.path.clone(),
                        pattern: src.pattern.as_str().to_string(),
                        poll: src.poll,
                        done: src.done.clone(),
                        error: src.error.clone(),
                        max_file: src.max_file,
                    };
                    let stats = Arc::new(SourceStats::default());
                    engine.source_stats.insert(cfg.name.clone(), stats.clone());
                    pending.push(Pending::Directory(options, channel.clone(), stats));
                }
            }
            pending.extend(workers.into_iter().map(|w| Pending::Worker(Box::new(w))));
            engine.channels.insert(cfg.name.clone(), channel);
        }
        let http_listener = match &config.server.http {
            Some(addr) => {
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|error| StartError::HttpBind {
                            addr: addr.clone(),
                            error,
                        })?;
                engine.http_addr = listener.local_addr().ok();
                let tls = match &config.server.http_tls {
                    Some(t) => Some(
                        tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())
                            .map_err(|error| StartError::HttpTls { error })?,
                    ),
                    None => None,
                };
                Some((listener, tls))
            }
            _ => None,
        };

        engine.monitor = Arc::new(Monitor::new(
            engine.channels.values().cloned().collect(),
            engine.source_stats.clone(),
            store.clone(),
        ));
        engine
            .tasks
            .spawn(engine.monitor.clone().run(shutdown_rx.clone()));
        let notifiers = crate::alerts::Notifiers::build(&config.alerts.notifiers)?;

        // Nothing failed: start it all.
        for p in pending {
            let rx = shutdown_rx.clone();
            match p {
                Pending::Mllp(listener, options, channel, stats) => {
                    engine
                        .tasks
                        .spawn(sources::mllp::run(listener, options, channel, stats, rx));
                }
                Pending::Directory(options, channel, stats) => {
                    engine
                        .tasks
                        .spawn(sources::directory::run(options, channel, stats, rx));
                }
                Pending::Worker(worker) => {
                    engine.tasks.spawn((*worker).run(rx));
                }
            }
        }
        if let Some((listener, tls)) = http_listener {
            let mut app = sources::http::routes(http_routes);
            let bound = engine
                .http_addr
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            let context = ApiContext {
                channels: &engine.channels,
                addr: bound,
                monitor: &engine.monitor,
                alerts: &engine.alerts,
            };
            if let Some(api) = api(context) {
                app = app.merge(api);
            }
            let mut rx = shutdown_rx.clone();
            engine.tasks.spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                };
                let served = match tls {
                    None => {
                        let app = app.into_make_service_with_connect_info::<SocketAddr>();
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stop)
                            .await
                    }
                    Some(config) => match https::TlsListener::new(listener, config) {
                        Ok(l) => {
                            let app = https::with_peer_address(app)
                                .into_make_service_with_connect_info::<https::TlsPeer>();
                            axum::serve(l, app).with_graceful_shutdown(stop).await
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            });
        }
        {
            // reqwest needs a process TLS provider (see build_sender); https endpoints use it.
            let _ = rustls::crypto::ring::default_provider().install_default();
            match reqwest::Client::builder()
                .timeout(crate::subscriptions::NOTIFY_TIMEOUT)
                .build()
            {
                Ok(http) => {
                    let worker = crate::subscriptions::SubscriptionWorker {
                        store: store.clone(),
                        http,
                        worker_id: format!("subscriptions@{}", node_name()),
                        wake: subscription_wake.clone(),
                    };
                    engine.tasks.spawn(worker.run(shutdown_rx.clone()));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the subscription HTTP client; notifications are off")
                }
            }
        }
        let policies: Vec<RetentionPolicy> = config
            .channels
            .iter()
            .filter(|c| c.retention.payload.is_some() || c.retention.metadata.is_some())
            .map(|c| RetentionPolicy {
                channel: c.name.clone(),
                payload_after: c.retention.payload,
                metadata_after: c.retention.metadata,
            })
            .collect();
        if !policies.is_empty() {
            let mut rx = shutdown_rx.clone();
            let stop = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            let handle = causeway_store::spawn_retention(
                store.clone(),
                RetentionConfig {
                    policies,
                    ..RetentionConfig::default()
                },
                stop,
            );
            engine.tasks.spawn(async move {
                let _ = handle.task.await;
            });
        }
        if !drift_trackers.is_empty() {
            engine
                .tasks
                .spawn(save_drift_profiles(drift_trackers, shutdown_rx.clone()));
        }
        let notifiers = notifiers.start(&mut engine.tasks, &shutdown_rx);
        if !config.alerts.rules.is_empty() {
            let evaluator = Evaluator::new(
                &config.alerts,
                store.clone(),
                engine.alerts.clone(),
                notifiers,
                causeway_store::UnixMillis::now(),
            );
            let monitor = engine.monitor.clone();
            engine
                .tasks
                .spawn(evaluator.run(move || monitor.snapshot(), shutdown_rx.clone()));
        }
        tracing::info!(channels = engine.channels.len(), "engine started");
        Ok(engine)
    }

    pub fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels.get(name)
    }

    pub fn channels(&self) -> impl Iterator<Item = &Arc<Channel>> {
        self.channels.values()
    }

    /// The address an MLLP channel is listening on (the real port when configured with 0).
    pub fn mllp_addr(&self, channel: &str) -> Option<SocketAddr> {
        self.mllp_addrs.get(channel).copied()
    }

    /// The live figures of every channel (what `/metrics`, the dashboard and alerts read).
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    pub fn source_stats(&self, channel: &str) -> Option<&Arc<SourceStats>> {
        self.source_stats.get(channel)
    }

    /// The alerts the rules raise.
    pub fn alerts(&self) -> &Arc<AlertBoard> {
        &self.alerts
    }

    /// The address HTTP sources are served on, when any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Stops accepting, finishes in-flight work, then closes the store.
    pub async fn shutdown(self) {
        let store = self.store.clone();
        self.stop().await;
        if let Err(e) = store.close().await {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}

impl Engine {
    /// Stops accepting and finishes in-flight work like [`Engine::shutdown`], but leaves the
    /// store open, for an engine started again with a new configuration (a reload).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("engine stopped");
    }
}

/// One channel of `config`, ready for [`Channel::reprocess`] or ingest, without starting
/// its source or destinations (the CLI's `reprocess` uses this beside a running server).
pub fn build_channel_only(
    config: &Config,
    name: &str,
    store: &Arc<dyn Store>,
) -> Result<Option<Channel>, StartError> {
    match config.channels.iter().find(|c| c.name == name) {
        None => Ok(None),
        Some(cfg) => {
            build_channel(cfg, store, &Arc::new(Notify::new())).map(|(channel, _)| Some(channel))
        }
    }
}

/// Writes the channels' learned drift profiles every [`crate::drift::SAVE_EVERY`] while they
/// change, and once more when the engine stops (shutdown or reload), so learning carries over.
async fn save_drift_profiles(
    trackers: Vec<Arc<crate::drift::DriftTracker>>,
    mut stop: watch::Receiver<bool>,
) {
    let save_all = |trackers: Vec<Arc<crate::drift::DriftTracker>>| async move {
        let _ = tokio::task::spawn_blocking(move || {
            for t in &trackers {
                if let Err(e) = t.save() {
                    tracing::error!(path = %t.path().map(|p| p.display().to_string()).unwrap_or_default(), error = %e, "saving a drift profile failed");
                }
            }
        })
        .await;
    };
    let mut every = tokio::time::interval(crate::drift::SAVE_EVERY);
    every.tick().await;
    loop {
        let stopped = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            _ = every.tick() => {}
            _ = stopped => break,
        }
        save_all(trackers.clone()).await;
    }
    save_all(trackers).await;
}

/// This machine's name, part of each destination worker's identity: stable across restarts
/// (so a restarted worker resumes its own in-flight delivery at once) and distinct between
/// machines sharing one database.
pub(crate) fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

enum Pending {
    Mllp(
        TcpListener,
        MllpSourceOptions,
        Arc<Channel>,
        Arc<SourceStats>,
    ),
    Directory(DirectoryOptions, Arc<Channel>, Arc<SourceStats>),
    Worker(Box<Worker>),
}

/// One channel and its destination workers (not yet running).
fn build_channel(
    cfg: &ChannelConfig,
    store: &Arc<dyn Store>,
    subscription_wake: &Arc<Notify>,
) -> Result<(Channel, Vec<Worker>), StartError> {
    let wake = Arc::new(Notify::new());
    let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One conversion for the ingest path and the destinations, replaceable while they run.
    let conversion = SharedConversion::new(cfg.fhir.clone());
    let handoff = Arc::new(destinations::handoff::Handoff::default());
    let mut workers = Vec::new();
    let mut queues = Vec::new();
    let mut handles = Vec::new();
    for (queue_slot, dest) in cfg.destinations.iter().enumerate() {
        let queue = queue_name(&cfg.name, &dest.name);
        let stats = Arc::new(crate::monitor::DestinationStats::default());
        handles.push(crate::monitor::DestinationHandle {
            name: dest.name.clone(),
            queue: queue.clone(),
            stats: stats.clone(),
        });
        let retry = dest.retry;
        let parallel = dest.parallel.max(1);
        for i in 0..parallel {
            let mut sender = build_sender(&cfg.name, &dest.name, &dest.kind, store)?;
            if let Sender::FhirStore(f) = &mut sender {
                f.wake = Some(subscription_wake.clone());
            }
            if let (Sender::Mllp(m), Some(_)) = (&mut sender, &cfg.write_back) {
                m.application_error_is_final = true;
            }
            let fhir = match dest.format {
                PayloadFormat::Hl7 => None,
                PayloadFormat::Fhir => {
                    if let Sender::Http(h) = &mut sender {
                        h.content_type = destinations::http::FHIR_MEDIA_TYPE;
                    }
                    // Without `[channel.fhir]` the plain reading (no vendor profile) applies.
                    Some(match &cfg.fhir {
                        Some(_) => conversion.clone(),
                        None => {
                            SharedConversion::new(Some(Arc::new(crate::fhir::FhirConversion {
                                source: Default::default(),
                                profiles: Vec::new(),
                            })))
                        }
                    })
                }
            };
            workers.push(Worker {
                fhir,
                queue: queue.clone(),
                worker_id: format!("{queue}#{i}@{}", node_name()),
                sender,
                retry,
                mode: if parallel > 1 {
                    ClaimMode::Parallel
                } else {
                    ClaimMode::Fifo
                },
                store: store.clone(),
                wake: wake.clone(),
                paused: paused.clone(),
                stats: stats.clone(),
                handoff: handoff.clone(),
                queue_slot,
            });
        }
        queues.push(queue);
    }
    let mut channel = Channel::new(
        cfg.name.clone(),
        cfg.accept.clone(),
        cfg.filters.clone(),
        cfg.transforms.clone(),
        queues,
        store.clone(),
        wake,
    );
    channel.source_kind = cfg.source.kind();
    channel.paused = paused;
    channel.destinations = handles;
    channel.fhir = conversion;
    channel.write_back = cfg.write_back.clone();
    channel.handoff = handoff;
    Ok((channel, workers))
}

fn build_sender(
    channel: &str,
    destination: &str,
    kind: &DestinationKind,
    store: &Arc<dyn Store>,
) -> Result<Sender, StartError> {
    let fail = |message: String| StartError::Destination {
        channel: channel.to_string(),
        destination: destination.to_string(),
        message,
    };
    Ok(match kind {
        DestinationKind::Mllp(d) => {
            let tls = match &d.tls {
                None => None,
                Some(t) => {
                    let client_auth = t
                        .client_auth
                        .as_ref()
                        .map(|(c, k)| (c.as_path(), k.as_path()));
                    Some((
                        tls::client_config(&t.ca, client_auth).map_err(|e| fail(e.to_string()))?,
                        t.server_name.clone(),
                    ))
                }
            };
            let (config, name) = match tls {
                Some((c, n)) => (Some(c), Some(n)),
                None => (None, None),
            };
            let client = MllpClient::new(
                d.connect.clone(),
                config,
                name.as_deref(),
                d.connect_timeout,
            )
            .map_err(|e| fail(e.to_string()))?;
            Sender::Mllp(destinations::mllp::MllpSender {
                client,
                ack_timeout: d.ack_timeout,
                connect_timeout: d.connect_timeout,
                application_error_is_final: false,
                wait_for_ack: d.wait_for_ack,
            })
        }
        DestinationKind::Http(d) => {
            // reqwest is built without a TLS provider of its own and panics when building a
            // client while no process default is installed; the binary installs ring at
            // start, but the engine must not depend on that (tests and embedders start it
            // directly). Installing fails harmlessly when a default is already set.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .timeout(d.timeout)
                .build()
                .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
            Sender::Http(destinations::http::HttpSender {
                client,
                url: d.url.clone(),
                headers: d.headers.clone(),
                timeout: d.timeout,
                content_type: destinations::http::HL7_MEDIA_TYPE,
            })
        }
        DestinationKind::File(d) => Sender::File(destinations::file::FileSender {
            dir: d.dir.clone(),
            filename: d.filename.clone(),
        }),
        DestinationKind::FhirStore => {
            Sender::FhirStore(destinations::fhir_store::FhirStoreSender {
                store: store.clone(),
                wake: None,
            })
        }
    })
}
