//! Destination configuration on disk: one JSON file per destination under
//! `config/destinations/`, replaced atomically, 0600 (it holds the SIEM credential).
//! The running service polls a fingerprint of the directory and reloads on change, so
//! every `raxe customer siem ...` command works while `raxe serve` runs. `.last-good/`
//! keeps a copy of each configuration a destination ran with, for a start that finds its
//! file unusable.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use raxe_adapters::config::SiemConfig;
use raxe_engine::CustomerKey;
use serde::{Deserialize, Serialize};

use crate::data_dir::write_atomic;

/// Inside the configuration directory: what each destination last ran with (a dot-name,
/// so it is never taken for a destination file).
const LAST_GOOD_DIR: &str = ".last-good";

/// Who a destination serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    Customer {
        mssp_id: String,
        customer_id: String,
    },
    Global {
        name: String,
    },
}

impl Scope {
    /// Refuses ids that cannot name a destination: empty, with whitespace or control
    /// characters, too long, or with a `/`, which would let two scopes share one id, one
    /// file and one queue (MSSP `a` + customer `b/c` against MSSP `a/b` + customer `c`).
    pub fn validate(&self) -> Result<()> {
        let parts: &[(&str, &str)] = match self {
            Scope::Customer {
                mssp_id,
                customer_id,
            } => &[("MSSP id", mssp_id), ("customer id", customer_id)],
            Scope::Global { name } => &[("destination name", name)],
        };
        for (what, value) in parts {
            if value.is_empty() {
                bail!("the {what} is empty");
            }
            if value.contains('/') {
                bail!("the {what} {value:?} contains '/', which separates the parts of a destination id");
            }
        }
        raxe_engine::queue_names::validate_id(&self.destination_id())?;
        Ok(())
    }

    /// The engine's destination id (also the queue name: never change the format).
    pub fn destination_id(&self) -> String {
        match self {
            Scope::Customer {
                mssp_id,
                customer_id,
            } => format!("customer/{mssp_id}/{customer_id}"),
            Scope::Global { name } => format!("global/{name}"),
        }
    }

    /// The scope a destination id was made from ([`Scope::destination_id`] reversed).
    pub fn from_destination_id(id: &str) -> Option<Scope> {
        let parts: Vec<&str> = id.split('/').collect();
        match parts[..] {
            ["customer", mssp_id, customer_id] => Some(Scope::Customer {
                mssp_id: mssp_id.to_string(),
                customer_id: customer_id.to_string(),
            }),
            ["global", name] => Some(Scope::Global {
                name: name.to_string(),
            }),
            _ => None,
        }
    }

    pub fn customer_key(&self) -> Option<CustomerKey> {
        match self {
            Scope::Customer {
                mssp_id,
                customer_id,
            } => Some(CustomerKey::new(mssp_id, customer_id)),
            Scope::Global { .. } => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Scope::Customer {
                mssp_id,
                customer_id,
            } => format!("customer {customer_id} (MSSP {mssp_id})"),
            Scope::Global { name } => format!("global destination {name}"),
        }
    }
}

/// A configuration file found under a scope's name that belongs to another scope (ids
/// written before `/` was refused in them).
#[derive(Debug)]
pub struct OtherScope {
    path: PathBuf,
    holds: String,
    wanted: String,
}

impl std::fmt::Display for OtherScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} holds the configuration of {}, not of {}",
            self.path.display(),
            self.holds,
            self.wanted
        )
    }
}

impl std::error::Error for OtherScope {}

/// One configured destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationRecord {
    pub scope: Scope,
    pub config: SiemConfig,
    /// Requests in flight at once; 1 keeps events in order.
    #[serde(default = "one")]
    pub max_in_flight: usize,
}

fn one() -> usize {
    1
}

impl DestinationRecord {
    pub fn id(&self) -> String {
        self.scope.destination_id()
    }
}

#[derive(Debug, Clone)]
pub struct ConfigStore {
    dir: PathBuf,
}

impl ConfigStore {
    pub fn new(dir: PathBuf) -> ConfigStore {
        ConfigStore { dir }
    }

    fn path_of(&self, scope: &Scope) -> PathBuf {
        self.dir.join(format!(
            "{}.json",
            encode_file_name(&scope.destination_id())
        ))
    }

    /// When the destination's file last changed (ms since the epoch), if it exists.
    pub fn changed_ms(&self, scope: &Scope) -> Option<u64> {
        let modified = std::fs::metadata(self.path_of(scope))
            .ok()?
            .modified()
            .ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        u64::try_from(since.as_millis()).ok()
    }

    pub fn get(&self, scope: &Scope) -> Result<Option<DestinationRecord>> {
        let path = self.path_of(scope);
        match fs::read(&path) {
            Ok(bytes) => {
                let record = parse(&path, &bytes)?;
                // Ids written before `/` was refused could name one file from two scopes.
                if record.scope != *scope {
                    return Err(OtherScope {
                        path,
                        holds: record.scope.describe(),
                        wanted: scope.describe(),
                    }
                    .into());
                }
                Ok(Some(record))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Saves (creating or replacing) a destination.
    pub fn put(&self, record: &DestinationRecord) -> Result<()> {
        let path = self.path_of(&record.scope);
        let bytes = serde_json::to_vec_pretty(record)?;
        write_atomic(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Deletes a destination's configuration (and the one it last ran with); false when
    /// there was none.
    pub fn remove(&self, scope: &Scope) -> Result<bool> {
        // The file first: a reload between the two sees it gone and keeps no copy.
        let removed = remove_if_present(&self.path_of(scope))?;
        remove_if_present(&self.last_good_path(&scope.destination_id()))?;
        Ok(removed)
    }

    fn last_good_path(&self, id: &str) -> PathBuf {
        self.dir
            .join(LAST_GOOD_DIR)
            .join(format!("{}.json", encode_file_name(id)))
    }

    /// Keeps `record` as the configuration its destination last ran with. A start that
    /// finds the destination's file unusable (caught half-written, edited wrong) runs it
    /// with this one, as a reload keeps the running one: dropped instead, the destination
    /// would miss its customer's events until the file is fixed. Writes only on a change.
    pub fn keep_as_last_good(&self, record: &DestinationRecord) -> Result<()> {
        let path = self.last_good_path(&record.id());
        let bytes = serde_json::to_vec_pretty(record)?;
        if fs::read(&path).is_ok_and(|kept| kept == bytes) {
            return Ok(());
        }
        let dir = self.dir.join(LAST_GOOD_DIR);
        crate::data_dir::create_private_dir(&dir)
            .and_then(|()| write_atomic(&path, &bytes))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Deletes the kept configurations of every destination not in `ids` (best effort:
    /// a failure is logged, and tried again on the next call).
    pub fn forget_last_good_except(&self, ids: &std::collections::HashSet<String>) {
        let Ok(entries) = fs::read_dir(self.dir.join(LAST_GOOD_DIR)) else {
            return;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let id = path
                .file_name()
                .and_then(|n| n.to_str()?.strip_suffix(".json"))
                .and_then(decode_file_name);
            if id.is_some_and(|id| !ids.contains(&id)) {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), "its destination is gone: forgot the configuration it last ran with")
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot delete a kept configuration of a destination that is gone")
                    }
                }
            }
        }
    }

    /// The configuration destination `id` last ran with, if one is kept and usable.
    pub fn last_good(&self, id: &str) -> Option<DestinationRecord> {
        let path = self.last_good_path(id);
        let record = parse(&path, &fs::read(&path).ok()?).ok()?;
        (record.id() == id).then_some(record)
    }

    /// Every destination, sorted by id, plus a message for each file that cannot be used
    /// (it is skipped, never half-applied).
    pub fn list(&self) -> Result<(Vec<DestinationRecord>, Vec<Unreadable>)> {
        let mut records = Vec::new();
        let mut problems = Vec::new();
        for path in self.files()? {
            match fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| parse(&path, &bytes))
            {
                Ok(record) => records.push(record),
                Err(e) => problems.push(Unreadable {
                    id: path
                        .file_stem()
                        .and_then(|stem| decode_file_name(&stem.to_string_lossy())),
                    problem: format!("{}: {e:#}", path.display()),
                }),
            }
        }
        records.sort_by_key(|r| r.id());
        Ok((records, problems))
    }

    /// How many destination configuration files there are (readable or not), without
    /// reading them.
    pub fn count(&self) -> usize {
        self.files().map_or(0, |files| files.len())
    }

    /// Changes whenever a configuration file is added, removed or rewritten.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        if let Ok(files) = self.files() {
            for path in files {
                path.hash(&mut hasher);
                if let Ok(meta) = fs::metadata(&path) {
                    (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()).hash(&mut hasher);
                }
            }
        }
        hasher.finish()
    }

    fn files(&self) -> Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.dir.display())),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                name.ends_with(".json") && !name.starts_with('.')
            })
            .collect();
        files.sort();
        Ok(files)
    }
}

/// False when there was no such file.
fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<DestinationRecord> {
    let record: DestinationRecord = serde_json::from_slice(bytes)
        .with_context(|| format!("{} is not a valid destination file", path.display()))?;
    if let Err(e) = record.config.validate() {
        bail!("{}: {e}", path.display());
    }
    Ok(record)
}

/// A destination file that cannot be used (unreadable, not JSON, invalid).
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// The destination it is named for, if the name decodes.
    pub id: Option<String>,
    problem: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem)
    }
}

/// The destination id a file name was made from ([`encode_file_name`] reversed).
fn decode_file_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// File-system-safe, reversible: keeps `[A-Za-z0-9_.-]`, percent-encodes the rest.
fn encode_file_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(encode_file_name("customer/m1/acme"), "customer%2Fm1%2Facme");
        assert_ne!(encode_file_name("a/b"), encode_file_name("a%2Fb"));
        assert_eq!(encode_file_name("../x"), "..%2Fx");
        for id in ["customer/m1/acme", "global/all", "a%2Fb", "ü é/x"] {
            assert_eq!(decode_file_name(&encode_file_name(id)).as_deref(), Some(id));
        }
        assert_eq!(decode_file_name("bad%2"), None);
    }

    fn customer(mssp: &str, customer: &str) -> Scope {
        Scope::Customer {
            mssp_id: mssp.into(),
            customer_id: customer.into(),
        }
    }

    #[test]
    fn ids_that_cannot_name_one_destination_are_refused() {
        assert!(customer("m1", "acme").validate().is_ok());
        for (scope, why) in [
            (customer("a", "b/c"), "contains '/'"),
            (customer("a/b", "c"), "contains '/'"),
            (customer("m1", "Acme Corp"), "whitespace"),
            (customer("", "acme"), "empty"),
            (Scope::Global { name: "x/y".into() }, "contains '/'"),
        ] {
            let err = scope.validate().unwrap_err().to_string();
            assert!(err.contains(why), "{scope:?}: {err}");
        }
    }

    #[test]
    fn a_file_of_another_scope_under_the_same_id_is_not_taken_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let configs = ConfigStore::new(dir.path().to_path_buf());
        // Written before '/' was refused: both scopes have the id customer/a/b/c.
        let config = SiemConfig::new(
            raxe_adapters::config::SiemType::Splunk,
            "https://splunk.example.com:8088",
            "12345678-1234-1234-1234-1234567890AB",
        )
        .unwrap();
        let record = DestinationRecord {
            scope: customer("a", "b/c"),
            config,
            max_in_flight: 1,
        };
        configs.put(&record).unwrap();
        let err = configs.get(&customer("a/b", "c")).unwrap_err();
        assert!(err.is::<OtherScope>(), "{err:#}");
        assert!(configs.get(&customer("a", "b/c")).unwrap().is_some());
    }
}
