//! Builds the application the binary runs and the tests start: settings in,
//! a bound HTTP server out.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::dev::{Server, Service};
use actix_web::{App, HttpServer, web};
use secrecy::SecretString;
use tracing::Instrument;

use crate::config::Settings;
use crate::privacy::crypto::Sealer;
use crate::privacy::pseudonym::Pseudonymizer;
use crate::store::{self, Store};
use crate::webhook::signature::SignatureVerifier;
use crate::{health, webhook};

/// What every request handler can reach.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub verifier: SignatureVerifier,
    pub verify_token: SecretString,
    pub sealer: Sealer,
    pub pseudonymizer: Pseudonymizer,
    pub max_body_bytes: usize,
    pub body_timeout: std::time::Duration,
    /// The flows in force (set by [`Application::build`]).
    pub flows: Option<crate::flow::SharedFlows>,
}

impl AppState {
    pub fn new(settings: &Settings, store: Arc<dyn Store>) -> Self {
        AppState {
            store,
            verifier: SignatureVerifier::new(
                settings.meta.app_secret.clone(),
                settings.meta.app_secret_previous.clone(),
            ),
            verify_token: settings.meta.verify_token.clone(),
            sealer: Sealer::new(&settings.privacy.master_key),
            pseudonymizer: Pseudonymizer::new(
                &settings.privacy.master_key,
                settings.privacy.pseudonym_key.as_ref(),
            ),
            max_body_bytes: settings.server.max_body_bytes,
            body_timeout: settings.server.body_timeout,
            flows: None,
        }
    }
}

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
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A built, bound application.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Opens the store the settings choose and binds `server.bind`.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        Self::build_with(settings, WORKERS).await
    }

    /// As [`Application::build`] with `workers` workers and senders (0:
    /// ingress only, for tests that look at the inbox itself).
    pub async fn build_with(settings: &Settings, workers: usize) -> Result<Self, StartError> {
        let store = store::open(&settings.store).await?;
        Self::build_with_store(settings, store, workers)
    }

    /// As [`Application::build`], with a store already opened. Loads the
    /// flows (refusing to start when they are invalid), binds the
    /// listener, and starts the workers and senders on the current runtime.
    pub fn build_with_store(
        settings: &Settings,
        store: Arc<dyn Store>,
        workers: usize,
    ) -> Result<Self, StartError> {
        let flows =
            crate::flow::load_dir(&settings.flows.dir).map_err(|errors| StartError::Flows {
                dir: settings.flows.dir.display().to_string(),
                errors: errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            })?;
        let flows = crate::flow::SharedFlows::new(flows);
        tokio::spawn(crate::reload::watch(
            settings.flows.dir.clone(),
            flows.clone(),
        ));
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        for _ in 0..workers {
            let worker = crate::worker::Worker {
                store: store.clone(),
                sealer: Sealer::new(&settings.privacy.master_key),
                flows: flows.clone(),
                session_ttl: settings.flows.session_ttl,
                owner: uuid::Uuid::new_v4().to_string(),
            };
            tokio::spawn(worker.run());
            let sender = crate::sender::Sender {
                store: store.clone(),
                sealer: Sealer::new(&settings.privacy.master_key),
                client: client.clone(),
                graph_api_base: settings.meta.graph_api_base.clone(),
                access_token: settings.meta.access_token.clone(),
                max_age: settings.outbox.max_age,
                owner: uuid::Uuid::new_v4().to_string(),
            };
            tokio::spawn(sender.run());
        }
        let addr = settings.server.bind.clone();
        let listener = TcpListener::bind(&addr).map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?
            .port();
        let mut state = AppState::new(settings, store);
        state.flows = Some(flows);
        let state = web::Data::new(state);
        let server = run(listener, state.clone())?;
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

/// Workers and senders per instance (each takes one contact at a time).
const WORKERS: usize = 4;

fn run(listener: TcpListener, state: web::Data<AppState>) -> Result<Server, StartError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let server = HttpServer::new(move || {
        App::new()
            // A span per request: method, route pattern (never the raw path,
            // which may hold a contact id, nor the query string, which holds
            // the verify token) and a request id.
            .wrap_fn(|req, srv| {
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
                    Ok(res)
                }
                .instrument(span)
            })
            .app_data(state.clone())
            .route("/webhook", web::get().to(webhook::verify))
            .route("/webhook", web::post().to(webhook::receive))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
    })
    .listen(listener)
    .map_err(|source| StartError::Bind { addr, source })?
    .run();
    Ok(server)
}
