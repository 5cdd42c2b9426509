//! The daemon's data directory.
//!
//! ```text
//! <data-dir>/
//!   identity.key          this device's keys (0600, see peers-sdk's key file)
//!   trusted.json          trusted devices: share-code info and their groups
//!   groups/<group>.sqlite3  one sync database per group
//!   peers.sock            the running daemon's control socket
//!   lock                  locked (flock) by the one process that may write here;
//!                         holds that process's id
//! ```

use std::fs;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use peers_sdk::{DeviceId, DeviceInfo, DeviceKeys};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::group::GroupId;

/// The most trusted devices kept.
pub const MAX_TRUSTED: usize = 1024;

/// A device this one trusts, and the groups it shares with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedDevice {
    /// The device's share code (its `DeviceInfo`).
    pub share_code: String,
    /// Groups it is a member of, as far as this device is concerned.
    pub groups: Vec<GroupId>,
}

impl TrustedDevice {
    /// The decoded device info.
    pub fn info(&self) -> Result<DeviceInfo> {
        DeviceInfo::from_share_code(&self.share_code).map_err(Error::Connection)
    }
}

/// Paths and files of a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (nothing is read or created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn identity_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    fn trusted_path(&self) -> PathBuf {
        self.root.join("trusted.json")
    }

    /// The sync database of `group`.
    pub fn group_db(&self, group: &GroupId) -> PathBuf {
        self.root.join("groups").join(format!("{group}.sqlite3"))
    }

    /// The running daemon's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("peers.sock")
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Takes the data directory's lock: an exclusive OS file lock (`flock`)
    /// on `<data-dir>/lock`, held until the returned guard is dropped (or the
    /// process ends, however it ends). Only its holder writes the databases and
    /// `trusted.json`. A holder that lets go within `wait` (a `peers` command
    /// that took it for a moment) is waited for; after that this fails with
    /// [`Error::DataDirInUse`], naming the holder's process.
    pub async fn lock(&self, wait: Duration) -> Result<DataDirLock> {
        let path = self.lock_path();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("open the data directory's lock file", e))?;
        match file.try_lock() {
            Ok(()) => return Ok(DataDirLock::holding(file)),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(io("lock the data directory", e)),
        }
        let holder = fs::read_to_string(&path).unwrap_or_default();
        // A blocking wait on a thread of its own, abandoned after `wait`: if it
        // gets the lock later, it drops it at once, as nobody takes the result.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("peers-lock".into())
            .spawn(move || {
                let _ = tx.send(file.lock().map(|()| file));
            })
            .map_err(|e| io("wait for the data directory's lock", e))?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(file))) => Ok(DataDirLock::holding(file)),
            Ok(Ok(Err(e))) => Err(io("lock the data directory", e)),
            Ok(Err(_)) => Err(Error::Worker("the lock waiter stopped".into())),
            Err(_) => {
                let holder: String = holder.trim().chars().take(20).collect();
                let path = match holder.is_empty() {
                    true => self.root.display().to_string(),
                    false => format!("{} (process {holder})", self.root.display()),
                };
                Err(Error::DataDirInUse { path })
            }
        }
    }

    /// Creates the directory and a new identity for `user`. Refuses to replace
    /// an existing identity.
    pub fn init(&self, user: &str) -> Result<DeviceKeys> {
        if self.identity_path().exists() {
            return Err(config("data-dir", format!("{} already holds an identity", self.root.display())));
        }
        fs::create_dir_all(self.root.join("groups")).map_err(|e| io("create the data directory", e))?;
        let keys = DeviceKeys::generate(user)?;
        keys.save(self.identity_path())?;
        Ok(keys)
    }

    /// This device's keys.
    pub fn keys(&self) -> Result<DeviceKeys> {
        if !self.identity_path().exists() {
            return Err(config("data-dir", format!("no identity in {}; run `peers init` first", self.root.display())));
        }
        Ok(DeviceKeys::load(self.identity_path())?)
    }

    /// The trusted devices.
    pub fn trusted(&self) -> Result<Vec<TrustedDevice>> {
        let path = self.trusted_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read trusted.json", e)),
        };
        let trusted: Vec<TrustedDevice> =
            serde_json::from_str(&text).map_err(|e| config("trusted.json", e.to_string()))?;
        if trusted.len() > MAX_TRUSTED {
            return Err(config("trusted.json", format!("more than {MAX_TRUSTED} devices")));
        }
        Ok(trusted)
    }

    /// Trusts the device in `share_code` as a member of `groups` (added to its
    /// groups if already trusted). Returns its device info.
    /// At least one group is required: a device trusted into none would never
    /// sync.
    pub fn trust(&self, share_code: &str, groups: &[GroupId]) -> Result<DeviceInfo> {
        if groups.is_empty() {
            return Err(config(
                "groups",
                "a device is trusted as a member of groups, and none was given: add --group <group>".into(),
            ));
        }
        let info = DeviceInfo::from_share_code(share_code)?;
        let me = self.keys()?.device_id();
        if info.device_id == me {
            return Err(config("share code", "that is this device's own code".into()));
        }
        let mut trusted = self.trusted()?;
        let code = info.to_share_code();
        let full = trusted.len() >= MAX_TRUSTED;
        match trusted.iter_mut().find(|t| t.info().is_ok_and(|i| i.device_id == info.device_id)) {
            Some(existing) => {
                existing.share_code = code;
                for group in groups {
                    if !existing.groups.contains(group) {
                        existing.groups.push(group.clone());
                    }
                }
            }
            None if full => {
                return Err(config("trusted.json", format!("already {MAX_TRUSTED} devices")));
            }
            None => trusted.push(TrustedDevice { share_code: code, groups: groups.to_vec() }),
        }
        self.write_atomically(
            &self.trusted_path(),
            serde_json::to_string_pretty(&trusted).unwrap_or_default().as_bytes(),
        )?;
        Ok(info)
    }

    /// The trusted device named by `device` (its id, a unique prefix of at least 4
    /// characters of it, or its share code).
    pub fn find_trusted(&self, device: &str) -> Result<DeviceInfo> {
        let trusted = self.trusted()?;
        trusted[Self::trusted_index(&trusted, device)?].info()
    }

    /// The index in `trusted` of the device named by `device` (see [`find_trusted`](Self::find_trusted)).
    fn trusted_index(trusted: &[TrustedDevice], device: &str) -> Result<usize> {
        let wanted = device.trim();
        let by_code = DeviceInfo::from_share_code(wanted).ok().map(|i| i.device_id);
        let matches: Vec<usize> = trusted
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.info().is_ok_and(|i| match by_code {
                    Some(id) => i.device_id == id,
                    None => wanted.len() >= 4 && i.device_id.to_string().starts_with(wanted),
                })
            })
            .map(|(index, _)| index)
            .collect();
        match matches.as_slice() {
            [index] => Ok(*index),
            [] => Err(config("device", format!("{wanted:?} is not a trusted device"))),
            _ => Err(config("device", format!("{wanted:?} matches several trusted devices; give more of the id"))),
        }
    }

    /// Stops trusting `device` (its id, a unique prefix of at least 4
    /// characters of it, or its share code) and forgets its groups. Returns its
    /// device info.
    pub fn untrust(&self, device: &str) -> Result<DeviceInfo> {
        let mut trusted = self.trusted()?;
        let index = Self::trusted_index(&trusted, device)?;
        let info = trusted.remove(index).info()?;
        self.write_atomically(
            &self.trusted_path(),
            serde_json::to_string_pretty(&trusted).unwrap_or_default().as_bytes(),
        )?;
        Ok(info)
    }

    /// The trusted devices in `group`.
    pub fn members(&self, group: &GroupId) -> Result<Vec<DeviceInfo>> {
        self.trusted()?.iter().filter(|t| t.groups.contains(group)).map(TrustedDevice::info).collect()
    }

    /// Whether `device` is trusted.
    pub fn is_trusted(&self, device: &DeviceId) -> Result<bool> {
        Ok(self.trusted()?.iter().any(|t| t.info().is_ok_and(|i| i.device_id == *device)))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp).map_err(|e| io("write a temporary file", e))?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io("write a temporary file", e))?;
        fs::rename(&tmp, path).map_err(|e| io("replace a file", e))
    }
}

/// The data directory's lock, held while this value lives ([`DataDir::lock`]).
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
}

impl DataDirLock {
    /// Records this process as the holder of the lock taken on `file`.
    fn holding(mut file: fs::File) -> Self {
        let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
        DataDirLock { _file: file }
    }
}

pub(crate) fn config(field: &'static str, reason: String) -> Error {
    Error::Config { field, reason }
}

fn io(what: &'static str, source: std::io::Error) -> Error {
    Error::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_trust_and_members() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("a"));
        let keys = data.init("alice").unwrap();
        assert!(data.init("alice").is_err(), "an identity is never replaced");
        assert_eq!(data.keys().unwrap().device_id(), keys.device_id());
        let bob = DeviceKeys::generate("bob").unwrap().info(vec!["http://127.0.0.1:1/".into()]).unwrap();
        let notes = GroupId::new("notes").unwrap();
        data.trust(&bob.to_share_code(), std::slice::from_ref(&notes)).unwrap();
        data.trust(&bob.to_share_code(), &[GroupId::new("photos").unwrap()]).unwrap();
        assert_eq!(data.trusted().unwrap().len(), 1);
        assert_eq!(data.members(&notes).unwrap(), vec![bob.clone()]);
        assert!(data.is_trusted(&bob.device_id).unwrap());
        let own = keys.info(vec![]).unwrap().to_share_code();
        assert!(matches!(data.trust(&own, std::slice::from_ref(&notes)), Err(Error::Config { .. })));
        let carol = DeviceKeys::generate("carol").unwrap().info(vec![]).unwrap();
        let err = data.trust(&carol.to_share_code(), &[]).unwrap_err();
        assert!(err.to_string().contains("--group"), "{err}");
        assert!(!data.is_trusted(&carol.device_id).unwrap(), "no group, no trust");

        assert!(data.untrust("zz").is_err(), "too short a prefix");
        let prefix = &bob.device_id.to_string()[..8];
        assert_eq!(data.untrust(prefix).unwrap().device_id, bob.device_id);
        assert!(!data.is_trusted(&bob.device_id).unwrap());
        assert!(data.members(&notes).unwrap().is_empty());
        assert!(data.untrust(&bob.to_share_code()).is_err(), "already gone");
    }

    #[tokio::test]
    async fn one_lock_holder_at_a_time_and_a_brief_holder_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let held = data.lock(Duration::ZERO).await.unwrap();
        let err = data.lock(Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(err, Error::DataDirInUse { .. }), "{err}");
        assert!(err.to_string().contains(&std::process::id().to_string()), "names the holder: {err}");
        // Released while another waits: the waiter gets it.
        let waiter = tokio::spawn({
            let data = data.clone();
            async move { data.lock(Duration::from_secs(20)).await }
        });
        tokio::task::yield_now().await;
        drop(held);
        let second = waiter.await.unwrap().unwrap();
        drop(second);
        data.lock(Duration::ZERO).await.unwrap();
    }
}
