//! What the HTTP surfaces share: errors mapped to answers in one place
//! ([`error`]), the authorised caller and contact as extractors
//! ([`auth`]), console sessions ([`session`]), request bodies read only
//! after authorisation ([`body`]), and the failed-credential throttle's
//! HTTP side ([`throttle`]).

pub mod access;
pub mod auth;
pub mod body;
pub mod error;
pub mod session;
pub mod throttle;
