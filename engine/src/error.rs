use raxe_storage::QueueError;

/// Everything the engine can refuse to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Queue(QueueError),
    #[error("no destination named {0:?}")]
    UnknownDestination(String),
    #[error("invalid destination id {id:?}: {why}")]
    InvalidId { id: String, why: &'static str },
    /// An event built in code breaks a rule agent input is held to; nothing was queued.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("SiemDispatcher::start must be called inside a tokio runtime")]
    NoRuntime,
    #[error("background task failed: {0}")]
    Task(String),
    /// A record in a dead-letter queue that does not decode; it stays where it is.
    #[error("unreadable dead letter: {0}")]
    UnreadableDeadLetter(String),
}
