//! JSON kept exactly as sent, with its typed view parsed on demand.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// JSON exactly as Meta sent it, with its typed view parsed on demand.
///
/// Items are kept raw so that the inbox stores everything Meta sent, keys
/// and subtypes we do not model included; `Debug` shows only the size.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct Raw<T> {
    json: Box<RawValue>,
    #[serde(skip)]
    typed: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Serialize> Raw<T> {
    /// The typed view.
    pub fn parse(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.json.get())
    }

    /// Wraps a value we built ourselves.
    pub fn from_typed(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Raw {
            json: serde_json::value::to_raw_value(value)?,
            typed: PhantomData,
        })
    }
}

impl<T> Raw<T> {
    /// The JSON text as sent.
    pub fn get(&self) -> &str {
        self.json.get()
    }

    /// The JSON, untyped.
    pub fn into_json(self) -> Box<RawValue> {
        self.json
    }
}

impl<T> fmt::Debug for Raw<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Raw({} bytes)", self.json.get().len())
    }
}
