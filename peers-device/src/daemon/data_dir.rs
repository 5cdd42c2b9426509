//! The daemon's data directory.
//!
//! ```text
//! <data-dir>/
//!   identity.key          this device's keys (0600, see peers-sdk's key file)
//!   trusted.json          trusted devices: share-code info and their groups
//!   groups/<group>.sqlite3  one sync database per group
//!   peers.sock            the running daemon's control socket
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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
    pub fn trust(&self, share_code: &str, groups: &[GroupId]) -> Result<DeviceInfo> {
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
        assert!(matches!(data.trust(&own, &[]), Err(Error::Config { .. })));
    }
}
