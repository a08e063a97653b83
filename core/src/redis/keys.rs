//! Key names: `<prefix>:v1:{<kind>:<name>}`, one Cluster slot per object.

use std::format;
use std::string::String;

use super::RedisError;

/// The key format's version, part of every key: a future layout gets new
/// keys instead of misreading old ones.
pub(crate) const KEY_FORMAT: &str = "v1";

/// The longest name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 200;

/// The object's base key, `<prefix>:v1:{<kind>:<name>}`. The braces are
/// Redis Cluster's hash tag: every key of one object (the base key and
/// `<base>:<part>`) hashes to the same slot, so one script may touch all
/// of them.
///
/// # Errors
///
/// [`RedisError::InvalidName`] for an empty name, one longer than 200
/// bytes, or one with braces or control characters.
pub(crate) fn object_key(prefix: &str, kind: &str, name: &str) -> Result<String, RedisError> {
    if name.is_empty() {
        return Err(RedisError::invalid_name(name, "it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(RedisError::invalid_name(
            name,
            "it is longer than 200 bytes",
        ));
    }
    if name.contains(['{', '}']) {
        return Err(RedisError::invalid_name(
            name,
            "braces would break the key's Cluster hash tag",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(RedisError::invalid_name(
            name,
            "it contains control characters",
        ));
    }
    Ok(format!("{prefix}:{KEY_FORMAT}:{{{kind}:{name}}}"))
}

/// `<base>:<part>`, in the same slot as `base`.
pub(crate) fn part_key(base: &str, part: &str) -> String {
    format!("{base}:{part}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_the_version_and_a_hash_tag() {
        assert_eq!(
            object_key("stockade", "limiter", "payments").unwrap(),
            "stockade:v1:{limiter:payments}"
        );
        assert_eq!(
            part_key("stockade:v1:{bulkhead:db}", "leases"),
            "stockade:v1:{bulkhead:db}:leases"
        );
    }

    #[test]
    fn names_that_would_break_the_hash_tag_are_refused() {
        for bad in ["", "a{b", "a}b", "a\nb"] {
            assert!(
                matches!(
                    object_key("p", "limiter", bad),
                    Err(RedisError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(object_key("p", "limiter", &"x".repeat(201)).is_err());
        assert!(object_key("p", "limiter", &"x".repeat(200)).is_ok());
    }
}
