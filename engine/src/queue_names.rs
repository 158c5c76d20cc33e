//! How the engine names its queues in the store. These names are on disk: never change them.

use crate::error::EngineError;

/// Events whose customer has no destination yet.
pub const UNROUTED: &str = "unrouted";

const DESTINATION_PREFIX: &str = "dest:";
const DEAD_LETTER_PREFIX: &str = "dlq:";

/// The delivery queue of a destination.
pub fn destination(id: &str) -> String {
    format!("{DESTINATION_PREFIX}{id}")
}

/// The dead-letter queue of a destination.
pub fn dead_letters(id: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{id}")
}

/// The destination id behind a delivery-queue name.
pub fn destination_of(queue: &str) -> Option<&str> {
    queue.strip_prefix(DESTINATION_PREFIX)
}

/// The destination id behind a dead-letter-queue name.
pub fn dead_letters_of(queue: &str) -> Option<&str> {
    queue.strip_prefix(DEAD_LETTER_PREFIX)
}

/// Destination ids are printable, so they read well in logs, stats and queue names.
pub fn validate_id(id: &str) -> Result<(), EngineError> {
    let why = if id.is_empty() {
        "it is empty"
    } else if id.len() > 200 {
        "it is longer than 200 bytes"
    } else if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(EngineError::InvalidId {
        id: id.to_string(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ids_are_checked() {
        assert_eq!(
            destination_of(&destination("m/c/splunk")),
            Some("m/c/splunk")
        );
        assert_eq!(dead_letters_of(&dead_letters("x")), Some("x"));
        assert_eq!(destination_of(UNROUTED), None);
        assert!(validate_id("m/c/splunk").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("a b").is_err());
        assert!(validate_id("a\nb").is_err());
    }
}
