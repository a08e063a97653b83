//! Named registries: one shared instance per name and pattern type,
//! process-wide (the spec's `new CircuitBreaker('db', …)` then
//! `CircuitBreaker.getBreaker('db')`).
//!
//! The rules, the same for every pattern:
//!
//! * `X::new(name, config)` registers the new instance under `name`; if a
//!   live instance already holds the name, it fails with
//!   [`Error::NameTaken`] (whatever its config: two constructions are two
//!   instances, and a registry holds one).
//! * `X::get_or_create(name, config)` returns the registered instance if
//!   its config is equal, creates and registers one if the name is free,
//!   and fails with [`Error::NameTaken`] if the configs differ.
//! * `X::get_<pattern>(name)` (the spec's getters) returns the registered
//!   instance whatever its config, or creates one with the defaults.
//! * `X::get(name)` returns the registered instance, if any.
//! * `dispose` unregisters; the name is then free again.
//! * `X::unregistered(..)` and `X::with_timer(..)` build instances no
//!   registry knows (tests, simulations, libraries embedding Stockade).
//!
//! A registered instance lives until it is disposed, also when nobody else
//! holds it.

use core::any::{Any, TypeId};
use std::collections::HashMap;
use std::string::String;
use std::sync::{Arc, LazyLock};

use std::vec::Vec;

use super::{Error, Observed};
use crate::sync::unmodelled::Mutex;

/// A pattern that can be kept in the registry.
pub(crate) trait Registered: Any + Observed + Send + Sync + Sized {
    /// Its config, compared by `get_or_create`.
    type Config: PartialEq;
    /// The config it was created with.
    fn registered_config(&self) -> &Self::Config;
    /// `true` once disposed: the registry then forgets it.
    fn registered_is_disposed(&self) -> bool;
    /// Tells the instance it is registered (so `dispose` unregisters it).
    fn mark_registered(&self);
    /// The identity `dispose` passes to [`forget`].
    fn identity(&self) -> usize;
}

struct Entry {
    instance: Arc<dyn Any + Send + Sync>,
    /// The same instance, for telemetry ([`registered_instances`]).
    observed: Arc<dyn Observed>,
    identity: usize,
}

type Key = (TypeId, String);

static REGISTRY: LazyLock<Mutex<HashMap<Key, Entry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The live instance under `key`; a disposed one is dropped.
fn live<T: Registered>(map: &mut HashMap<Key, Entry>, key: &Key) -> Option<Arc<T>> {
    let found = map
        .get(key)
        .and_then(|e| Arc::clone(&e.instance).downcast::<T>().ok());
    match found {
        Some(t) if !t.registered_is_disposed() => Some(t),
        Some(_) => {
            map.remove(key);
            None
        }
        None => None,
    }
}

fn insert<T: Registered>(map: &mut HashMap<Key, Entry>, key: Key, created: T) -> Arc<T> {
    let created = Arc::new(created);
    created.mark_registered();
    map.insert(
        key,
        Entry {
            instance: Arc::clone(&created) as Arc<dyn Any + Send + Sync>,
            observed: Arc::clone(&created) as Arc<dyn Observed>,
            identity: created.identity(),
        },
    );
    created
}

fn key<T: 'static>(name: &str) -> Key {
    (TypeId::of::<T>(), String::from(name))
}

/// Creates an instance with `create` and registers it as `name`.
///
/// # Errors
///
/// [`Error::NameTaken`] if a live instance holds `name`; `create`'s error.
pub(crate) fn register<T: Registered, E>(
    name: &str,
    create: impl FnOnce() -> Result<T, Error<E>>,
) -> Result<Arc<T>, Error<E>> {
    let key = key::<T>(name);
    let mut map = REGISTRY.lock();
    if live::<T>(&mut map, &key).is_some() {
        return Err(Error::NameTaken {
            name: Arc::from(name),
        });
    }
    Ok(insert(&mut map, key, create()?))
}

/// The instance registered as `name` if its config equals `config`, or a
/// new one from `create` registered under that name.
///
/// # Errors
///
/// [`Error::NameTaken`] if `name` is registered with another config;
/// `create`'s error.
pub(crate) fn get_or_create<T: Registered, E>(
    name: &str,
    config: &T::Config,
    create: impl FnOnce() -> Result<T, Error<E>>,
) -> Result<Arc<T>, Error<E>> {
    let key = key::<T>(name);
    let mut map = REGISTRY.lock();
    if let Some(existing) = live::<T>(&mut map, &key) {
        if existing.registered_config() == config {
            return Ok(existing);
        }
        return Err(Error::NameTaken {
            name: Arc::from(name),
        });
    }
    Ok(insert(&mut map, key, create()?))
}

/// The instance registered as `name` (whatever its config), or a new one
/// from `create_default` registered under that name.
pub(crate) fn get_or_default<T: Registered>(
    name: &str,
    create_default: impl FnOnce() -> T,
) -> Arc<T> {
    let key = key::<T>(name);
    let mut map = REGISTRY.lock();
    if let Some(existing) = live::<T>(&mut map, &key) {
        return existing;
    }
    insert(&mut map, key, create_default())
}

/// The live instance registered as `name`, if any.
pub(crate) fn get<T: Registered>(name: &str) -> Option<Arc<T>> {
    let key = key::<T>(name);
    live::<T>(&mut REGISTRY.lock(), &key)
}

/// Every live registered instance, of every pattern type, in no particular
/// order: what a metrics exporter reports (see
/// [`Observed`]). Instances disposed since are left out.
///
/// # Examples
///
/// ```
/// use stockade::prelude::*;
///
/// let limiter = RateLimiter::new("doc-registered", RateLimiterConfig::DEFAULT)?;
/// assert!(stockade::blocking::registered_instances().iter().any(|o| o.name() == "doc-registered"));
/// limiter.dispose();
/// assert!(!stockade::blocking::registered_instances().iter().any(|o| o.name() == "doc-registered"));
/// # Ok::<(), Error>(())
/// ```
pub fn registered_instances() -> Vec<Arc<dyn Observed>> {
    let mut map = REGISTRY.lock();
    map.retain(|_, e| !e.observed.is_disposed());
    map.values().map(|e| Arc::clone(&e.observed)).collect()
}

/// Forgets `name` in the registry of `type_id` if it is registered to the
/// instance with `identity`.
pub(crate) fn forget(type_id: TypeId, name: &str, identity: usize) {
    let key = (type_id, String::from(name));
    let mut map = REGISTRY.lock();
    if map.get(&key).is_some_and(|e| e.identity == identity) {
        map.remove(&key);
    }
}

/// The registry side of a pattern, the same for every pattern on the
/// monotonic clock: [`Registered`], and the constructors and getters
/// `unregistered`, `get_or_create`, `get` and the spec's getter (`$getter`,
/// e.g. `get_breaker`). The pattern provides `with_timer(name, config,
/// timer)` and `shell()`; its `new` (which registers) keeps its own docs.
macro_rules! registered {
    ($ty:ident, $config:ident, $what:literal, $getter:ident, $spec:literal) => {
        impl $ty<$crate::clock::MonotonicClock> {
            #[doc = concat!("A ", $what, " on the system's monotonic clock that no registry knows")]
            /// (tests, libraries embedding Stockade).
            ///
            /// # Errors
            ///
            /// [`Error::InvalidConfig`] as for [`new`](Self::new).
            pub fn unregistered(
                name: impl Into<Arc<str>>,
                config: $config,
            ) -> Result<Self, Error> {
                Self::with_timer(name, config, $crate::clock::MonotonicClock::new())
            }

            #[doc = concat!("The ", $what, " registered as `name` if its config equals `config`,")]
            /// or a new one registered under that name (the spec's best
            /// practice: one shared instance per name).
            ///
            /// # Errors
            ///
            /// [`Error::NameTaken`] if `name` is registered with another
            /// config; [`Error::InvalidConfig`] as for [`new`](Self::new).
            ///
            /// # Examples
            ///
            /// ```
            /// use std::sync::Arc;
            /// use stockade::prelude::*;
            ///
            #[doc = concat!("let a = ", stringify!($ty), "::get_or_create(\"doc-shared\", ", stringify!($config), "::DEFAULT)?;")]
            #[doc = concat!("let b = ", stringify!($ty), "::get_or_create(\"doc-shared\", ", stringify!($config), "::DEFAULT)?;")]
            /// assert!(Arc::ptr_eq(&a, &b));
            /// a.dispose(); // the registry forgets it
            #[doc = concat!("assert!(", stringify!($ty), "::get(\"doc-shared\").is_none());")]
            /// # Ok::<(), Error>(())
            /// ```
            #[allow(clippy::clone_on_copy, reason = "one body for Copy and Clone configs")]
            pub fn get_or_create(name: &str, config: $config) -> Result<Arc<Self>, Error> {
                $crate::blocking::registry::get_or_create(name, &config, || {
                    Self::unregistered(name, config.clone())
                })
            }

            #[doc = concat!("The live ", $what, " registered as `name`, if any.")]
            pub fn get(name: &str) -> Option<Arc<Self>> {
                $crate::blocking::registry::get(name)
            }

            #[doc = concat!("The spec's `", $spec, "(name)`: the ", $what, " registered as `name`")]
            /// (whatever its config), or a new one with the default config,
            /// registered under that name.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::sync::Arc;
            /// use stockade::prelude::*;
            ///
            #[doc = concat!("let first = ", stringify!($ty), "::", stringify!($getter), "(\"doc-spec-getter\");")]
            #[doc = concat!("assert!(Arc::ptr_eq(&first, &", stringify!($ty), "::", stringify!($getter), "(\"doc-spec-getter\")));")]
            #[doc = concat!("assert_eq!(*first.config(), ", stringify!($config), "::DEFAULT);")]
            /// ```
            pub fn $getter(name: &str) -> Arc<Self> {
                $crate::blocking::registry::get_or_default(name, || {
                    Self::unregistered(name, $config::DEFAULT)
                        .unwrap_or_else(|_| unreachable!("the default config is valid"))
                })
            }
        }

        impl $crate::blocking::Observed for $ty<$crate::clock::MonotonicClock> {
            fn kind(&self) -> $crate::blocking::PatternKind {
                self.shell().kind()
            }
            fn name(&self) -> &str {
                self.shell().name()
            }
            fn metrics(&self) -> $crate::blocking::Metrics {
                <$ty<$crate::clock::MonotonicClock>>::metrics(self)
            }
            fn is_disposed(&self) -> bool {
                self.shell().is_disposed()
            }
        }

        impl $crate::blocking::registry::Registered for $ty<$crate::clock::MonotonicClock> {
            type Config = $config;
            fn registered_config(&self) -> &$config {
                self.shell().config()
            }
            fn registered_is_disposed(&self) -> bool {
                self.shell().is_disposed()
            }
            fn mark_registered(&self) {
                self.shell().mark_registered::<Self>();
            }
            fn identity(&self) -> usize {
                self.shell().identity()
            }
        }
    };
}
pub(crate) use registered;
