//! Contact links in the embedded store (see [`crate::store::links`]):
//! `links` maps an alias key to its canonical contact, `aliases`
//! indexes `(canonical, alias)` for the canonical contact's erasure.
//! Keyed hashes only; kept until the contact is erased.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{EmbeddedStore, corrupt, read_data_key};
use crate::domain::ContactKey;
use crate::store::{Resolved, StoreError};

/// alias contact key → canonical contact key.
pub(super) const LINKS: TableDefinition<&str, &str> = TableDefinition::new("links");
/// (canonical contact key, alias contact key) → ().
pub(super) const ALIASES: TableDefinition<(&str, &str), ()> = TableDefinition::new("aliases");

/// Creates the tables (at open).
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(LINKS).map_err(corrupt)?;
    txn.open_table(ALIASES).map_err(corrupt)?;
    Ok(())
}

fn parse(s: &str) -> Result<ContactKey, StoreError> {
    ContactKey::parse(s).ok_or_else(|| StoreError::Corrupt("contact link".into()))
}

impl EmbeddedStore {
    pub(super) async fn resolve_links(
        &self,
        keys: &[ContactKey],
    ) -> Result<Vec<Resolved>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let links = txn.open_table(LINKS).map_err(corrupt)?;
            keys.iter()
                .map(|k| {
                    let link = match links.get(k.as_str()).map_err(corrupt)? {
                        Some(v) => Some(parse(v.value())?),
                        None => None,
                    };
                    let known = read_data_key(&txn, k)?.is_some();
                    Ok(Resolved { link, known })
                })
                .collect()
        })
        .await
    }

    pub(super) async fn add_links(
        &self,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<ContactKey>, StoreError> {
        if links.is_empty() {
            return Ok(Vec::new());
        }
        let links: Vec<(String, String)> = links
            .iter()
            .map(|(a, c)| (a.as_str().to_owned(), c.as_str().to_owned()))
            .collect();
        self.write(move |txn| {
            let mut table = txn.open_table(LINKS).map_err(corrupt)?;
            let mut index = txn.open_table(ALIASES).map_err(corrupt)?;
            let mut out = Vec::with_capacity(links.len());
            for (alias, canonical) in &links {
                let current = table
                    .get(alias.as_str())
                    .map_err(corrupt)?
                    .map(|v| v.value().to_owned());
                match current {
                    Some(c) => out.push(parse(&c)?),
                    None => {
                        table
                            .insert(alias.as_str(), canonical.as_str())
                            .map_err(corrupt)?;
                        index
                            .insert((canonical.as_str(), alias.as_str()), ())
                            .map_err(corrupt)?;
                        out.push(parse(canonical)?);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn aliases_of(
        &self,
        canonical: &ContactKey,
    ) -> Result<Vec<ContactKey>, StoreError> {
        let canonical = canonical.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let index = txn.open_table(ALIASES).map_err(corrupt)?;
            let links = txn.open_table(LINKS).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in index.range((canonical.as_str(), "")..).map_err(corrupt)? {
                let (key, _) = item.map_err(corrupt)?;
                let (c, alias) = key.value();
                if c != canonical {
                    break;
                }
                let names_it = links
                    .get(alias)
                    .map_err(corrupt)?
                    .is_some_and(|v| v.value() == canonical);
                if names_it {
                    out.push(parse(alias)?);
                }
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn drop_links(&self, canonical: &ContactKey) -> Result<(), StoreError> {
        let canonical = canonical.as_str().to_owned();
        self.write(move |txn| {
            let mut index = txn.open_table(ALIASES).map_err(corrupt)?;
            let mut links = txn.open_table(LINKS).map_err(corrupt)?;
            let mut aliases = Vec::new();
            for item in index.range((canonical.as_str(), "")..).map_err(corrupt)? {
                let (key, _) = item.map_err(corrupt)?;
                let (c, alias) = key.value();
                if c != canonical {
                    break;
                }
                aliases.push(alias.to_owned());
            }
            for alias in &aliases {
                let names_it = links
                    .get(alias.as_str())
                    .map_err(corrupt)?
                    .is_some_and(|v| v.value() == canonical);
                if names_it {
                    links.remove(alias.as_str()).map_err(corrupt)?;
                }
                index
                    .remove((canonical.as_str(), alias.as_str()))
                    .map_err(corrupt)?;
            }
            Ok(())
        })
        .await
    }
}
