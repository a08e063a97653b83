//! [`Home`]: where a blocking pattern's core machine lives.

use core::ops::Deref;
#[cfg(feature = "shared-memory")]
use core::ptr::NonNull;
#[cfg(feature = "shared-memory")]
use std::boxed::Box;

/// A blocking pattern's core machine: its own, or one in a region that
/// every process on the host shares (feature `shared-memory`). Either
/// way the pattern reaches it as `&M`: one predictable branch.
pub(crate) enum Home<M: 'static> {
    /// The pattern's own machine.
    Local(M),
    /// A machine in a shared region.
    #[cfg(feature = "shared-memory")]
    Shared {
        /// Into the region's mapping, which `region` keeps alive.
        machine: NonNull<M>,
        _region: Box<dyn core::any::Any + Send + Sync>,
    },
}

// SAFETY: `Local` is an `M`; `Shared` points into a mapping owned by
// `region` (Send + Sync) and hands out only `&M`, which `M: Sync` allows
// on any thread.
unsafe impl<M: Send + Sync> Send for Home<M> {}
// SAFETY: as for `Send`.
unsafe impl<M: Send + Sync> Sync for Home<M> {}

impl<M: 'static> Home<M> {
    /// A machine shared between processes.
    #[cfg(feature = "shared-memory")]
    pub(crate) fn shared(region: crate::shared::Shared<M>) -> Home<M>
    where
        M: crate::shared::Machine,
    {
        let region = Box::new(region);
        let machine = NonNull::from(&**region);
        Home::Shared {
            machine,
            _region: region,
        }
    }

    /// `true` for a machine shared between processes.
    pub(crate) fn is_shared(&self) -> bool {
        match self {
            Home::Local(_) => false,
            #[cfg(feature = "shared-memory")]
            Home::Shared { .. } => true,
        }
    }
}

impl<M: 'static> Deref for Home<M> {
    type Target = M;

    #[inline]
    fn deref(&self) -> &M {
        match self {
            Home::Local(m) => m,
            // SAFETY: `machine` points at the initialised machine inside
            // the mapping that `region` keeps alive as long as `self`.
            #[cfg(feature = "shared-memory")]
            Home::Shared { machine, .. } => unsafe { machine.as_ref() },
        }
    }
}

impl<M: core::fmt::Debug + 'static> core::fmt::Debug for Home<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
