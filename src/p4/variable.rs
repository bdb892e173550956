//! [`SharedVar`]: one shared variable of a namespace, and the namespace-wide variable
//! operations (`Namespace::var`, `flush`, `variables`).

use std::marker::PhantomData;
use std::time::Duration;

use futures::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::store::Slot;
use super::value::{from_json, to_json};
use super::{Error, Namespace};
use crate::state::ConnectionState;
use crate::wire::p4::ErrorCode;
use crate::wire::p4::canonical::Json;
use crate::wire::p4::names::Name;
use crate::wire::p4::record::Version;

/// A shared variable of a [`Namespace`], read and written as `T` (any serde type; use
/// `serde_json::Value` or [`Json`] for a dynamic value).
///
/// Every instance of the namespace holds its current value. Writes are last-writer-wins by
/// logical version (§4.2); they are committed locally at once, work offline, and go out when
/// the hub is connected ([`SharedVar::confirmed`] / [`Namespace::flush`] wait for the server).
pub struct SharedVar<T> {
    namespace: Namespace,
    name: Name,
    slot: watch::Receiver<Slot>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for SharedVar<T> {
    fn clone(&self) -> Self {
        SharedVar {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            slot: self.slot.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for SharedVar<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedVar").field("namespace", &self.namespace.name()).field("name", &self.name).finish()
    }
}

/// What is known about a variable (the reference's `meta`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Meta {
    /// A record is held, or the namespace has synced (so absence is meaningful).
    pub initialized: bool,
    /// Whether the variable has a live value; `None` until initialized.
    pub exists: Option<bool>,
    /// The stored version.
    pub version: Option<Version>,
    /// A local write the server has not confirmed yet.
    pub pending: bool,
    /// The hub is connected.
    pub connected: bool,
}

/// One state of a watched variable.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Update<T> {
    /// The value; `None` when the variable was deleted.
    pub value: Option<T>,
    /// The version of the record.
    pub version: Version,
    /// A local write the server has not confirmed yet.
    pub pending: bool,
}

/// A live variable, as [`Namespace::variables`] lists it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The variable's name.
    pub name: String,
    /// Its value.
    pub value: Json,
    /// The version of the record.
    pub version: Version,
    /// A local write the server has not confirmed yet.
    pub pending: bool,
}

impl Namespace {
    /// The shared variable `name`, read and written as `T`.
    ///
    /// # Errors
    /// `INVALID_NAME` unless `name` is 1–128 UTF-8 bytes without control characters.
    pub fn var<T>(&self, name: &str) -> Result<SharedVar<T>, Error> {
        let name = Name::new(name)?;
        let slot = self.core().store.slot(&name);
        Ok(SharedVar { namespace: self.clone(), name, slot, _type: PhantomData })
    }

    /// Every live (not deleted) variable, in the order the namespace learned them.
    pub fn variables(&self) -> Vec<Entry> {
        self.core().store.with(|s| {
            s.entries()
                .filter_map(|e| {
                    e.record.value().map(|value| Entry {
                        name: e.record.name().as_str().to_owned(),
                        value: value.clone(),
                        version: e.record.version().clone(),
                        pending: e.pending,
                    })
                })
                .collect()
        })
    }

    /// Waits until the server has every local write made so far (sent, then confirmed by a
    /// round trip on the same connection).
    ///
    /// # Errors
    /// `TIMEOUT` (with how many writes are still pending) when that takes longer than
    /// `timeout` — for example while disconnected; the writes stay pending and go out on the
    /// next connection. `CLOSED` when the namespace is gone.
    ///
    /// # Cancel safety
    /// Cancel safe: the writes stay pending either way.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let core = self.core();
        let mut confirmed = core.store.confirmed.subscribe();
        let wait = async {
            loop {
                if core.store.summary().pending_variables == 0 {
                    return;
                }
                core.store.flush.notify_one();
                tokio::select! {
                    _ = confirmed.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            let pending = core.store.summary().pending_variables;
            let connected = core.engine.state() == ConnectionState::Connected;
            Error::new(ErrorCode::Timeout).with_detail(format!(
                "{pending} write(s) not confirmed by the server within {} ms{}; they stay pending and go out when connected",
                timeout.as_millis(),
                if connected { "" } else { " (the hub is not connected)" }
            ))
        })
    }
}

impl<T> SharedVar<T> {
    /// The variable's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The namespace it belongs to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The current value as protocol-4 JSON; `None` when absent or deleted.
    pub fn json(&self) -> Option<Json> {
        self.slot.borrow().entry.as_ref().and_then(|e| e.record.value().cloned())
    }

    /// What is known about the variable.
    pub fn meta(&self) -> Meta {
        let slot = self.slot.borrow();
        let entry = slot.entry.as_ref();
        let initialized = entry.is_some() || self.namespace.is_synced();
        Meta {
            initialized,
            exists: initialized.then(|| entry.is_some_and(|e| !e.record.is_deleted())),
            version: entry.map(|e| e.record.version().clone()),
            pending: entry.is_some_and(|e| e.pending),
            connected: self.namespace.core().engine.state() == ConnectionState::Connected,
        }
    }

    /// Deletes the variable: a tombstone record (§4.4) that wins over older values everywhere.
    ///
    /// # Errors
    /// As [`SharedVar::set`].
    pub fn delete(&self) -> Result<Version, Error> {
        self.write(None)
    }

    fn write(&self, value: Option<&Json>) -> Result<Version, Error> {
        let core = self.namespace.core();
        if core.cancel.is_cancelled() {
            return Err(Error::new(ErrorCode::Closed));
        }
        let entry = core.store.with(|s| s.write(&self.name, value, &core.writer))?;
        core.store.notify(&self.name);
        core.store.flush.notify_one();
        Ok(entry.record.version().clone())
    }

    /// Waits until the server has this variable's latest local write (see
    /// [`Namespace::flush`]); returns at once when nothing is pending.
    ///
    /// # Errors
    /// As [`Namespace::flush`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn confirmed(&self, timeout: Duration) -> Result<(), Error> {
        let mut slot = self.slot.clone();
        let core = self.namespace.core();
        core.store.flush.notify_one();
        let wait = slot.wait_for(|s| !s.entry.as_ref().is_some_and(|e| e.pending));
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::new(ErrorCode::Closed)),
            Err(_) => Err(Error::new(ErrorCode::Timeout).with_detail(format!(
                "the write of {} was not confirmed by the server within {} ms; it stays pending",
                self.name,
                timeout.as_millis()
            ))),
        }
    }
}

impl<T: Serialize + DeserializeOwned> SharedVar<T> {
    /// Sets the value: committed locally at once (a new version, §4.4), sent when connected.
    /// Returns the new version.
    ///
    /// # Errors
    /// `INVALID_VALUE` / `VALUE_TOO_LARGE` (the reference's value rules), `MEMORY_FULL`,
    /// `INVALID_VERSION` (the variable holds a maximal counter that this writer cannot beat,
    /// §11 W9), `CLOSED`. Nothing changes on error.
    pub fn set(&self, value: &T) -> Result<Version, Error> {
        let json = to_json(value)?;
        self.write(Some(&json))
    }

    /// The current value; `Ok(None)` when absent or deleted. Before the namespace has synced,
    /// `None` may only mean "not known yet" (see [`SharedVar::meta`]).
    ///
    /// # Errors
    /// `INVALID_VALUE` when the stored value does not have `T`'s shape.
    pub fn get(&self) -> Result<Option<T>, Error> {
        self.json().map(|j| from_json(&j)).transpose()
    }

    /// A stream of the variable's versions: the current one first (if any), then every new
    /// version (a set or a delete, local or remote). It follows the latest state: a consumer
    /// slower than the writers sees the newest version, not every intermediate one. (Python
    /// also fires when only `meta` changes, such as a write being confirmed; this stream does
    /// not — read [`SharedVar::meta`].) A value that does not have `T`'s shape is an `Err`
    /// item; the stream goes on.
    pub fn watch(&self) -> impl Stream<Item = Result<Update<T>, Error>> + Send + Unpin + 'static
    where
        T: Send + 'static,
    {
        let mut rx = self.slot.clone();
        rx.mark_changed();
        Box::pin(futures::stream::unfold((rx, None::<Version>), |(mut rx, mut last)| async move {
            loop {
                rx.changed().await.ok()?;
                let slot = rx.borrow_and_update().clone();
                let Some(entry) = slot.entry else { continue };
                if last.as_ref() == Some(entry.record.version()) {
                    continue;
                }
                last = Some(entry.record.version().clone());
                let value = entry.record.value().map(from_json::<T>).transpose();
                let update = value.map(|value| Update {
                    value,
                    version: entry.record.version().clone(),
                    pending: entry.pending,
                });
                return Some((update, (rx, last)));
            }
        }))
    }
}
