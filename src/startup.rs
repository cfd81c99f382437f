//! Builds the application the binary runs and the tests start: settings in,
//! a bound HTTP server out.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::dev::{Server, Service};
use actix_web::{App, HttpServer, web};
use tracing::Instrument;

use crate::config::Settings;
use crate::privacy::keys::{Crypto, KeyError};
use crate::state::AppState;
use crate::store::{self, Store};
use crate::{health, webhook};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("the flows in {dir} are invalid:\n{errors}")]
    Flows { dir: String, errors: String },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A built, bound application.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    clock: crate::clock::Clock,
    /// The workers and senders, to wait for on shutdown.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    grace: std::time::Duration,
    /// The listener on `server.ops_bind`, when there is one.
    ops: Option<(u16, actix_web::dev::ServerHandle)>,
}

impl Application {
    /// Opens the store the settings choose and binds `server.bind`.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let store = store::open(&settings.store).await?;
        Self::check_keys(settings, store.as_ref()).await?;
        Self::build_with_pools(
            settings,
            store,
            settings.outbox.workers,
            settings.outbox.senders,
        )
    }

    /// As [`Application::build`] with `workers` workers and as many
    /// senders (0: ingress only, for tests that look at the inbox itself).
    pub async fn build_with(settings: &Settings, workers: usize) -> Result<Self, StartError> {
        let store = store::open(&settings.store).await?;
        Self::check_keys(settings, store.as_ref()).await?;
        Self::build_with_store(settings, store, workers)
    }

    /// Loads the keys (making the embedded key file for a new store) and
    /// checks the store was written under the same pseudonym key.
    pub async fn check_keys(settings: &Settings, store: &dyn Store) -> Result<(), StartError> {
        let secrets = crate::privacy::keys::load(settings)?;
        Ok(crate::privacy::keys::check_store(store, &secrets).await?)
    }

    /// As [`Application::build`], with a store already opened. Loads the
    /// flows (refusing to start when they are invalid), binds the
    /// listener, and starts the workers and senders on the current runtime.
    pub fn build_with_store(
        settings: &Settings,
        store: Arc<dyn Store>,
        workers: usize,
    ) -> Result<Self, StartError> {
        Self::build_with_pools(settings, store, workers, workers)
    }

    /// As [`Application::build`], with a store already opened and the
    /// number of workers and senders given.
    pub fn build_with_pools(
        settings: &Settings,
        store: Arc<dyn Store>,
        workers: usize,
        senders: usize,
    ) -> Result<Self, StartError> {
        use crate::outbox::graph::{Graph, SharedToken, Tokens};
        let (flows, flow_sets) = all_flows(settings)?;
        let secrets = crate::privacy::keys::load(settings)?;
        let crypto = Crypto::new(&secrets);
        let token = SharedToken::new(Tokens::of(settings));
        let breakers = crate::outbox::sender::breakers::Breakers::default();
        let wake = crate::shutdown::Wakeups::default();
        // What SIGHUP replaces: shared by handlers, senders and dispatcher.
        let mut state = AppState::new(settings, store.clone(), &crypto);
        let outbox = crate::config::Live::new(settings.outbox.clone());
        tokio::spawn(crate::reload::watch(
            settings.flows.dir.clone(),
            flows.clone(),
            Some(crate::reload::TokenReload {
                config_file: settings.config_file.clone(),
                token: token.clone(),
                store: Arc::downgrade(&store),
                breakers: breakers.clone(),
                wake: wake.clone(),
                keyring: crypto.keyring.clone(),
                pepper_id: crate::crypto::keyring::key_id(&secrets.pseudonym_key),
                verifier: state.verifier.clone(),
                verify_token: state.verify_token.clone(),
                admin_token: state.admin_token.clone(),
                campaign_limits: state.campaign_limits.clone(),
                outbox: outbox.clone(),
            }),
        ));
        let client = Graph::client(settings.outbox.request_timeout).map_err(StartError::Client)?;
        let graph = Graph::new(client, &settings.meta.graph_api_base, token.clone());
        let clock = crate::clock::Clock::system();
        let shutdown = crate::shutdown::Shutdown::new();
        let hooks = state.hooks.clone();
        let mut tasks = Vec::new();
        // Keeps the workers' and senders' short leases alive while they
        // work (see `store::lease`).
        let leases = crate::store::lease::Keeper::default();
        tokio::spawn(leases.clone().run(Arc::downgrade(&store)));
        tasks.push(tokio::spawn(crate::privacy::retention::run(
            Arc::downgrade(&store),
            std::time::Duration::from_secs(
                u64::from(settings.privacy.retention_days.max(1)) * 86_400,
            ),
            crypto.keyring.clone(),
            shutdown.clone(),
        )));
        let shared = Shared {
            store: &store,
            crypto: &crypto,
            flows: &flow_sets,
            clock: &clock,
            wake: &wake,
            leases: &leases,
            hooks: &hooks,
        };
        for _ in 0..workers {
            let worker = inbox_worker(settings, &shared);
            tasks.push(tokio::spawn(worker.run(shutdown.clone())));
        }
        for _ in 0..senders {
            let sender = crate::outbox::sender::Sender {
                store: store.clone(),
                keyring: crypto.keyring.clone(),
                pseudonymizer: crypto.pseudonymizer.clone(),
                graph: graph.clone(),
                settings: outbox.clone(),
                breakers: breakers.clone(),
                clock: clock.clone(),
                stop: shutdown.clone(),
                wake: wake.clone(),
                audit: crypto.audit.clone(),
                retention_days: settings.privacy.retention_days,
                policy_version: settings.privacy.policy_version.clone(),
                businesses: state.businesses.clone(),
                owner: uuid::Uuid::new_v4().to_string(),
                leases: leases.clone(),
                stranded: Default::default(),
                hooks: hooks.clone(),
            };
            tasks.push(tokio::spawn(sender.run(shutdown.clone())));
        }
        if senders > 0 {
            let dispatcher = campaign_dispatcher(settings, &shared, outbox.clone());
            tasks.push(tokio::spawn(dispatcher.run(shutdown.clone())));
        }
        tokio::spawn(crate::offboard::on_start(
            store.clone(),
            (crypto.keyring.clone(), crypto.audit.clone()),
            clock.clone(),
            hooks.clone(),
            state.removed.clone(),
            shutdown.clone(),
        ));
        let (listener, port) = bind(&settings.server.bind)?;
        state.flows = Some(flows);
        state.flow_sets = Some(flow_sets);
        state.shutdown = shutdown;
        state.wake = wake;
        state.clock = clock.clone();
        let state = web::Data::new(state);
        let server = run(listener, state.clone())?;
        let ops = ops_listener(&settings.server.ops_bind, &state)?;
        Ok(Application {
            port,
            server,
            state,
            clock,
            tasks,
            grace: settings.outbox.shutdown_grace,
            ops,
        })
    }

    /// The clock the workers and senders use (tests move it forward).
    pub fn clock(&self) -> crate::clock::Clock {
        self.clock.clone()
    }

    /// Stops gracefully: the webhook answers 503, workers and senders
    /// finish what they hold (at most `outbox.shutdown_grace`), what is
    /// queued stays queued, then the HTTP server stops.
    pub fn shutdown_handle(&mut self) -> impl std::future::Future<Output = ()> + use<> {
        let stop = self.state.shutdown.clone();
        let tasks = std::mem::take(&mut self.tasks);
        let grace = self.grace;
        let server = self.server.handle();
        let ops = self.ops.as_ref().map(|(_, h)| h.clone());
        async move {
            stop.trigger();
            tracing::info!("shutting down: webhooks refused (503), finishing work in hand");
            let all = futures_util::future::join_all(tasks);
            if tokio::time::timeout(grace, all).await.is_err() {
                tracing::warn!("shutdown grace over; unfinished work stays queued");
            }
            server.stop(true).await;
            if let Some(ops) = ops {
                ops.stop(true).await;
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `server.ops_bind` listener, when there is one.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops.as_ref().map(|(p, _)| *p)
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the server is stopped through its handle (tests).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully (see
    /// [`Application::shutdown_handle`]).
    pub async fn run_until_signalled(mut self) -> std::io::Result<()> {
        let shutdown = self.shutdown_handle();
        let signal = stop_signal();
        tokio::spawn(async move {
            signal.await;
            shutdown.await;
        });
        self.server.await
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

/// `Strict-Transport-Security` with `console.secure_cookie` on: browsers
/// come back over https only, for a year.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this
/// is called, so a signal that comes early is not lost.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        match (term, int) {
            (Some(mut t), Some(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = i.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn run(listener: TcpListener, state: web::Data<AppState>) -> Result<Server, StartError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let hsts = state.secure_cookie;
    let server = HttpServer::new(move || {
        App::new()
            // A span per request: method, route pattern (never the raw path,
            // which may hold a contact id, nor the query string, which holds
            // the verify token) and a request id.
            .wrap_fn(move |req, srv| {
                let id = format!(
                    "{:x}-{}",
                    std::process::id(),
                    REQUEST_SEQ.fetch_add(1, Ordering::Relaxed)
                );
                let route = req
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned());
                let span = tracing::info_span!(
                    "request",
                    method = %req.method(),
                    route = %route,
                    request_id = %id,
                );
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    tracing::debug!(status = res.status().as_u16(), "response");
                    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
                        res.headers_mut().insert(
                            actix_web::http::header::HeaderName::from_static("x-request-id"),
                            v,
                        );
                    }
                    if hsts {
                        res.headers_mut().insert(
                            actix_web::http::header::STRICT_TRANSPORT_SECURITY,
                            actix_web::http::header::HeaderValue::from_static(HSTS),
                        );
                    }
                    Ok(res)
                }
                .instrument(span)
            })
            .app_data(state.clone())
            .route("/webhook", web::get().to(webhook::verify))
            .route("/webhook", web::post().to(webhook::receive))
            .route("/webhook/{business}", web::get().to(webhook::verify))
            .route("/webhook/{business}", web::post().to(webhook::receive))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .route("/metrics", web::get().to(health::metrics))
            .configure(crate::console::routes)
            .route("/admin/businesses", web::get().to(crate::admin::businesses))
            .route(
                "/admin/businesses/{business}",
                web::delete().to(crate::admin::offboard::remove),
            )
            .route(
                "/admin/businesses/{business}/removal",
                web::get().to(crate::admin::offboard::status),
            )
            .service(web::scope("/admin/contacts").configure(crate::admin::contact_routes))
            .service(
                web::scope("/admin/businesses/{business}/contacts")
                    .configure(crate::admin::contact_routes),
            )
            .configure(crate::admin::business_routes)
            .configure(crate::admin::operators::routes)
            .configure(crate::admin::inbox::routes)
            .configure(crate::admin::desk::routes)
    })
    .disable_signals()
    .listen(listener)
    .map_err(|source| StartError::Bind { addr, source })?
    .run();
    Ok(server)
}

/// The flow files of `dir`, or every error in them.
/// The campaign dispatcher.
fn campaign_dispatcher(
    settings: &Settings,
    shared: &Shared,
    outbox: crate::config::Live<crate::config::OutboxSettings>,
) -> crate::campaign::dispatch::Dispatcher {
    crate::campaign::dispatch::Dispatcher {
        store: shared.store.clone(),
        keyring: shared.crypto.keyring.clone(),
        clock: shared.clock.clone(),
        retention_days: settings.privacy.retention_days,
        wake: shared.wake.clone(),
        owner: uuid::Uuid::new_v4().to_string(),
        outbox,
        checked: Default::default(),
    }
}

fn load_flows(dir: &std::path::Path) -> Result<crate::flow::Flows, StartError> {
    crate::flow::load_dir(dir).map_err(|errors| StartError::Flows {
        dir: dir.display().to_string(),
        errors: errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// `flows.dir`'s flows, and each business's: `flows.dir`'s set for a
/// business that names that folder, else its own folder's (loaded once
/// per folder, refusing to start when invalid, and reloaded as
/// `flows.dir` is).
fn all_flows(
    settings: &Settings,
) -> Result<(crate::flow::SharedFlows, crate::flow::FlowSets), StartError> {
    let default = crate::flow::SharedFlows::new(load_flows(&settings.flows.dir)?);
    let mut by_dir = std::collections::HashMap::new();
    by_dir.insert(settings.flows.dir.clone(), default.clone());
    let mut by_number = std::collections::HashMap::new();
    for b in &settings.businesses {
        let set = match by_dir.get(&b.flows_dir) {
            Some(set) => set.clone(),
            None if b.phone_number_ids.is_empty() => continue,
            None => {
                let set = crate::flow::SharedFlows::new(load_flows(&b.flows_dir)?);
                tokio::spawn(crate::reload::watch(b.flows_dir.clone(), set.clone(), None));
                by_dir.insert(b.flows_dir.clone(), set.clone());
                set
            }
        };
        for number in &b.phone_number_ids {
            by_number.insert(number.clone(), set.clone());
        }
    }
    let sets = crate::flow::FlowSets::new(default.clone(), by_number);
    Ok((default, sets))
}

/// Binds `addr`; answers the listener and its port.
fn bind(addr: &str) -> Result<(TcpListener, u16), StartError> {
    let failed = |source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(failed)?;
    let port = listener.local_addr().map_err(failed)?.port();
    Ok((listener, port))
}

/// Starts the `server.ops_bind` listener when one is set: its port and
/// handle.
fn ops_listener(
    addr: &str,
    state: &web::Data<AppState>,
) -> Result<Option<(u16, actix_web::dev::ServerHandle)>, StartError> {
    if addr.is_empty() {
        return Ok(None);
    }
    let (port, server) =
        crate::health::ops_server(addr, state.clone()).map_err(|source| StartError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let handle = server.handle();
    tokio::spawn(server);
    Ok(Some((port, handle)))
}

/// What the workers share with the rest of the application.
struct Shared<'a> {
    store: &'a Arc<dyn Store>,
    crypto: &'a Crypto,
    flows: &'a crate::flow::FlowSets,
    clock: &'a crate::clock::Clock,
    wake: &'a crate::shutdown::Wakeups,
    leases: &'a crate::store::lease::Keeper,
    hooks: &'a crate::integrations::Hooks,
}

/// One inbox worker, as the settings say.
fn inbox_worker(settings: &Settings, shared: &Shared) -> crate::inbox::Worker {
    crate::inbox::Worker {
        store: shared.store.clone(),
        keyring: shared.crypto.keyring.clone(),
        pseudonymizer: shared.crypto.pseudonymizer.clone(),
        flows: shared.flows.clone(),
        session_ttl: settings.flows.session_ttl,
        mark_read: settings.outbox.mark_read,
        clock: shared.clock.clone(),
        wake: shared.wake.clone(),
        policies: crate::inbox::policy::Policies::of(settings),
        audit: shared.crypto.audit.clone(),
        erase_confirm: std::time::Duration::from_secs(
            u64::from(settings.privacy.erase_confirm_minutes.max(1)) * 60,
        ),
        profile_ttl: std::time::Duration::from_secs(
            u64::from(settings.privacy.retention_days.max(1)) * 24 * 3600,
        ),
        owner: uuid::Uuid::new_v4().to_string(),
        leases: shared.leases.clone(),
        stranded: Default::default(),
        hooks: shared.hooks.clone(),
    }
}
