//! Prometheus metrics (`GET /metrics`, text format).
//!
//! One registry per process (what Prometheus scrapes is an instance).
//! Counters are this instance's since it started; the backlog and breaker
//! gauges are read from the store at each scrape, so they are the same on
//! every instance. No label ever holds a phone number, a name or message
//! text: labels are fixed words, Meta error codes, flow and step ids (from
//! the business's flow files), business phone_number_ids and business
//! ids. The per-message metrics (messages in and out, sends, retries,
//! dead letters, opt-outs and opt-ins, exports, erasures, flow steps)
//! carry the `business` label: the id of the business the message is
//! for (`default` for a deployment without `[[businesses]]`).

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::BusinessId;
use crate::domain::consent::ConsentChange;

use crate::store::{Lane, Store, StoreError, stats};

/// Every metric whatsify exports.
pub struct Metrics {
    registry: Registry,
    /// `POST /webhook` by outcome (`ok`, `quarantined`, `signature_mismatch`,
    /// `too_large`, `store_unavailable`, …).
    pub webhook_requests: IntCounterVec,
    /// From the request's start to its answer.
    pub webhook_ack_seconds: Histogram,
    /// Outbound messages by business, result (`accepted`, `failed`,
    /// `dead`, `expired`, `outside_window`, `no_consent`, `cancelled`) and
    /// Meta error code (empty when none).
    pub sends: IntCounterVec,
    /// Send attempts that will be tried again, by business and class
    /// (`transient`, `throttled`, `pair_limit`).
    pub retries: IntCounterVec,
    /// Messages given up after every attempt (moved to the dead letters),
    /// by business.
    pub dead_letters: IntCounterVec,
    /// Integration events posted to a CRM or helpdesk receiver, by its
    /// configured name and result (`delivered`, `retry`, `dead`).
    pub integration_deliveries: IntCounterVec,
    /// Flow steps run, by business, flow and step id.
    pub flow_steps: IntCounterVec,
    /// Messages in and out, opt-outs, opt-ins, exports, erasures, by
    /// business.
    pub events: IntCounterVec,
    /// Contacts with pending entries, by lane (`inbox`, `outbox`), and how
    /// long the oldest has waited.
    pub pending: IntGaugeVec,
    pub oldest_seconds: IntGaugeVec,
    /// 1 while a business number's sending is paused (Meta refused the
    /// token), by phone_number_id.
    pub breaker_open: IntGaugeVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new_custom(Some("whatsify".into()), None)
            .unwrap_or_else(|e| panic!("metrics registry: {e}"));
        let ack = Histogram::with_opts(
            HistogramOpts::new(
                "webhook_ack_seconds",
                "Time from a webhook request's start to its answer",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .unwrap_or_else(|e| panic!("metric webhook_ack_seconds: {e}"));
        r.register(Box::new(ack.clone()))
            .unwrap_or_else(|e| panic!("metric webhook_ack_seconds: {e}"));
        Metrics {
            webhook_requests: counter_vec(
                &r,
                "webhook_requests_total",
                "Webhook deliveries by outcome",
                &["outcome"],
            ),
            webhook_ack_seconds: ack,
            sends: counter_vec(
                &r,
                "sends_total",
                "Outbound messages by business, result and Meta error code",
                &["business", "result", "code"],
            ),
            retries: counter_vec(
                &r,
                "send_retries_total",
                "Send attempts to be tried again, by business and class",
                &["business", "class"],
            ),
            dead_letters: counter_vec(
                &r,
                "dead_letters_total",
                "Messages given up after every attempt failed, by business",
                &["business"],
            ),
            integration_deliveries: counter_vec(
                &r,
                "integration_deliveries_total",
                "Integration events posted to receivers, by receiver and result",
                &["receiver", "result"],
            ),
            flow_steps: counter_vec(
                &r,
                "flow_steps_total",
                "Flow steps run, by business",
                &["business", "flow", "step"],
            ),
            events: counter_vec(
                &r,
                "events_total",
                "Messages in and out, opt-outs, opt-ins, exports and erasures, by business",
                &["business", "event"],
            ),
            pending: gauge_vec(
                &r,
                "pending_contacts",
                "Contacts with pending entries, by lane (read from the store)",
                &["lane"],
            ),
            oldest_seconds: gauge_vec(
                &r,
                "oldest_pending_seconds",
                "How long the oldest pending contact has waited, by lane (read from the store)",
                &["lane"],
            ),
            breaker_open: gauge_vec(
                &r,
                "breaker_open",
                "1 while a business number's sending is paused (read from the store)",
                &["phone_number_id"],
            ),
            registry: r,
        }
    }

    /// Counts what a store write counted in the anonymous statistics
    /// (`counts`, and the opt-ins and opt-outs of `consent`, each named in
    /// its business's statistics): flow steps by flow and step, the rest
    /// as events, each under its business.
    pub fn counted<'a>(
        &self,
        counts: &[(String, u64)],
        consent: impl Iterator<Item = &'a ConsentChange>,
    ) {
        for (counter, n) in stats::with_consent(counts, consent) {
            let (business, name) = stats::unscoped(&counter);
            let b = business.as_str();
            match name.strip_prefix("step:").and_then(|s| s.split_once('/')) {
                Some((flow, step)) => self
                    .flow_steps
                    .with_label_values(&[b, flow, step])
                    .inc_by(n),
                None => self.events.with_label_values(&[b, name]).inc_by(n),
            }
        }
    }

    /// Counts one event (`messages_in`, `erasures`, …) of `business`.
    pub fn event(&self, business: &BusinessId, name: &str) {
        self.events
            .with_label_values(&[business.as_str(), name])
            .inc();
    }

    /// Reads the backlog and the breakers from the store, then renders
    /// every metric in Prometheus text format.
    pub async fn render(&self, store: &dyn Store, now_ms: u64) -> Result<String, StoreError> {
        for lane in [Lane::Inbox, Lane::Outbox] {
            let (n, oldest) = store.backlog(lane).await?;
            self.pending
                .with_label_values(&[lane.name()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            let age = oldest.map_or(0, |t| now_ms.saturating_sub(t) / 1000);
            self.oldest_seconds
                .with_label_values(&[lane.name()])
                .set(i64::try_from(age).unwrap_or(i64::MAX));
        }
        self.breaker_open.reset();
        for (number, _) in store.breakers().await? {
            self.breaker_open
                .with_label_values(&[number.as_str()])
                .set(1);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| StoreError::Corrupt(format!("metrics: {e}")))?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// This process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}
