//! Every record of the store as text, table by table: what a check reads
//! to prove that nothing of a removed business is left (see
//! `tests/api/offboarding.rs`). Sealed bytes read as what they are:
//! ciphertext; keys and plain values read as themselves.

use super::*;

/// A stored key or value as text.
trait Plain {
    fn plain(&self) -> String;
}

impl Plain for &str {
    fn plain(&self) -> String {
        (*self).to_owned()
    }
}

impl Plain for &[u8] {
    fn plain(&self) -> String {
        String::from_utf8_lossy(self).into_owned()
    }
}

impl Plain for u64 {
    fn plain(&self) -> String {
        self.to_string()
    }
}

impl Plain for i64 {
    fn plain(&self) -> String {
        self.to_string()
    }
}

impl Plain for () {
    fn plain(&self) -> String {
        String::new()
    }
}

impl<A: Plain, B: Plain> Plain for (A, B) {
    fn plain(&self) -> String {
        format!("{} {}", self.0.plain(), self.1.plain())
    }
}

impl<A: Plain, B: Plain, C: Plain> Plain for (A, B, C) {
    fn plain(&self) -> String {
        format!("{} {} {}", self.0.plain(), self.1.plain(), self.2.plain())
    }
}

macro_rules! dump {
    ($txn:expr, $out:expr, $($table:expr),+ $(,)?) => {
        $(
            let t = $txn.open_table($table).map_err(corrupt)?;
            for item in t.iter().map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                $out.push((
                    stringify!($table).to_owned(),
                    format!("{} => {}", k.value().plain(), v.value().plain()),
                ));
            }
        )+
    };
}

impl EmbeddedStore {
    /// Every record, as (table, "key => value").
    pub async fn every_record(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let mut out = Vec::new();
            dump!(
                txn,
                out,
                SEEN,
                INBOX,
                SEEN_EXPIRY,
                SEQ,
                READY,
                OUTBOX_READY,
                SESSIONS,
                SESSION_EXPIRY,
                TIMERS,
                TIMER_OF,
                OUTBOX_HEAD,
                OUTBOX_DUE,
                OUTBOX_DUE_OF,
                DELIVERIES,
                WAMIDS,
                DEAD,
                DEAD_INDEX,
                WINDOWS,
                CONSENT,
                PROFILES,
                AUDIT,
                HISTORY,
                SUPPRESSED,
                HISTORY_AGE,
                PINS,
                STATS,
                DATA_KEYS,
                REWRAPPED,
                CAMPAIGNS,
                CAMPAIGN_INDEX,
                CAMPAIGN_AUDIENCE,
                CAMPAIGN_COUNTS,
                CAMPAIGN_MARKS,
                LAST_CAMPAIGN,
                OWNERS,
                REMOVALS,
                audience::CAMPAIGN_MEMBERS,
                audit::AUDIT_HEAD,
                audit::OPEN,
                audit::CLOSED,
                links::LINKS,
                links::ALIASES,
                holds::HELD,
            );
            Ok(out)
        })
        .await
    }
}
