//! The checks that need no server: the layer rules, Meta's payload
//! fixtures, the flow validator and schema, the shipped flows and the
//! opt-out classifier. One test binary, so CI links one instead of six.

mod architecture;
mod fixtures;
mod flow_schema;
mod flow_validator;
mod privacy_corpus;
mod shipped_flows;
