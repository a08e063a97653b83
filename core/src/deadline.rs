//! deadline (in progress)
