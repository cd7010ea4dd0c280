//! The access log (finto's `-log`): one Common Log Format line per request,
//! appended by a background task so requests never wait on the disk.

use std::net::SocketAddr;
use std::path::Path;

use time::macros::format_description;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Lines waiting for the disk; beyond this, lines are dropped, not queued.
const BACKLOG: usize = 4096;

#[derive(Clone)]
pub struct AccessLog {
    lines: mpsc::Sender<String>,
}

impl AccessLog {
    /// Opens (creating, appending) `path` and starts the writer task.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let (lines, mut incoming) = mpsc::channel::<String>(BACKLOG);
        tokio::spawn(async move {
            while let Some(line) = incoming.recv().await {
                if let Err(error) = file.write_all(line.as_bytes()).await {
                    tracing::warn!(%error, "access log write failed");
                }
            }
            let _ = file.flush().await;
        });
        Ok(Self { lines })
    }

    /// Whether [`AccessLog::open`] would succeed, without creating or
    /// changing anything: an existing file must open for appending; a new
    /// one needs a directory this process may write into.
    pub fn check(path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if path.exists() {
            // Non-blocking, so a FIFO nobody reads is an error, not a hang.
            return std::fs::OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map(drop);
        }
        // A dangling symlink: the file would be created at its target.
        let target = std::fs::read_link(path)
            .ok()
            .map(|target| match path.parent() {
                Some(parent) => parent.join(target),
                None => target,
            });
        let path = target.as_deref().unwrap_or(path);
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let c_path = std::ffi::CString::new(parent.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid NUL-terminated path; access(2) only reads it.
        if unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// One request: `request` is `None` for a request hyper could not
    /// parse (logged as `"-"`, as Apache does).
    pub fn record(
        &self,
        peer: SocketAddr,
        request: Option<(&str, &str)>,
        status: u16,
        bytes: usize,
    ) {
        let now = OffsetDateTime::now_utc()
            .format(format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            ))
            .unwrap_or_default();
        let request = match request {
            Some((method, path)) => format!("{} {} HTTP/1.1", escape(method), escape(path)),
            None => "-".to_owned(),
        };
        let line = format!("{} - - [{now}] \"{request}\" {status} {bytes}\n", peer.ip());
        if self.lines.try_send(line).is_err() {
            tracing::debug!("access log backlog full; line dropped");
        }
    }
}

/// `"`, `\\` and bytes outside printable ASCII as `\xHH`, as Apache writes
/// them, so a request cannot end the quoted field or forge a line.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if text.bytes().all(plain) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        if plain(byte) {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("\\x{byte:02x}"));
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn quotes_and_control_bytes_are_escaped() {
        assert_eq!(escape("/latest/meta-data/"), "/latest/meta-data/");
        assert_eq!(escape("/a\"b\\c\nd"), "/a\\x22b\\x5cc\\x0ad");
    }
    #[test]
    fn check_refuses_a_fifo_nobody_reads_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("log");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert!(super::AccessLog::check(&fifo).is_err());
    }

    #[test]
    fn check_follows_a_dangling_symlink_to_where_the_file_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let into_missing_dir = dir.path().join("a");
        std::os::unix::fs::symlink("missing/log", &into_missing_dir).unwrap();
        assert!(super::AccessLog::check(&into_missing_dir).is_err());
        let into_this_dir = dir.path().join("b");
        std::os::unix::fs::symlink("log", &into_this_dir).unwrap();
        super::AccessLog::check(&into_this_dir).unwrap();
        assert!(!dir.path().join("log").exists(), "check creates nothing");
    }
}
