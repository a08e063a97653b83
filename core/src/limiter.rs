//! limiter (in progress)
