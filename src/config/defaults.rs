//! The compiled defaults, in the TOML form an operator writes.

/// The compiled defaults, in the same TOML form an operator writes.
pub const DEFAULTS_TOML: &str = r#"
[server]
bind = "127.0.0.1:8080"
max_body_bytes = 4194304
body_timeout = "30s"
ops_bind = ""

[meta]
app_secret = ""
app_secret_previous = ""
verify_token = ""
access_token = ""
graph_api_base = "https://graph.facebook.com/v23.0"
phone_number_id = ""

[store]
backend = "embedded"
path = "data"
redis_url = "redis://127.0.0.1:6379/0"
redis_ca_file = ""
key_prefix = "whatsify:"

[flows]
dir = "flows"
session_ttl = "24h"

[outbox]
messages_per_second = 80
max_attempts = 8
max_age = "4h"
retry_base = "1s"
retry_cap = "15m"
probe_interval = "60s"
pair_interval = "6s"
pair_burst = 3
mark_read = true
workers = 4
senders = 32
shutdown_grace = "25s"
unconfirmed_wait = "60s"
request_timeout = "30s"

[privacy]
master_key = ""
master_key_previous = ""
pseudonym_key = ""
policy_version = "1"
policy_notice = "We've updated our privacy policy. Reply PRIVACY to see how we use your data and what you can do about it."
privacy_notice = ""
policy_url = ""
retention_days = 365
erase_confirm_minutes = 10
request_deadline_days = 30

[business]
name = ""
contact = ""

[admin]
token = ""

[log]
format = "text"
"#;
