//! The state directory: keys only this user may read or replace.
//!
//! Whoever can write a key file can forge tokens or signatures, so a file
//! is trusted only when this user owns it and nobody else may write it or
//! the directory; a symbolic link is never followed. Two servers starting
//! on one fresh directory agree on one key: creation happens under a lock
//! on the directory, and a new file is linked into place, never over
//! another.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Key files are small; a larger file is not one of ours.
const MAX_STATE_FILE: u64 = 64 * 1024;

/// `$XDG_STATE_HOME/ersatz`, else `~/.local/state/ersatz`.
pub fn default_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("ersatz");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/ersatz")
}

/// A directory fit to hold keys: ours, and writable by nobody else.
pub struct StateDir {
    path: PathBuf,
}

/// Held while keys are read or created; released when dropped.
pub struct Locked<'a> {
    dir: &'a StateDir,
    _lock: File,
}

impl StateDir {
    /// Creates the directory (mode 0700) if needed, and checks it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(path).map_err(|e| annotate(path, e))?;
        let metadata = std::fs::metadata(path).map_err(|e| annotate(path, e))?;
        if !metadata.is_dir() {
            return Err(refused(path, "is not a directory"));
        }
        trusted(path, &metadata)?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serialises key creation with other ersatz processes on this directory.
    pub fn lock(&self) -> io::Result<Locked<'_>> {
        let dir = File::open(&self.path).map_err(|e| annotate(&self.path, e))?;
        // SAFETY: flock on a descriptor we own; it is released when `dir` closes.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(annotate(&self.path, io::Error::last_os_error()));
        }
        Ok(Locked {
            dir: self,
            _lock: dir,
        })
    }
}

impl Locked<'_> {
    /// The contents of `name`, or `None` when it does not exist. A link, a
    /// file another user owns, or one others may write, is refused; one
    /// others may read is made private (0600) with a warning.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.read_up_to(name, MAX_STATE_FILE)
    }

    /// [`Locked::read`] for larger files; what is past `max` bytes is not read.
    pub fn read_up_to(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let path = self.dir.path.join(name);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path);
        let file = match file {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(refused(&path, "is a symbolic link"))
            }
            Err(e) => return Err(annotate(&path, e)),
        };
        let metadata = file.metadata().map_err(|e| annotate(&path, e))?;
        if !metadata.is_file() {
            return Err(refused(&path, "is not a regular file"));
        }
        trusted(&path, &metadata)?;
        if metadata.mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "key file was readable by others; made private (0600)");
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| annotate(&path, e))?;
        }
        let mut contents = Vec::new();
        file.take(max)
            .read_to_end(&mut contents)
            .map_err(|e| annotate(&path, e))?;
        Ok(Some(contents))
    }

    /// Writes `name` (mode 0600) through a new temporary file: linked into
    /// place when `name` is absent (never over a file another process put
    /// there first: then that file is read back and returned), renamed over
    /// it when `replace` (a corrupt file). Returns what `name` now holds.
    pub fn write(&self, name: &str, contents: &[u8], replace: bool) -> io::Result<Vec<u8>> {
        let path = self.dir.path.join(name);
        let temporary = self.dir.path.join(format!(".{name}.{}", random_suffix()));
        let written = write_new(&temporary, contents).and_then(|()| {
            if replace {
                std::fs::rename(&temporary, &path)
            } else {
                std::fs::hard_link(&temporary, &path)
            }
        });
        let _ = std::fs::remove_file(&temporary);
        match written {
            Ok(()) => Ok(contents.to_vec()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self
                .read(name)?
                .ok_or_else(|| refused(&path, "vanished while being created")),
            Err(e) => Err(annotate(&path, e)),
        }
    }
}

fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Ours, and writable by nobody else.
fn trusted(path: &Path, metadata: &std::fs::Metadata) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if metadata.uid() != me {
        return Err(refused(
            path,
            &format!(
                "is owned by uid {}, not by this user ({me})",
                metadata.uid()
            ),
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(refused(
            path,
            &format!(
                "may be written by other users (mode {:o}); run chmod go-w on it",
                metadata.mode() & 0o777
            ),
        ));
    }
    Ok(())
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} {why}", path.display()),
    )
}

fn annotate(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).expect("the OS random generator is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_directory_and_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("a/b")).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let locked = dir.lock().unwrap();
        assert_eq!(locked.read("k").unwrap(), None);
        assert_eq!(locked.write("k", b"one", false).unwrap(), b"one");
        // A second creation does not replace the first.
        assert_eq!(locked.write("k", b"two", false).unwrap(), b"one");
        let mode = std::fs::metadata(dir.path().join("k")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(locked.write("k", b"three", true).unwrap(), b"three");
        assert_eq!(locked.read("k").unwrap().unwrap(), b"three");
    }

    #[test]
    fn refuses_links_and_directories_others_may_write() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        let target = root.path().join("target");
        std::fs::write(&target, b"victim").unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("link")).unwrap();
        let locked = dir.lock().unwrap();
        let error = locked.read("link").unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        assert!(locked.write("link", b"x", true).is_ok());
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"victim",
            "the link's target is untouched"
        );
        drop(locked);

        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = StateDir::open(&open).err().unwrap().to_string();
        assert!(error.contains("may be written by other users"), "{error}");
    }
}
