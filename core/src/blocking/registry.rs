//! Named registries: one shared instance per name and pattern type (the
//! spec's `CircuitBreaker.getBreaker('db')`).

use core::any::{Any, TypeId};
use std::collections::HashMap;
use std::string::String;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use super::Error;

/// A pattern that can be kept in the registry.
pub(crate) trait Registered: Any + Send + Sync {
    /// Its options, compared when the name is requested again.
    type Options: PartialEq;
    /// The options it was created with.
    fn options(&self) -> &Self::Options;
    /// `true` once disposed: the registry then forgets it.
    fn is_disposed(&self) -> bool;
}

type Key = (TypeId, String);

static REGISTRY: LazyLock<Mutex<HashMap<Key, Arc<dyn Any + Send + Sync>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The instance registered as `name`, or a new one from `create` registered
/// under that name. Requesting a name again with different options is an
/// [`Error::NameTaken`] error, never a silent replacement. A disposed
/// instance is forgotten and replaced.
pub(crate) fn get_or_create<T, E>(
    name: &str,
    options: &T::Options,
    create: impl FnOnce() -> Result<T, Error<E>>,
) -> Result<Arc<T>, Error<E>>
where
    T: Registered,
{
    let key = (TypeId::of::<T>(), String::from(name));
    let mut map = REGISTRY.lock();
    if let Some(existing) = map.get(&key) {
        if let Ok(existing) = Arc::clone(existing).downcast::<T>() {
            if !existing.is_disposed() {
                if existing.options() == options {
                    return Ok(existing);
                }
                return Err(Error::NameTaken {
                    name: Arc::from(name),
                });
            }
        }
    }
    let created = Arc::new(create()?);
    map.insert(key, Arc::clone(&created) as Arc<dyn Any + Send + Sync>);
    Ok(created)
}

/// The live instance registered as `name`, if any.
pub(crate) fn get<T: Registered>(name: &str) -> Option<Arc<T>> {
    let key = (TypeId::of::<T>(), String::from(name));
    let mut map = REGISTRY.lock();
    let found = map
        .get(&key)
        .and_then(|a| Arc::clone(a).downcast::<T>().ok());
    match found {
        Some(t) if !t.is_disposed() => Some(t),
        Some(_) => {
            map.remove(&key);
            None
        }
        None => None,
    }
}

/// Forgets `name` if it is registered to exactly `instance`.
pub(crate) fn forget<T: Registered>(name: &str, instance: &T) {
    let key = (TypeId::of::<T>(), String::from(name));
    let mut map = REGISTRY.lock();
    let same = map
        .get(&key)
        .is_some_and(|a| core::ptr::addr_eq(Arc::as_ptr(a), instance as *const T));
    if same {
        map.remove(&key);
    }
}
