//! Access logs (`access_log` in `combined` or a `log_format`): lines rendered from
//! request variables ([`crate::vars`]) and what the request did, queued and written in
//! batches by a background thread per file, so request handling never waits on disk.

mod file_cache;
mod format;
mod syslog;
mod writer;

pub use crate::vars::UpstreamAttempt;
pub use file_cache::LogFileCache;
pub use format::{ConnFacts, PendingLine, ResponseFacts};
pub use syslog::SyslogSender;
pub use writer::{append_line, format_combined, AccessLog, AccessLogs, CombinedFields};
