//! The data directory: queues, configuration, audit log and spool, created private
//! (0700 directories, 0600 files) because it holds SIEM credentials.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where everything lives. Layout:
/// `queues/` (sled), `config/destinations/*.json`, `audit/`, `spool/`, `spool/rejected/`,
/// `status.json` (live figures written by `raxe serve`).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `--data-dir` / `RAXE_DATA_DIR`, else `$XDG_DATA_HOME/raxe`, else `~/.local/share/raxe`.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<PathBuf> {
        if let Some(dir) = explicit {
            return Ok(dir);
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(xdg).join("raxe"));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .context("cannot find a data directory: set --data-dir, RAXE_DATA_DIR or HOME")?;
        Ok(PathBuf::from(home).join(".local/share/raxe"))
    }

    /// Opens the data directory, creating it and its sub-directories (0700) if needed.
    pub fn open(root: PathBuf) -> Result<DataDir> {
        let dir = DataDir { root };
        for sub in [
            dir.root.clone(),
            dir.config_dir(),
            dir.audit_dir(),
            dir.spool_dir(),
            dir.rejected_dir(),
        ] {
            create_private_dir(&sub)
                .with_context(|| format!("cannot create directory {}", sub.display()))?;
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn queues_dir(&self) -> PathBuf {
        self.root.join("queues")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config").join("destinations")
    }
    pub fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }
    pub fn spool_dir(&self) -> PathBuf {
        self.root.join("spool")
    }
    pub fn rejected_dir(&self) -> PathBuf {
        self.spool_dir().join("rejected")
    }
    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }
    /// The running service's control socket (see `control.rs`).
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
}

pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// Replaces `path` atomically with `bytes` (0600): write a temp file, fsync, rename,
/// fsync the directory. Readers see the old or the new file, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, true)
}

/// As [`write_atomic`] without the syncs: for files that are rewritten all the time and
/// worth nothing after a crash (`status.json`), so they never compete with the queue's
/// fdatasyncs for the disk.
pub fn write_replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, false)
}

fn replace(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_layout_and_writes_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path().join("d")).unwrap();
        let mode = fs::metadata(dir.config_dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let file = dir.config_dir().join("x.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.config_dir()).unwrap().count(),
            1,
            "no temp files left"
        );
    }
}
