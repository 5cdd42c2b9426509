//! The device key file.
//!
//! ```text
//! -----BEGIN PEERS DEVICE KEY-----
//! base64( MessagePack { v: 1, user_id: str, signing_seed: bin 32, static_secret: bin 32 } )
//! -----END PEERS DEVICE KEY-----
//! ```
//!
//! The file is written with mode `0600` (owner read and write only) through a
//! temporary file and a rename, so a crash never leaves half a key. Loading refuses a
//! file that the group or others can read, like OpenSSH does, and a file larger than
//! [`MAX_KEY_FILE_LEN`].

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::DeviceKeys;
use crate::error::{Error, Result, decode_msgpack, encode_msgpack};

const BEGIN: &str = "-----BEGIN PEERS DEVICE KEY-----";
const END: &str = "-----END PEERS DEVICE KEY-----";
const KEY_FILE_VERSION: u8 = 1;
/// Largest key file [`DeviceKeys::load`] reads.
pub const MAX_KEY_FILE_LEN: u64 = 16 * 1024;

#[derive(Serialize, Deserialize)]
struct KeyFileBody {
    v: u8,
    user_id: String,
    #[serde(with = "serde_bytes")]
    signing_seed: [u8; 32],
    #[serde(with = "serde_bytes")]
    static_secret: [u8; 32],
}

impl Drop for KeyFileBody {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.signing_seed.zeroize();
        self.static_secret.zeroize();
    }
}

impl DeviceKeys {
    /// Writes the keys to `path` with owner-only permissions, replacing any file
    /// there atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let body = KeyFileBody {
            v: KEY_FILE_VERSION,
            user_id: self.user_id.clone(),
            signing_seed: self.signing.to_bytes(),
            static_secret: self.static_secret.to_bytes(),
        };
        let packed = Zeroizing::new(encode_msgpack("key file", &body)?);
        let encoded = Zeroizing::new(STANDARD.encode(packed.as_slice()));
        let mut text = Zeroizing::new(String::with_capacity(encoded.len() + 80));
        text.push_str(BEGIN);
        text.push('\n');
        for line in encoded.as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(line).unwrap_or_default());
            text.push('\n');
        }
        text.push_str(END);
        text.push('\n');

        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming to {}", path.display()), e))
    }

    /// Reads keys written by [`DeviceKeys::save`].
    ///
    /// Fails with [`Error::KeyFile`] if the group or others may read the file, if it
    /// is too large, or if its content is not a key file of a known version.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |detail: String| Error::KeyFile { path: path.to_path_buf(), detail };
        let file = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let meta = file.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "permissions {mode:04o} let others read the secret key; run `chmod 600` on it"
                )));
            }
        }
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(bad(format!("{} bytes is larger than {MAX_KEY_FILE_LEN}", meta.len())));
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE_LEN)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let inner = text
            .trim()
            .strip_prefix(BEGIN)
            .and_then(|rest| rest.strip_suffix(END))
            .ok_or_else(|| bad("missing the BEGIN/END PEERS DEVICE KEY lines".into()))?;
        let compact: Zeroizing<String> = Zeroizing::new(inner.chars().filter(|c| !c.is_whitespace()).collect());
        let packed = Zeroizing::new(STANDARD.decode(compact.as_bytes()).map_err(|e| bad(format!("bad base64: {e}")))?);
        let body: KeyFileBody = decode_msgpack("key file", &packed).map_err(|e| bad(e.to_string()))?;
        if body.v != KEY_FILE_VERSION {
            return Err(bad(format!("unsupported key file version {}", body.v)));
        }
        DeviceKeys::from_secrets(body.user_id.clone(), body.signing_seed, body.static_secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_gives_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let keys = DeviceKeys::generate("alice").unwrap();
        keys.save(&path).unwrap();
        let loaded = DeviceKeys::load(&path).unwrap();
        assert_eq!(loaded.device_id(), keys.device_id());
        assert_eq!(loaded.user_id(), "alice");
        assert_eq!(loaded.static_public(), keys.static_public());
    }

    #[cfg(unix)]
    #[test]
    fn file_is_owner_only_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        DeviceKeys::generate("alice").unwrap().save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for bad in [0o644, 0o604, 0o640] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let err = DeviceKeys::load(&path).unwrap_err();
            assert!(matches!(err, Error::KeyFile { .. }), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn garbage_and_truncated_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let keys = DeviceKeys::generate("alice").unwrap();
        keys.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let truncated = format!("{BEGIN}\n{}\n{END}\n", &text[BEGIN.len() + 1..BEGIN.len() + 20]);
        for content in ["hello".to_string(), truncated] {
            std::fs::write(&path, content).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            assert!(matches!(DeviceKeys::load(&path), Err(Error::KeyFile { .. })));
        }
    }
}
