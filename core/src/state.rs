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
use std::os::unix::io::{AsRawFd, FromRawFd};
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

/// A directory fit to hold keys: ours, and writable by nobody else. It is
/// held open, and every file in it is reached through that descriptor, so
/// renaming the path after the check changes nothing.
pub struct StateDir {
    path: PathBuf,
    dir: File,
}

/// Held while keys are read or created; released when dropped.
pub struct Locked<'a> {
    dir: &'a StateDir,
}

impl StateDir {
    /// Creates the directory (mode 0700) if needed, and checks it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(path).map_err(|e| annotate(path, e))?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| annotate(path, e))?;
        let metadata = dir.metadata().map_err(|e| annotate(path, e))?;
        trusted(path, &metadata)?;
        Ok(Self {
            path: path.to_owned(),
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serialises key creation with other ersatz processes on this directory.
    pub fn lock(&self) -> io::Result<Locked<'_>> {
        // SAFETY: flock on a descriptor we own; Locked's drop unlocks it.
        if unsafe { libc::flock(self.dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(annotate(&self.path, io::Error::last_os_error()));
        }
        Ok(Locked { dir: self })
    }

    /// `name` (one path segment) opened relative to the directory, never
    /// through a symbolic link.
    fn open_at(&self, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
        let name = segment(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// `renameat` (over `to`) or `linkat` (never over `to`), within the directory.
    fn place(&self, from: &str, to: &str, replace: bool) -> io::Result<()> {
        let (from, to) = (segment(from)?, segment(to)?);
        let dir = self.dir.as_raw_fd();
        // SAFETY: a valid directory descriptor and NUL-terminated names.
        let placed = unsafe {
            if replace {
                libc::renameat(dir, from.as_ptr(), dir, to.as_ptr())
            } else {
                libc::linkat(dir, from.as_ptr(), dir, to.as_ptr(), 0)
            }
        };
        if placed == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn remove(&self, name: &str) {
        if let Ok(name) = segment(name) {
            // SAFETY: as above; a name already gone is simply absent.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) };
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we hold.
        unsafe { libc::flock(self.dir.dir.as_raw_fd(), libc::LOCK_UN) };
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
        // Non-blocking: a FIFO planted under the name must not hang start-up.
        let file = match self.dir.open_at(name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
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
        let temporary = format!(".{name}.{}", random_suffix());
        let written = self
            .write_new(&temporary, contents)
            .and_then(|()| self.dir.place(&temporary, name, replace));
        self.dir.remove(&temporary);
        match written {
            Ok(()) => Ok(contents.to_vec()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self
                .read(name)?
                .ok_or_else(|| refused(&path, "vanished while being created")),
            Err(e) => Err(annotate(&path, e)),
        }
    }

    fn write_new(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        let mut file = self.dir.open_at(name, flags, 0o600)?;
        file.write_all(contents)?;
        file.sync_all()
    }
}

/// A file name of our own making, as C wants it.
fn segment(name: &str) -> io::Result<std::ffi::CString> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a file name"),
        ));
    }
    std::ffi::CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
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
    crate::hex::hex(&bytes)
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
